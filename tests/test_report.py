"""The quantization report (pot_torch.report): measurements per quantizer group, HTML and JSON, entry points."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from PIL import Image

from classification_metrics import Accuracy
from model_builders import _dense, conv_model, outlier_classifier, se_residual_model
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.algorithms.quantization.accuracy_evaluation import choose_metric, evaluate, hardest_samples
from pot_torch.cli import main
from pot_torch.report import build_report, render_html, write_report
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization, Candidate
from pot_torch.algorithms.quantization.layer_revert import reverted
from pot_torch.report.budget import Budget
from pot_torch.report.data import Report
from pot_torch.report.build import _groups
from pot_torch.report.impact import cosine, ranking_sample
from pot_torch.report.profile import owner
from pot_torch.report.svg import scatter

# fc1 alone: drop 0.0167 at bf16; no check on all items fits the budget here, so the walk stops on its estimate from
# 60 items (about +-0.02) within the allowed drop by one standard error
PARAMS = {"target_device": "CPU", "maximal_drop": 0.1}


class Items(DataLoader):
    """``(input, label)`` items."""

    def __init__(self, inputs, labels) -> None:
        super().__init__({})
        self._inputs, self._labels = inputs, labels

    def __len__(self) -> int:
        return len(self._inputs)

    def __getitem__(self, index: int):
        return self._inputs[index], int(self._labels[index])


class Top1(Accuracy):
    """Top-1 as a fraction, counting the samples it saw."""

    def __init__(self) -> None:
        self.samples = 0
        super().__init__(percent=False)

    def update(self, output, target):
        super().update(output, target)
        self.samples += len(self.last)


class CountingEngine(IEEngine):
    """Real IEEngine inference, counting the samples each prediction puts through the metric."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.evaluated = 0

    def predict(self, stats_layout=None, sampler=None, *args, **kwargs):
        self.evaluated += len(sampler) if sampler is not None else len(self.data_loader)
        return super().predict(stats_layout, sampler, *args, **kwargs)


class SteepTop1(Top1):
    """Top-1 whose overall value is the 16th power of the mean of its per-sample hits (a metric whose value is
    not the mean of its per-sample values, as mAP): the report's sample estimates are then too optimistic."""

    @property
    def avg_value(self):
        return {"accuracy": super().avg_value["accuracy"] ** 16}


def _chain(weights, centre: np.ndarray) -> ov.Model:
    """Dense layers ``weights`` with ReLU between; the last one's bias is ``-centre``."""
    x = ops.parameter([1, weights[0].shape[0]], np.float32, name="input")
    node = x
    for k, w in enumerate(weights):
        node = _dense(node, w, f"fc{k + 1}")
        node = ops.relu(node) if k < len(weights) - 1 else ops.subtract(node, ops.constant(centre))
    return ov.Model([ops.result(node)], [x], "outlier_chain")


def outlier_chain(width: int = 16, depth: int = 4, classes: int = 4, items: int = 240, scale: float = 30.0,
                  feature: float = 100.0):
    """``(model, inputs, labels)``: ``depth`` dense layers (ReLU between) each of whose inputs has one channel
    far larger than the others (an irrelevant input feature x``feature``; hidden channel 0 x``scale`` by an exact
    rescaling), logits centred on the data, labels the FP model's predictions: 8-bit per-tensor quantization of
    every layer costs accuracy."""
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((width, width if k < depth - 1 else classes)).astype(np.float32) * 0.5
               for k in range(depth)]
    weights[0][-1, :] = 1e-5
    for k in range(depth - 1):  # channel 0 of layer k's output x scale, the next layer's row 0 / scale
        weights[k][:, 0] *= scale
        weights[k + 1][0, :] /= scale
    inputs = rng.standard_normal((items, 1, width)).astype(np.float32)
    inputs[:, :, -1] *= feature
    core = ov.Core()
    uncentred = core.compile_model(_chain(weights, np.zeros((1, classes), np.float32)), "CPU",
                                   {"INFERENCE_PRECISION_HINT": "f32"})
    logits = np.stack([uncentred([item])[0][0] for item in inputs])
    model = _chain(weights, logits.mean(axis=0, keepdims=True).astype(np.float32))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    labels = np.array([int(np.argmax(compiled([item])[0])) for item in inputs])
    return model, inputs, labels


@pytest.fixture(scope="module")
def outlier_report():
    model, inputs, labels = outlier_classifier()
    metric = Top1()
    engine = CountingEngine({"device": "CPU"}, Items(inputs, labels), metric)
    calibration = IEEngine({"device": "CPU"}, Items(inputs, labels))  # no metric: counts evaluations only
    report = build_report(CompressedModel(model), engine, PARAMS, calibration, latency_rounds=2)
    return report, model, inputs, labels, engine.evaluated


def _within_budget(report, evaluated: int, fp_int8: int) -> None:
    """What went through the metric is what the report states, and its own part is within its budget."""
    assert evaluated == sum(report.evaluations.values())
    assert evaluated - fp_int8 == report.own_evaluations <= report.aaq_ranking_evaluations
    assert report.evaluations["fp"] + report.evaluations["int8"] == fp_int8


def test_evaluations_stay_within_one_accuracy_aware_ranking_step(outlier_report):
    # the budget is one AccuracyAwareQuantization ranking step (groups x the samples it ranks on); a full-set check
    # of the recommendation would take more than half of it here, so the recommendation's figure is an estimate
    report, _, inputs, _, evaluated = outlier_report
    _within_budget(report, evaluated, 2 * len(inputs))
    assert report.evaluations["check"] == 0 and report.recommended_basis == "estimate"
    assert report.recommended_error is not None and report.recommended_error >= 0
    n = report.ranking_samples
    assert n == report.aaq_ranking_evaluations // (2 * len(report.groups) + 1)  # the plan: worst-case walk fits
    page = render_html(report)
    assert "estimate" in page and f"{report.own_evaluations} / {report.aaq_ranking_evaluations}" in page


def test_precision_shown_is_the_one_the_metric_ran_at():
    # an engine told to evaluate at f32: the page said the CPU default (bf16 here) for the metric
    model, inputs, labels = outlier_classifier()
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, Items(inputs, labels), Top1())
    report = build_report(CompressedModel(model), engine, PARAMS, IEEngine({"device": "CPU"}, Items(inputs, labels)),
                          latency_rounds=1)
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert report.precision == ("f32" if default == "f32" else f"metric f32, latency {default}")


def test_an_estimate_with_no_sampled_change_says_what_a_zero_standard_error_means():
    """An estimated recommendation whose ranking sample showed no change read "standard error 0" (the f32 bench
    run: estimate +0.0000 +- 0.0000, measured -0.0020): the page says what it cannot see instead."""
    report = Report("m", "accuracy", True, 0.9, 0.5, 0.9, 0.01, 1000, 73, 300, "f32")
    report.recommended, report.recommended_metric, report.recommended_basis = [0], 0.9, "estimate"
    report.recommended_error = 0.0
    assert "none of the 73 ranking samples changed" in report.estimate_error_text
    report.recommended_error = 0.0123
    assert report.estimate_error_text == "standard error 0.012"


def test_budget_plan():
    # 7 groups x 300 ranked samples, 1000 items: a check fits in half of it, the sample takes the rest with a walk
    # through every group; 140 ranked samples: no check, and a larger sample
    plan = Budget.plan(7, 300, 1000)
    assert (plan.limit, plan.check_planned, plan.sample_size) == (2100, True, 73) and plan.worst_case <= 2100
    plan = Budget.plan(7, 140, 1000)
    assert (plan.limit, plan.check_planned, plan.sample_size) == (980, False, 65) and not plan.over_budget
    assert Budget.plan(3, 1, 10).over_budget  # one sample wrong: ranking 3 groups on one sample costs 5 > 3


def test_evaluations_stay_within_the_budget_when_the_check_misses():
    # four groups: a full-set check fits in the budget; the metric's overall value is not the mean of its
    # per-sample values, so the sample estimates are optimistic and the check misses: the walk must go on
    # within what is left, and say the final figure is an estimate, not check again over budget
    model, inputs, labels = outlier_chain(feature=1000.0)  # INT8 worse on enough items for the check to fit
    engine = CountingEngine({"device": "CPU"}, Items(inputs, labels), SteepTop1())
    calibration = IEEngine({"device": "CPU"}, Items(inputs, labels))
    params = {"target_device": "CPU", "maximal_drop": 0.3}
    report = build_report(CompressedModel(model), engine, params, calibration, latency_rounds=1)
    _within_budget(report, engine.evaluated, 2 * len(inputs))
    assert len(report.groups) == 4 and report.check_planned
    assert report.evaluations["check"] == len(inputs)  # one check, and it missed
    assert report.curve[0].samples == report.ranking_samples
    checked = [p for p in report.curve if p.samples == len(inputs)]
    assert len(checked) == 1 and checked[0].drop > 0.3
    if report.recommended_basis == "estimate":  # the walk went on after the miss
        assert report.recommended_error is not None and report.curve[-1].samples == report.ranking_samples
        assert any("estimate" in note for note in report.notes)


def test_groups_carry_every_measurement(outlier_report):
    report, *_ = outlier_report
    assert [g.layers for g in report.groups] == [["fc1"], ["fc2"]]
    assert [g.types for g in report.groups] == [["MatMul"], ["MatMul"]]
    for group in report.groups:
        assert group.sqnr_db is not None and np.isfinite(group.sqnr_db)
        assert group.impact is not None and group.int8_us is not None and group.fp_us is not None
        assert group.saved_us == pytest.approx(group.fp_us - group.int8_us)
        assert 0 <= group.latency_share <= 1
    fc1, fc2 = report.groups
    # fc1 reads the input whose last feature is ~1000x the others: one channel stretches the 8-bit range
    assert fc1.outlier_channel == 15 and fc1.outlier_ratio > 100 and fc1.channel_spread > 100
    assert fc2.outlier_ratio < fc1.outlier_ratio / 10
    # quantizing fc1's input wipes out the informative features: much lower SQNR, most of the accuracy
    assert fc1.sqnr_db < fc2.sqnr_db and fc1.impact > fc2.impact


def test_impact_is_the_stratified_paired_effect_of_reverting_the_group_alone(outlier_report):
    report, model, inputs, labels, _ = outlier_report
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), Top1())
    search = AccuracyAwareQuantization(PARAMS, engine, IEEngine({"device": "CPU"}, Items(inputs, labels)))
    spec = choose_metric(engine, None)
    fp = CompressedModel(model)
    int8 = search.default_quantization(fp, {})
    biases = search.biases_before_correction(fp, Candidate(int8, 0.0, 0.0))
    indices = list(range(len(inputs)))
    fp_value, fp_values = evaluate(engine, fp, spec, indices, per_sample=True)
    int8_value, int8_values = evaluate(engine, int8, spec, indices, per_sample=True)
    assert report.fp_metric == pytest.approx(fp_value) and report.int8_metric == pytest.approx(int8_value)
    hardest = hardest_samples(spec, fp_values, int8_values, indices, 240)
    sample = ranking_sample(hardest, indices, report.ranking_samples, seed=0)
    # half as many items as AccuracyAwareQuantization ranks on: half of them from its hardest ones
    assert len(sample.indices) == report.ranking_samples == 2 * len(hardest) // 5  # budget: 2 groups x |hardest|
    assert set(sample.hard) <= set(hardest) and not set(sample.rest) & set(hardest)
    assert len(sample.hard) - len(sample.rest) in (0, 1)
    assert report.aaq_ranking_evaluations == 2 * len(hardest)

    def outputs(m):
        compiled = ov.Core().compile_model(m.get_model(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # as the report
        return np.stack([compiled([inputs[i]])[0].reshape(-1) for i in sample.indices]).astype(np.float64)

    def stratified(per_item):  # by hand: each stratum's sampled mean, weighted by the stratum's size
        value = dict(zip(sample.indices, per_item))
        hard, rest = np.mean([value[i] for i in sample.hard]), np.mean([value[i] for i in sample.rest])
        return (len(hardest) * hard + (len(indices) - len(hardest)) * rest) / len(indices), hard

    fp_out, int8_out = outputs(fp), outputs(int8)
    for row, group in zip(report.groups, _groups(search, int8)):
        candidate = reverted(int8, [group], biases)
        _, values = evaluate(engine, candidate, spec, sample.indices, per_sample=True)
        gain, hard_gain = stratified(values - int8_values[sample.indices])
        # within one item: the report evaluates the ranking sample at the statistics precision (f32), this at bf16
        one_item = max(len(hardest) / len(sample.hard), (len(indices) - len(hardest)) / len(sample.rest)) / len(indices)
        assert row.hard_gain == pytest.approx(hard_gain, abs=1 / len(sample.hard) + 1e-9)
        assert row.impact == pytest.approx(gain, abs=one_item + 1e-9)
        closer, _ = stratified(cosine(outputs(candidate), fp_out) - cosine(int8_out, fp_out))
        assert row.closeness == pytest.approx(closer, abs=1e-3)
    fc1, fc2 = report.groups
    assert fc1.closeness > fc2.closeness > -0.01


def test_recommendation_meets_the_drop_and_the_cost_is_counted(outlier_report):
    report, _, inputs, _, samples = outlier_report
    assert report.int8_drop > 0.5
    assert report.recommended == [0] and report.ignored == {"scope": ["fc1"]}
    assert report.recommended_drop <= PARAMS["maximal_drop"] and report.curve[-1].accepted
    assert report.curve[-1].latency_ms is not None and report.recommended_latency_ms == report.curve[-1].latency_ms
    n, m = len(inputs), report.ranking_samples
    # the walk's first step reuses the group's ranking evaluation; no check on all items fits the budget here
    assert report.evaluations == {"fp": n, "int8": n, "outputs": 2 * m, "ranking": 2 * m,
                                  "steps": m * (len(report.curve) - 1), "check": 0}
    assert samples == sum(report.evaluations.values())  # what went through the metric, nothing more
    assert report.own_evaluations == sum(report.evaluations.values()) - 2 * n


def test_html_and_json_are_self_contained_and_agree(outlier_report, tmp_path):
    report, *_ = outlier_report
    html_path, json_path = write_report(report, tmp_path / "r" / "report.html")
    html = html_path.read_text(encoding="utf-8")
    assert html_path.stat().st_size < 5 * 2 ** 20
    assert "<script" not in html and not re.search(r"(src|href)=\"?(https?:)?//", html)
    assert html.count("<svg") == 3 and "&quot;scope&quot;" in html and "fc1" in html
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data == json.loads(report.to_json()) and data["ignored"] == {"scope": ["fc1"]}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_report(report, html_path)
    with pytest.raises(ValueError, match="must end in .html"):
        write_report(report, tmp_path / "report.txt")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(outlier_report, tmp_path):
    report, *_ = outlier_report
    html_path, _ = write_report(report, tmp_path / "report.html")
    png = tmp_path / "shot.png"
    run = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
                          "--no-first-run", f"--screenshot={png}", "--window-size=1300,1800",
                          html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert png.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert pixels.shape == (1800, 1300) and pixels.std() > 10  # drawn, not a blank page


def test_biases_recorded_when_correction_starts_are_the_uncorrected_quantization_s():
    # what reverting a layer puts back: recorded by bias correction, equal to DefaultQuantization run without it
    from pot_torch.algorithms.quantization.accuracy_aware import NO_BIAS_CORRECTION
    from pot_torch.algorithms.quantization.layer_revert import biases_before_correction, recorded_biases

    model = se_residual_model()  # bias correction shifts two of its biases
    inputs = np.random.default_rng(0).standard_normal((20, 1, 3, 16, 16)).astype(np.float32)
    search = AccuracyAwareQuantization(PARAMS, IEEngine({"device": "CPU"}, Items(inputs, np.zeros(20))))
    int8 = search.default_quantization(CompressedModel(model), {})
    twin = search.default_quantization(CompressedModel(model), {"threshold": NO_BIAS_CORRECTION})
    expected = biases_before_correction(int8, twin)
    recorded = recorded_biases(int8)
    assert expected and recorded.keys() == expected.keys()
    for key, bias in expected.items():
        np.testing.assert_array_equal(recorded[key], bias)
    assert recorded_biases(copy.deepcopy(int8)).keys() == expected.keys()  # a copy keeps the record


def test_cosine_of_zero_outputs():
    # INT8 can zero a classifier's logits (the outlier test model does): as far from FP as a cosine gets
    zero, fp = np.zeros((1, 3)), np.array([[1.0, -2.0, 0.5]])
    assert cosine(zero, fp)[0] == 0.0 and cosine(zero, zero)[0] == 1.0
    assert cosine(np.array([[2.0, -4.0, 1.0]]), fp)[0] == pytest.approx(1.0)


def test_runtime_node_names_are_attributed_to_their_group():
    owned = {"conv": 0, "conv/fq_weights_1": 0, "relu/fq_output_0": 1, "fc": 1, "fc_bias": 1}
    assert owner("conv", owned) == 0
    assert owner("fc/DequantizationMultiply", owned) == 1  # a fused node keeps the layer's name as prefix
    assert owner("relu/fq_output_0_abcd_acdb_conv", owned) == 0  # a reorder feeding conv
    assert owner("fc_bias", owned) == 1 and owner("pool", owned) is None


def test_charts_skip_points_without_a_value():
    svg = scatter([(1.0, float("nan"), "a"), (None, 1.0, "b")], "t", "x", "y")
    assert "no data" in svg and "<circle" not in svg
    assert render_html.__doc__


def test_accuracy_aware_writes_its_report_and_checks_the_path_first(tmp_path):
    model, inputs, labels = outlier_classifier()
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), Top1())
    path = tmp_path / "aaq.html"
    path.write_text("mine")
    pipeline = create_pipeline([{"name": "AccuracyAwareQuantization",
                                 "params": {**PARAMS, "report_path": str(path)}}], engine)
    with pytest.raises(FileExistsError, match="aaq.html"):
        pipeline.run(CompressedModel(model))
    assert path.read_text() == "mine"
    path.unlink()
    quantized = pipeline.run(CompressedModel(model))
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["ignored"] == {"scope": ["fc1"]} and pipeline.algorithms[0].reverted_layers == ["fc1"]
    assert quantized is not None and "<svg" in path.read_text()
    with pytest.raises(ValueError, match="report_path"):
        create_pipeline([{"name": "AccuracyAwareQuantization", "params": {"report_path": "r.txt"}}], engine)


def _image_ir(tmp_path):
    xml = tmp_path / "model" / "net.xml"
    ov.save_model(conv_model(size=16), str(xml), compress_to_fp16=False)
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in (0, 3):
        (folder / str(label)).mkdir(parents=True)
        for index in range(4):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / str(label) / f"{index}.png")
    return xml, folder


def test_command_writes_the_report_and_refuses_to_replace_other_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    xml, images = _image_ir(tmp_path)
    assert main(["report", "-m", str(xml), "--data", str(images), "-o", "out"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]
    err = capsys.readouterr().err
    assert "out/report.html" in err and "Evaluation budget" in err  # its cost, up front
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["metric_name"] == "agreement" and data["fp_metric"] == 1.0 and data["samples"] == 8
    assert main(["report", "-m", str(xml), "--data", str(images), "-o", "out"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["report", "-m", str(xml), "--data", str(images), "-o", "out", "--overwrite",
                 "--metric", "top1"]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["metric_name"] == "top1"
    (images / "loose.png").write_bytes((images / "0" / "0.png").read_bytes())
    assert main(["report", "-m", str(xml), "--data", str(images), "-o", "out2", "--metric", "top1"]) == 1
    assert "loose.png' is not in such a folder" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_timing_that_cannot_run_is_skipped_with_a_note():
    # dynamic spatial axes: the size to time the model at is unknown
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, -1, -1], np.float32, name="input")
    conv = ops.convolution(x, ops.constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)), [1, 1], [0, 0],
                           [0, 0], [1, 1])
    conv.set_friendly_name("conv")
    pooled = ops.reduce_mean(ops.relu(conv), ops.constant(np.array([2, 3])), keep_dims=False)
    fc = ops.matmul(pooled, ops.constant(rng.standard_normal((4, 3)).astype(np.float32)), False, False)
    fc.set_friendly_name("fc")
    model = ov.Model([ops.result(fc)], [x], "dynamic")
    inputs = rng.random((12, 1, 3, 8, 8), dtype=np.float32)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    labels = [int(np.argmax(compiled([item])[0])) for item in inputs]
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), Top1())
    report = build_report(CompressedModel(model), engine, PARAMS, latency_rounds=1)
    assert report.int8_latency_ms is None and all(g.int8_us is None for g in report.groups)
    assert any(note.startswith("Timing skipped: input 'input' has the dynamic shape [1,3,?,?]") and
               "model.reshape" in note for note in report.notes)
    assert "Timing skipped" in render_html(report)


def _shown(html: str, row: str) -> float:
    """The number in the summary row ``row`` of a report page."""
    return float(re.search(rf"<th class=\"l\">{re.escape(row)}</th><td class=\"l\">([^<]+)</td>", html).group(1))


def test_every_drop_shown_comes_from_one_baseline(outlier_report):
    # a given baseline_value is what AccuracyAwareQuantization measures drops from: the page, the JSON and the
    # walk must all use it (the page and JSON used to subtract from the FP model's value, the walk from it)
    _, model, inputs, labels, _ = outlier_report
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), Top1())
    calibration = IEEngine({"device": "CPU"}, Items(inputs, labels))
    baseline = 0.9
    params = {**PARAMS, "metrics": [{"name": "accuracy", "baseline_value": baseline}]}
    report = build_report(CompressedModel(model), engine, params, calibration, latency_rounds=1)
    search = AccuracyAwareQuantization(params, engine, calibration)
    spec = choose_metric(engine, params["metrics"])
    indices = search.evaluation_indices(spec)
    int8 = search.default_quantization(CompressedModel(model), {})
    int8_value, _ = evaluate(engine, int8, spec, indices)
    data = json.loads(report.to_json())
    shown = _shown(render_html(report), "drop (positive = worse)")
    assert data["int8_drop"] == pytest.approx(baseline - int8_value)
    assert shown == pytest.approx(data["int8_drop"], abs=5e-4)
    for point in report.curve:
        assert point.drop == pytest.approx(baseline - point.metric)
    assert data["recommended_drop"] == pytest.approx(baseline - report.recommended_metric)


def test_drop_without_baseline_is_fp_minus_int8(outlier_report):
    report, model, inputs, labels, _ = outlier_report
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), Top1())
    search = AccuracyAwareQuantization(PARAMS, engine, IEEngine({"device": "CPU"}, Items(inputs, labels)))
    spec = choose_metric(engine, None)
    indices = list(range(len(inputs)))
    fp_value, _ = evaluate(engine, CompressedModel(model), spec, indices)
    int8_value, _ = evaluate(engine, search.default_quantization(CompressedModel(model), {}), spec, indices)
    data = json.loads(report.to_json())
    assert data["int8_drop"] == pytest.approx(fp_value - int8_value)
    assert _shown(render_html(report), "drop (positive = worse)") == pytest.approx(data["int8_drop"], abs=5e-4)


def test_report_of_an_accuracy_aware_run_reuses_what_the_run_measured(tmp_path, monkeypatch):
    # the run's DefaultQuantization model, biases before correction, FP and INT8 evaluations: none done again
    from pot_torch.algorithms.quantization.default import DefaultQuantization

    runs = []
    original = DefaultQuantization.run
    monkeypatch.setattr(DefaultQuantization, "run", lambda self, *a, **k: runs.append(1) or original(self, *a, **k))
    model, inputs, labels = outlier_classifier()
    metric = Top1()
    engine = IEEngine({"device": "CPU"}, Items(inputs, labels), metric)
    calibration = IEEngine({"device": "CPU"}, Items(inputs, labels))
    search = AccuracyAwareQuantization({**PARAMS, "report_path": str(tmp_path / "r.html")}, engine, calibration)
    search.run(CompressedModel(model))
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(runs) == 1  # the run's DefaultQuantization; biases before correction recorded, no twin run
    assert data["evaluations"]["fp"] == 0 and data["evaluations"]["int8"] == 0
    # the recommendation is the set the run measured on all items: its figure is the run's, not measured again
    assert data["ignored"] == {"scope": search.reverted_layers}
    assert data["evaluations"]["check"] == 0 and data["recommended_basis"] == "AccuracyAwareQuantization"
    assert data["recommended_metric"] == search.final_metric and data["recommended_error"] is None
    assert data["own_evaluations"] <= data["aaq_ranking_evaluations"]
    assert data["fp_metric"] == search.fp_metric and data["int8_metric"] == search.starting_point.int8.value
    n = len(inputs)
    aaq = 2 * n + data["aaq_ranking_evaluations"] + n * len(search.reverted_layers)
    assert metric.samples == aaq + data["own_evaluations"]
