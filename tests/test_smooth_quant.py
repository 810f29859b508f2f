"""SmoothQuant: scales, FP equivalence, shared Multiply, skip rules, DefaultQuantization wiring, IR determinism."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, create_pipeline, load_model, save_model
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization import smooth_alpha
from pot_torch.algorithms.quantization.smooth_quant import (SmoothQuant, group_scale, multiply_name,
                                                            smoothing_scale)
from pot_torch.engines import IEEngine
from pot_torch.graph.editor import find_op, ops_by_name
from tests.model_builders import reference_infer
from tests.test_minmax import ArrayLoader

SEQ, HIDDEN = 6, 8


def _weight(model: ov.Model, matmul: str) -> np.ndarray:
    return np.asarray(find_op(model, matmul).input_value(1).get_node().get_data())


def _smoothing_ops(model: ov.Model) -> List[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Multiply" and "smooth_quant" in op.get_friendly_name()]


def one_matmul_model(weight: np.ndarray) -> ov.Model:
    """input [1, 5, C] -> shift (Add) -> mm (x @ weight) -> output."""
    x = ops.parameter([1, 5, weight.shape[0]], np.float32, name="input")
    shift = ops.add(x, ops.constant(np.zeros((1, 1, weight.shape[0]), np.float32)))
    shift.set_friendly_name("shift")
    matmul = ops.matmul(shift, ops.constant(weight), False, False)
    matmul.set_friendly_name("mm")
    return ov.Model([ops.result(matmul)], [x], "one_matmul")


def encoder_block(seed: int = 0, shape: tuple = (1, SEQ, HIDDEN)) -> ov.Model:
    """input ``shape`` -> ln (Add) -> {q: x @ Wq, k: x @ Wk^T (transpose_b), relu} -> outputs.

    The activation has outlier channels (scaled x20) so SmoothQuant has something to move.
    """
    rng = np.random.default_rng(seed)
    x = ops.parameter(list(shape), np.float32, name="input")
    ln = ops.add(x, ops.constant(rng.standard_normal((1, 1, HIDDEN)).astype(np.float32) * 0.1))
    ln.set_friendly_name("ln")
    q = ops.matmul(ln, ops.constant(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32) * 0.3), False, False)
    q.set_friendly_name("q")
    k = ops.matmul(ln, ops.constant(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32) * 0.3), False, True)
    k.set_friendly_name("k")
    relu = ops.relu(ln)
    relu.set_friendly_name("relu")
    scores = ops.matmul(q, k, False, True)
    scores.set_friendly_name("scores")
    return ov.Model([ops.result(scores), ops.result(relu)], [x], "encoder_block")


def encoder_data(n: int = 6, seed: int = 1) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    gain = np.ones(HIDDEN, np.float32)
    gain[[1, 5]] = 20.0
    return [(rng.standard_normal((1, SEQ, HIDDEN)) * gain).astype(np.float32) for _ in range(n)]


def _pipeline(name: str, params: dict, model: ov.Model, data: List[np.ndarray]) -> CompressedModel:
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
    return create_pipeline([{"name": name, "params": params}], engine).run(CompressedModel(model))


def test_scales_match_a_hand_computed_case():
    # per-channel max|x| = [1, 4, 16, 64] (reached in the second sample), max|W| per input channel = 1
    weight = np.array([[1.0, -0.5], [0.25, 1.0], [-1.0, 0.0], [0.5, -1.0]], np.float32)
    peaks = np.array([1.0, 4.0, 16.0, 64.0], np.float32)
    small = np.full((1, 5, 4), 0.5, np.float32)
    big = np.tile(peaks * 0.25, (1, 5, 1)).astype(np.float32)
    big[0, 2] = -peaks
    result = _pipeline("SmoothQuant", {"smooth_quant_alpha": 0.5}, one_matmul_model(weight), [small, big])
    model = result.get_model()
    # s = sqrt(a) / sqrt(w) = [1, 2, 4, 8]; the floor is quantile(s, 0.1) = 1 + 0.3 * (2 - 1) = 1.3
    expected = np.array([1.3, 2.0, 4.0, 8.0])
    multiply = find_op(model, multiply_name("shift", 0))
    scale = np.asarray(multiply.input_value(1).get_node().get_data())
    assert scale.shape == (1, 1, 4)
    np.testing.assert_allclose(1.0 / scale.ravel(), expected, rtol=1e-5)
    np.testing.assert_allclose(_weight(model, "mm"), weight * expected[:, None], rtol=1e-5)
    assert find_op(model, "mm").input_value(0).get_node().get_friendly_name() == multiply_name("shift", 0)


def test_scale_formula_clips_and_reports_flatness():
    scale, ratio = smoothing_scale(np.array([0.0, 1e6, 1.0, 1.0]), np.array([1.0, 1.0, 0.0, 1.0]), 1.0)
    # a = 0 is floored to 1e-5; a = 1e6 is capped at 100; w = 0 does not matter at alpha = 1
    assert scale.max() == pytest.approx(100.0)
    assert scale.min() == pytest.approx(1e-5 + 0.3 * (1.0 - 1e-5), rel=1e-5)
    assert ratio == pytest.approx(scale.min() / 100.0, rel=1e-5)


def test_fp_outputs_unchanged_and_one_multiply_per_producer_output():
    model, data = encoder_block(), encoder_data()
    original_q = _weight(model, "q").copy()
    result = _pipeline("SmoothQuant", {}, model, data)
    smoothed = result.get_model()
    assert _smoothing_ops(smoothed) == [multiply_name("ln", 0)]
    by_name = ops_by_name(smoothed)
    for consumer in ("q", "k"):
        assert by_name[consumer].input_value(0).get_node().get_friendly_name() == multiply_name("ln", 0)
    assert by_name["relu"].input_value(0).get_node().get_friendly_name() == "ln"  # not a MatMul: untouched
    assert by_name["scores"].input_value(0).get_node().get_friendly_name() == "q"  # no constant weight
    assert not np.allclose(_weight(smoothed, "q"), original_q)
    np.testing.assert_array_equal(_weight(model, "q"), original_q)  # the caller's model is unchanged
    assert _smoothing_ops(model) == []
    for x in data[:3]:
        for before, after in zip(reference_infer(model, [x]), reference_infer(smoothed, [x])):
            np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


def _smoothing_scales(model: ov.Model) -> dict:
    return {name: np.asarray(find_op(model, name).input_value(1).get_node().get_data()).ravel()
            for name in _smoothing_ops(model)}


def test_dynamic_batch_and_sequence_axes_are_smoothed_like_static_ones():
    # issue #12: only the channel (reduction) axis needs a static size
    data = encoder_data()
    static = _smoothing_scales(_pipeline("SmoothQuant", {}, encoder_block(), data).get_model())
    dynamic = _smoothing_scales(_pipeline("SmoothQuant", {}, encoder_block(shape=(-1, -1, HIDDEN)), data).get_model())
    assert list(static) == [multiply_name("ln", 0)]
    assert list(dynamic) == list(static)
    np.testing.assert_array_equal(dynamic[multiply_name("ln", 0)], static[multiply_name("ln", 0)])


def test_a_dynamic_channel_axis_is_skipped_with_a_warning_naming_the_matmul(caplog):
    x = ops.parameter([-1, -1, -1], np.float32, name="input")
    relu = ops.relu(x)
    relu.set_friendly_name("relu")
    matmul = ops.matmul(relu, ops.constant(np.eye(HIDDEN, dtype=np.float32)), False, False)
    matmul.set_friendly_name("q")
    with caplog.at_level("WARNING"):
        result = _pipeline("SmoothQuant", {}, ov.Model([ops.result(matmul)], [x]), encoder_data())
    assert _smoothing_ops(result.get_model()) == []
    assert "SmoothQuant skips MatMul 'q'" in caplog.text and "static channel axis" in caplog.text


def test_default_quantization_smooths_transformers_only():
    model, data = encoder_block(), encoder_data()
    transformer = _pipeline("DefaultQuantization", {"model_type": "transformer"}, model, data).get_model()
    assert _smoothing_ops(transformer) == [multiply_name("ln", 0)]
    fq = ops_by_name(transformer)["q"].input_value(0).get_node()
    assert fq.get_type_name() == "FakeQuantize"  # quantized after smoothing, on the Multiply's output
    assert fq.input_value(0).get_node().get_friendly_name() == multiply_name("ln", 0)
    for params in ({}, {"model_type": "transformer", "smooth_quant_alpha": None},
                   {"model_type": "transformer", "smooth_quant_alpha": -1}):
        assert _smoothing_ops(_pipeline("DefaultQuantization", params, model, data).get_model()) == [], params


def test_disabled_smooth_quant_requests_nothing_and_changes_nothing():
    model, data = encoder_block(), encoder_data()
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
    algorithm = SmoothQuant({"smooth_quant_alpha": None}, engine)
    compressed = CompressedModel(model)
    assert algorithm.statistics_requests(compressed) == []
    assert _smoothing_ops(algorithm.run(compressed).get_model()) == []


def test_accuracy_aware_passes_a_disabling_none_to_default_quantization():
    config = resolve_params("AccuracyAwareQuantization", {"smooth_quant_alpha": None})
    assert sub_params(config, "DefaultQuantization").smooth_quant_alpha is None
    default = sub_params(resolve_params("AccuracyAwareQuantization", {}), "DefaultQuantization")
    assert default.smooth_quant_alpha == "auto"


def test_shared_weights_and_mismatched_axes_are_skipped():
    rng = np.random.default_rng(3)
    x = ops.parameter([1, SEQ, HIDDEN], np.float32, name="input")
    a = ops.add(x, ops.constant(np.ones((1, 1, HIDDEN), np.float32)))
    a.set_friendly_name("a")
    shared = ops.constant(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32))
    first = ops.matmul(a, shared, False, False)
    second = ops.matmul(ops.relu(a), shared, False, False)  # the same weight: skipped
    b = ops.add(x, ops.constant(np.ones((1, 1, HIDDEN), np.float32)))
    b.set_friendly_name("b")
    # b feeds one MatMul reducing over its last axis and one over its middle axis (transpose_a): skipped
    along_last = ops.matmul(b, ops.constant(rng.standard_normal((HIDDEN, 4)).astype(np.float32)), False, False)
    along_middle = ops.matmul(b, ops.constant(rng.standard_normal((SEQ, 4)).astype(np.float32)), True, False)
    model = ov.Model([ops.result(n) for n in (first, second, along_last, along_middle)], [x], "skips")
    assert _smoothing_ops(_pipeline("SmoothQuant", {}, model, encoder_data()).get_model()) == []


def _load(xml: Path) -> CompressedModel:
    return load_model({"model_name": xml.stem, "model": str(xml), "weights": str(xml.with_suffix(".bin"))})


def test_saved_model_reloads_and_the_ir_is_deterministic(tmp_path: Path):
    data = encoder_data()
    fp_xml = tmp_path / "fp.xml"
    ov.save_model(encoder_block(), fp_xml, compress_to_fp16=False)
    written = []
    for run in ("a", "b"):
        engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
        result = create_pipeline([{"name": "DefaultQuantization", "params": {"model_type": "transformer"}}],
                                 engine).run(_load(fp_xml))
        paths = save_model(result, str(tmp_path / run), model_name="block")
        written.append(Path(paths[0]["model"]))
    assert written[0].read_bytes() == written[1].read_bytes()
    assert written[0].with_suffix(".bin").read_bytes() == written[1].with_suffix(".bin").read_bytes()
    reloaded = _load(written[0]).get_model()
    assert _smoothing_ops(reloaded) == [multiply_name("ln", 0)]
    fp = reference_infer(encoder_block(), [data[0]])[0]
    quantized = reference_infer(reloaded, [data[0]])[0]
    cosine = float(np.dot(fp.ravel(), quantized.ravel()) / (np.linalg.norm(fp) * np.linalg.norm(quantized)))
    assert cosine > 0.99


def test_transformers_get_the_full_bias_correction_by_default():
    """model_type transformer -> use_fast_bias False unless given (docs/quantization.md, "Bias correction")."""
    rng = np.random.default_rng(2)
    x = ops.parameter([1, SEQ, HIDDEN], np.float32, name="input")
    hidden = x
    for name in ("fc1", "fc2"):
        weights = rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32)
        matmul = ops.matmul(hidden, ops.constant(weights), False, False)
        matmul.set_friendly_name(name)
        bias = rng.uniform(0.5, 1.0, (1, 1, HIDDEN)).astype(np.float32)
        hidden = ops.gelu(ops.add(matmul, ops.constant(bias)), "erf")
    model, data = ov.Model([ops.result(hidden)], [x], "biased_mlp"), encoder_data()

    def outputs(params: dict) -> np.ndarray:
        quantized = _pipeline("DefaultQuantization", params, model, data).get_model()
        compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.stack([compiled(item)[0] for item in data])

    default = outputs({"model_type": "transformer"})
    np.testing.assert_array_equal(default, outputs({"model_type": "transformer", "use_fast_bias": False}))
    assert not np.array_equal(default, outputs({"model_type": "transformer", "use_fast_bias": True}))


def test_smooth_quant_places_once_and_not_through_minmax(monkeypatch):
    """Issue #13: SmoothQuant built a whole MinMaxQuantization for its weight sites and placed them in both
    ``statistics_requests`` and ``run``; with MinMaxQuantization's own two placements a transformer took four.
    Now SmoothQuant places once, and MinMaxQuantization once per model it measures: the floating-point model
    (its statistics come from SmoothQuant's pass) and the smoothed model."""
    from tests.test_minmax import _count_placements
    calls = _count_placements(monkeypatch)
    model, data = encoder_block(), encoder_data()
    assert _smoothing_ops(_pipeline("DefaultQuantization", {"model_type": "transformer"}, model, data).get_model())
    assert len(calls) == 3


def _fake_quantize_ranges(model: ov.Model) -> dict:
    return {op.get_friendly_name(): [np.asarray(op.input_value(i).get_node().get_data()) for i in (1, 2)]
            for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"}


def test_transformers_take_one_statistics_pass_and_smoothed_ranges_are_exact(monkeypatch):
    """Issue #13 item 6: SmoothQuant's pass also gives MinMax its statistics; the ranges of the smoothed
    activations, derived from per-channel ones, equal those measured on the smoothed model."""
    model, data = encoder_block(), encoder_data()
    params = {"model_type": "transformer", "preset": "performance"}
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
    two_pass = create_pipeline([{"name": "SmoothQuant", "params": {"model_type": "transformer"}},
                                {"name": "MinMaxQuantization", "params": params}], engine).run(CompressedModel(model))
    passes = []
    original = IEEngine.predict

    def counted(self, stats_layout=None, sampler=None, *args, **kwargs):
        passes.append(len(sampler))
        return original(self, stats_layout, sampler, *args, **kwargs)

    monkeypatch.setattr(IEEngine, "predict", counted)
    one_pass = _pipeline("DefaultQuantization", params, model, data)
    assert passes.count(len(data)) == 1  # the bias correction's own subset is the other pass
    expected, got = _fake_quantize_ranges(two_pass.get_model()), _fake_quantize_ranges(one_pass.get_model())
    smoothed = [name for name in expected if name.startswith(multiply_name("ln", 0))]
    assert smoothed and set(expected) == set(got)
    for name in smoothed:
        for want, have in zip(expected[name], got[name]):
            np.testing.assert_array_equal(have, want)


def _outlier_matmul(channels: int = 16, tokens: int = 8) -> tuple:
    """input [1, tokens, C] -> ln (Add) -> mm (x @ W^T) and 8 samples whose channel 0 is 100x the others: at
    alpha 0.95 the smoothed weight's column 0 dwarfs the rest of each row, so weight rounding dominates."""
    rng = np.random.default_rng(0)
    gain = np.ones(channels, np.float32)
    gain[0] = 100.0
    data = [(rng.standard_normal((1, tokens, channels)) * gain).astype(np.float32) for _ in range(8)]
    weight = rng.standard_normal((channels, channels)).astype(np.float32)
    x = ops.parameter([1, tokens, channels], np.float32, name="input")
    ln = ops.add(x, ops.constant(np.zeros((1, 1, channels), np.float32)))
    ln.set_friendly_name("ln")
    matmul = ops.matmul(ln, ops.constant(weight), False, True)
    matmul.set_friendly_name("mm")
    return ov.Model([ops.result(matmul)], [x], "outlier_matmul"), data


def _relative_error(model: ov.Model, quantized: ov.Model, data: List[np.ndarray]) -> float:
    pairs = [(reference_infer(quantized, [x])[0], reference_infer(model, [x])[0]) for x in data]
    return float(sum(np.sum((q - r) ** 2) for q, r in pairs) / sum(np.sum(r ** 2) for _, r in pairs))


def test_default_alpha_is_searched_and_beats_a_fixed_095_when_weight_rounding_dominates(caplog):
    # issue #12: one alpha (0.95) does not suit every model; the default picks it per group on calibration rows
    model, data = _outlier_matmul()
    with caplog.at_level("INFO", logger="pot_torch.algorithms.quantization.smooth_quant"):
        searched = _pipeline("DefaultQuantization", {"model_type": "transformer"}, model, data).get_model()
    fixed = _pipeline("DefaultQuantization", {"model_type": "transformer", "smooth_quant_alpha": 0.95},
                      model, data).get_model()
    assert "SmoothQuant alpha 'auto' in 'outlier_matmul'" in caplog.text
    assert _relative_error(model, searched, data) < 0.9 * _relative_error(model, fixed, data)


def test_a_given_alpha_is_used_as_given_and_auto_asks_for_rows_of_a_few_samples():
    model, data = _outlier_matmul()
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
    given = SmoothQuant({"smooth_quant_alpha": 0.6}, engine)
    assert len(given.statistics_requests(CompressedModel(model))) == 1
    smoothed = _pipeline("SmoothQuant", {"smooth_quant_alpha": 0.6}, model, data).get_model()
    act_abs_max = np.max([np.abs(x).max(axis=(0, 1)) for x in data], axis=0)
    expected, _ = smoothing_scale(act_abs_max, np.abs(_weight(model, "mm")).max(axis=0), 0.6)
    np.testing.assert_allclose(_smoothing_scales(smoothed)[multiply_name("ln", 0)], 1.0 / expected, rtol=1e-6)
    scales, rows = SmoothQuant({}, engine).statistics_requests(CompressedModel(model))
    assert scales.subset_indices == list(range(len(data)))
    assert rows.subset_indices == list(range(len(data)))  # 8 samples: all of them
    assert rows.batch_size == scales.batch_size


def test_choose_alpha_takes_the_smallest_simulated_error_and_falls_back_without_rows():
    model, data = _outlier_matmul()
    samples = [x.reshape(-1, x.shape[-1]) for x in data]
    weight = _weight(model, "mm")
    act_abs_max = np.max([np.abs(x).max(axis=0) for x in samples], axis=0)

    def scale_for(alpha: float) -> np.ndarray:
        return group_scale(act_abs_max, [weight], alpha)

    references = [np.concatenate(samples) @ weight.T]
    errors = [smooth_alpha.quantized_output_error(samples, [weight], references, scale_for(a), False)
              for a in smooth_alpha.ALPHA_GRID]
    chosen = smooth_alpha.choose_alpha(samples, [weight], scale_for, symmetric=False)
    assert chosen == smooth_alpha.ALPHA_GRID[int(np.argmin(errors))] < 0.95
    assert errors[smooth_alpha.ALPHA_GRID.index(chosen)] < 0.9 * errors[-1]
    assert smooth_alpha.choose_alpha([], [weight], scale_for, symmetric=False) == smooth_alpha.FALLBACK_ALPHA


def test_activation_rows_keep_evenly_spaced_rows_of_the_channel_axis():
    output = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)  # channels on axis 1
    rows = smooth_alpha.ActivationRows(channel_axis=1, rows=4)(output)
    flat = np.moveaxis(output, 1, -1).reshape(-1, 3)
    np.testing.assert_array_equal(rows, flat[[0, 3, 6, 9]])
    assert smooth_alpha.ActivationRows(channel_axis=-1, rows=32)(output).shape == (6, 5)


def test_search_samples_are_spread_over_the_subset_so_they_get_their_own_short_pass():
    # a request for the subset's first samples rides on the main pass and copies rows out of all 300 samples
    assert smooth_alpha.search_indices(list(range(300))) == [0, 37, 74, 111, 148, 185, 222, 259]
    assert smooth_alpha.search_indices([5, 9, 11]) == [5, 9, 11]
