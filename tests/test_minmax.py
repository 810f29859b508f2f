"""MinMaxQuantization on real OpenVINO inference: every parameter against hand-computed FakeQuantize ranges."""
from __future__ import annotations

import copy
from typing import Dict, List

import numpy as np
import openvino as ov
import pytest

from pot_torch import CompressedModel, DataLoader, create_pipeline
from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.quantizer_ranges import align_zero
from pot_torch.algorithms.quantization.minmax import MinMaxQuantization
from pot_torch.engines import IEEngine
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges, find_op
from tests.model_builders import conv_model, reference_infer

HIGHS = np.array([1.0, 2.0, 3.0, 4.0])  # per-sample max of the model input
LOWS = np.array([-0.5, -1.0, -1.5, -1.0])  # per-sample min when the data is signed


class ArrayLoader(DataLoader):
    """Items ``(array, None)``."""

    def __init__(self, arrays: List[np.ndarray]) -> None:
        super().__init__()
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, index: int):
        return self._arrays[index], None


def images(signed: bool = False, shape=(1, 3, 16, 16)) -> List[np.ndarray]:
    """One image per entry of ``HIGHS``: values in ``[LOWS[i] or 0, HIGHS[i]]``, both ends reached exactly."""
    rng = np.random.default_rng(7)
    result = []
    for low, high in zip(LOWS if signed else np.zeros_like(HIGHS), HIGHS):
        x = rng.uniform(low, high, size=shape).astype(np.float32)
        x.flat[0], x.flat[1] = low, high
        result.append(x)
    return result


def quantize(params: Dict, data: List[np.ndarray] = None, model: ov.Model = None,
             name: str = "MinMaxQuantization") -> CompressedModel:
    """Run the algorithm through a pipeline with an IEEngine on ``data`` (default: unsigned images)."""
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data if data is not None else images()))
    pipeline = create_pipeline([{"name": name, "params": params}], engine)
    return pipeline.run(CompressedModel(model if model is not None else conv_model()))


def fq(model: CompressedModel, name: str):
    """``(levels, input_low, input_high, output_low, output_high)`` of FakeQuantize ``name``."""
    node = find_op(model.get_model(), name)
    return (node.get_attributes()["levels"], *fake_quantize_ranges(node))


def conv_weights(name: str) -> np.ndarray:
    return find_op(conv_model(), f"{name}_weights").get_data().astype(np.float32)


def test_performance_unsigned_input_range():
    levels, low, high, out_low, out_high = fq(quantize({}), "input/fq_output_0")
    assert levels == 256
    assert float(low) == 0.0 and out_low == low and out_high == high
    assert float(high) == pytest.approx(HIGHS.mean(), rel=1e-6)  # max: abs_max aggregated by mean


def test_performance_signed_input_range():
    levels, low, high, *_ = fq(quantize({}, images(signed=True)), "input/fq_output_0")
    assert float(high) == pytest.approx(HIGHS.mean(), rel=1e-6)
    assert float(low) == pytest.approx(-HIGHS.mean() * 256 / 254, rel=1e-6)  # max lands on level 127


def test_mixed_asymmetric_range_has_exact_zero():
    levels, low, high, *_ = fq(quantize({"preset": "mixed"}, images(signed=True)), "input/fq_output_0")
    mean_low, mean_high = LOWS.mean(), HIGHS.mean()  # both aggregated by mean
    zero_level = round(-mean_low * 255 / (mean_high - mean_low))
    assert zero_level == 73
    assert float(low) == pytest.approx(zero_level / (zero_level - 255) * mean_high, rel=1e-6)
    assert float(high) == pytest.approx(mean_high, rel=1e-6)
    assert (-low / (high - low) * 255) == pytest.approx(73, abs=1e-3)


def test_weights_symmetric_per_channel_with_first_layer_saturation_fix():
    result = quantize({})
    for name, rescaled in (("conv1", True), ("conv2", False)):
        levels, low, high, out_low, out_high = fq(result, f"{name}/fq_weights_1")
        expected = np.abs(conv_weights(name)).max(axis=(1, 2, 3)).reshape(-1, 1, 1, 1)
        assert levels == 255 and high.shape == (8, 1, 1, 1)
        np.testing.assert_allclose(high, expected, rtol=1e-6)
        np.testing.assert_allclose(low, -expected, rtol=1e-6)
        np.testing.assert_allclose(out_high, expected * (2 if rescaled else 1), rtol=1e-6)
        stored = find_op(result.get_model(), f"{name}_weights").get_data()
        np.testing.assert_allclose(stored, conv_weights(name) / (2 if rescaled else 1), rtol=1e-6)
    fc_high = fq(result, "fc/fq_weights_1")[2]
    weights = find_op(conv_model(), "fc_weights").get_data()
    np.testing.assert_allclose(fc_high, np.abs(weights).max(axis=0, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("params,rescaled", [({"saturation_fix": "no"}, set()),
                                             ({"saturation_fix": "all"}, {"conv1", "conv2", "fc"}),
                                             ({"target_device": "GPU"}, set()),
                                             ({"target_device": "CPU_SPR"}, set())])
def test_saturation_fix_modes(params, rescaled):
    result = quantize(params)
    for name in ("conv1", "conv2", "fc"):
        _, _, high, _, out_high = fq(result, f"{name}/fq_weights_1")
        np.testing.assert_allclose(out_high, high * (2 if name in rescaled else 1), rtol=1e-6)


def test_accuracy_preset_asymmetric_weights():
    levels, low, high, *_ = fq(quantize({"preset": "accuracy"}), "conv2/fq_weights_1")
    weights = conv_weights("conv2")
    expected = align_zero(np.minimum(weights.min(axis=(1, 2, 3), keepdims=True), 0),
                          np.maximum(weights.max(axis=(1, 2, 3), keepdims=True), 0), 8)
    assert levels == 256
    np.testing.assert_allclose(low, expected[0], rtol=1e-6)
    np.testing.assert_allclose(high, expected[1], rtol=1e-6)
    assert fq(quantize({"preset": "mixed"}), "conv2/fq_weights_1")[0] == 255  # mixed keeps symmetric weights


@pytest.mark.parametrize("estimator,expected", [
    ({"max": {"aggregator": "max"}}, HIGHS.max()),
    ({"max": {"clipping_value": 2.0}}, 2.0),
])
def test_activation_range_estimator_overrides(estimator, expected):
    _, low, high, *_ = fq(quantize({"activations": {"range_estimator": estimator}}), "input/fq_output_0")
    assert float(high) == pytest.approx(expected, rel=1e-6) and float(low) == 0.0


def test_quantile_preset():
    data = images()
    _, _, high, *_ = fq(quantize({"range_estimator": {"preset": "quantile"}}, data), "input/fq_output_0")
    expected = np.mean([np.quantile(np.abs(x), 1 - 1e-4) for x in data])
    assert float(high) == pytest.approx(expected, rel=1e-5)
    weights = conv_weights("conv2")
    _, _, w_high, *_ = fq(quantize({"range_estimator": {"preset": "quantile"}}, data), "conv2/fq_weights_1")
    np.testing.assert_allclose(w_high.ravel(), np.quantile(np.abs(weights), 1 - 1e-4, axis=(1, 2, 3)), rtol=1e-5)


def test_bits_and_levels_overrides():
    result = quantize({"weights": {"bits": 4}, "activations": {"level_low": -128, "level_high": 127}})
    assert fq(result, "conv2/fq_weights_1")[0] == 15  # 4-bit symmetric weights: -7..7
    _, low, high, *_ = fq(result, "input/fq_output_0")
    assert float(low) == pytest.approx(-float(high) * 256 / 254, rel=1e-6)  # signed although the data is not


def test_activations_per_channel():
    data = images(signed=True)
    _, low, high, *_ = fq(quantize({"activations": {"granularity": "perchannel"}}, data), "input/fq_output_0")
    assert high.shape == (1, 3, 1, 1)
    expected = np.max([np.abs(x).max(axis=(0, 2, 3)) for x in data], axis=0)  # per-channel abs_max, by max
    np.testing.assert_allclose(high.ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(low.ravel(), -expected * 256 / 254, rtol=1e-6)


def test_stat_subset_size_shuffle_and_seed():
    high = fq(quantize({"stat_subset_size": 2}), "input/fq_output_0")[2]
    assert float(high) == pytest.approx(HIGHS[:2].mean(), rel=1e-6)
    params = {"stat_subset_size": 2, "shuffle_data": True, "seed": 5}
    picked = list(calibration_indices(params, len(HIGHS)))
    assert picked != [0, 1]
    high = fq(quantize(params), "input/fq_output_0")[2]
    assert float(high) == pytest.approx(HIGHS[picked].mean(), rel=1e-6)


def test_inplace_statistics_gives_the_same_ranges():
    data = images(signed=True)
    in_graph, numpy_side = quantize({"inplace_statistics": True}, data), quantize({"inplace_statistics": False}, data)
    for node in fake_quantize_ops(in_graph.get_model()):
        for a, b in zip(fake_quantize_ranges(node), fq(numpy_side, node.get_friendly_name())[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ignored_scope_in_run():
    result = quantize({"ignored": {"scope": ["conv2"], "operations": [{"type": "MatMul"}]}})
    names = [node.get_friendly_name() for node in fake_quantize_ops(result.get_model())]
    assert names == ["input/fq_output_0", "conv1/fq_weights_1", "relu2/fq_output_0"]  # AvgPool input stays


def test_quantized_model_runs_int8_reloads_and_leaves_input_alone(tmp_path):
    original = CompressedModel(conv_model())
    engine = IEEngine({"device": "CPU"}, ArrayLoader(images()))
    result = create_pipeline([{"name": "MinMaxQuantization", "params": {}}], engine).run(original)
    assert fake_quantize_ops(original.get_model()) == []
    runtime = ov.Core().compile_model(result.get_model(), "CPU").get_runtime_model()
    precision = {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
                 for op in runtime.get_ordered_ops()}
    assert precision["conv1"] == "u8" and precision["conv2"] == "u8"
    ov.save_model(result.get_model(), tmp_path / "q.xml", compress_to_fp16=False)
    reloaded = ov.Core().read_model(tmp_path / "q.xml")
    x = images()[1]  # inside the calibrated input range
    expected = reference_infer(original.get_model(), [x])[0]
    got = reference_infer(reloaded, [x])[0]
    np.testing.assert_allclose(got, reference_infer(result.get_model(), [x])[0], rtol=1e-5, atol=1e-6)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_same_inputs_give_byte_identical_ir(tmp_path):
    for run in ("a", "b"):
        ov.save_model(quantize({"preset": "mixed"}).get_model(), tmp_path / f"{run}.xml", compress_to_fp16=False)
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_standalone_run_collects_its_own_statistics():
    model = CompressedModel(conv_model())
    algorithm = MinMaxQuantization({}, IEEngine({"device": "CPU"}, ArrayLoader(images())))
    same = algorithm.run(copy.deepcopy(model))
    assert float(fq(same, "input/fq_output_0")[2]) == pytest.approx(HIGHS.mean(), rel=1e-6)


def test_transformer_defaults_to_mixed_preset():
    engine = IEEngine({"device": "CPU"}, ArrayLoader(images()))
    assert MinMaxQuantization({"model_type": "transformer"}, engine).config.preset == "mixed"
    assert MinMaxQuantization({"model_type": "transformer", "preset": "performance"}, engine).config.preset == \
        "performance"
    assert MinMaxQuantization({}, engine).config.preset == "performance"


def test_parameter_errors_name_the_valid_ones():
    engine = IEEngine({"device": "CPU"}, ArrayLoader(images()))
    with pytest.raises(ValueError, match="unknown parameter.*'presets'.*valid parameters:.*preset"):
        MinMaxQuantization({"presets": "mixed"}, engine)
    with pytest.raises(ValueError, match="invalid value 'fast' for 'preset'; valid values: 'performance', 'mixed'"):
        MinMaxQuantization({"preset": "fast"}, engine)
    with pytest.raises(ValueError, match="'activations.range_estimator.max.type'"):
        MinMaxQuantization({"activations": {"range_estimator": {"max": {"type": "abs"}}}}, engine)
    with pytest.raises(ValueError, match="GNA"):
        MinMaxQuantization({"target_device": "GNA"}, engine)


class PerBatchEngine(IEEngine):
    """A user engine as POT allowed: it hands the layout on as plain functions, so statistics come back as one
    value per batch (no online aggregation)."""

    def predict(self, stats_layout=None, sampler=None, **kwargs):
        self.lengths = []
        plain = None if stats_layout is None else {
            node: {name: (lambda x, fn=fn: fn(x)) for name, fn in stats.items()} for node, stats in stats_layout.items()}
        metrics, stats = super().predict(plain, sampler, **kwargs)
        self.lengths = sorted({len(values) for node in (stats or {}).values() for values in node.values()})
        return metrics, stats


@pytest.mark.parametrize("preset", ["performance", "mixed"])
def test_engine_returning_per_batch_lists_gives_the_same_ranges(preset):
    """Online aggregation inside IEEngine and POT's per-batch lists from a custom engine give equal ranges."""
    data = images(signed=True)
    streamed = quantize({"preset": preset}, data)
    engine = PerBatchEngine({"device": "CPU"}, ArrayLoader(data))
    listed = create_pipeline([{"name": "MinMaxQuantization", "params": {"preset": preset}}], engine).run(
        CompressedModel(conv_model()))
    assert engine.lengths == [len(data)]
    for node in fake_quantize_ops(streamed.get_model()):
        for a, b in zip(fake_quantize_ranges(node), fq(listed, node.get_friendly_name())[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ignored_op_reading_a_quantized_output_raw_is_reported_under_dynamic_shapes(caplog):
    """An ignored op keeps reading the float value of a quantized output; with dynamic shapes the CPU plugin can
    compute that output wrongly (tests/test_regressions.py), so MinMaxQuantization says so."""
    from tests.model_builders import se_residual_model

    data = [np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32) for i in range(2)]
    for shape, expected in (((1, 3, 16, 16), False), ((-1, 3, -1, -1), True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="pot_torch"):
            quantize({"ignored": {"scope": ["se_scale"]}}, data, se_residual_model(shape=shape))
        assert ("se_scale reads the input of conv2/fq_output_0" in caplog.text) == expected


def _count_placements(monkeypatch) -> List[int]:
    """Record one entry per ``place_quantizers`` call (each starts with ``ignored_op_names``)."""
    from pot_torch.algorithms.quantization import placement
    calls: List[int] = []
    original = placement.ignored_op_names

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(placement, "ignored_op_names", counted)
    return calls


def test_placement_is_computed_once_per_model(monkeypatch):
    """Issue #13: ``statistics_requests`` and ``run`` placed the FakeQuantize ops twice; they share one plan now,
    and a changed model gets a new one."""
    calls = _count_placements(monkeypatch)
    quantize({})
    assert len(calls) == 1
    algorithm = MinMaxQuantization({}, IEEngine({"device": "CPU"}, ArrayLoader(images())))
    model = CompressedModel(conv_model())
    first = algorithm.plan(model)
    assert algorithm.plan(copy.deepcopy(model)) is first and len(calls) == 2  # same structure: same plan
    algorithm.run(model)  # inserts FakeQuantize ops
    assert algorithm.plan(model) is not first and len(calls) == 3


def test_cpu_workaround_sites_are_never_requested_nor_inserted():
    """Issue #13: the CPU plugin workarounds removed FakeQuantize ops after insertion, so their statistics were
    collected for nothing; now the plan leaves them out and the statistics request follows the plan."""
    from tests.test_regressions import _attention_scores_model, _batch_norm_then_linear
    model = _attention_scores_model(_batch_norm_then_linear)
    norm = next(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "BatchNormInference")
    data = [np.random.default_rng(i).standard_normal((1, 2, 3, 4)).astype(np.float32) for i in range(2)]
    algorithm = MinMaxQuantization({}, IEEngine({"device": "CPU"}, ArrayLoader(data)))
    layout = algorithm.statistics_requests(CompressedModel(model))[0].layout
    assert norm not in layout and "query" in layout


def tokens_first_model(tokens: int = 6, channels: int = 4) -> ov.Model:
    """``[1, T, C]`` input -> Reshape to ``[T, 1, C]`` (tokens first, as torch's MultiheadAttention) -> Add 0 ->
    MatMul."""
    import openvino.opset13 as ops
    data = ops.parameter([1, tokens, channels], ov.Type.f32, name="input")
    shape = ops.constant(np.array([tokens, 1, channels], np.int64))
    shape.set_friendly_name("tokens_first_shape")
    reshaped = ops.reshape(data, shape, special_zero=False)
    reshaped.set_friendly_name("tokens_first_reshape")
    reshaped = ops.add(reshaped, ops.constant(np.zeros(channels, np.float32)))  # keeps the FakeQuantize here
    reshaped.set_friendly_name("tokens_first")
    weight = ops.constant(np.random.default_rng(3).normal(size=(channels, 5)).astype(np.float32))
    weight.set_friendly_name("matmul_weights")
    matmul = ops.matmul(reshaped, weight, False, False)
    matmul.set_friendly_name("matmul")
    return ov.Model([ops.result(matmul)], [data], "tokens_first")


@pytest.mark.parametrize("inplace", [True, False])
def test_axis_0_that_is_not_the_batch_is_reduced_with_the_sample(inplace):
    """Axis 0 of ``[T, 1, C]`` holds tokens, not samples: one batch-1 inference is one sample, so the
    symmetric high is that sample's max |x| (not the mean of the per-token maxima)."""
    rng = np.random.default_rng(11)
    sample = rng.uniform(-1.0, 1.0, size=(1, 6, 4)).astype(np.float32)
    sample[0, :, 0] = np.arange(1, 7, dtype=np.float32)  # token t has max |x| t + 1
    result = quantize({"preset": "performance", "inplace_statistics": inplace}, [sample],
                      model=tokens_first_model())
    activation_fqs = [node for node in fake_quantize_ops(result.get_model())
                      if node.input_value(0).get_node().get_friendly_name() == "tokens_first"]
    assert len(activation_fqs) == 1
    _, high, _, _ = fake_quantize_ranges(activation_fqs[0])
    assert float(np.max(high)) == pytest.approx(6.0, rel=1e-6)  # the sample's max |x|, not mean(1..6) = 3.5


def test_an_item_holding_several_samples_keeps_them_apart():
    """A data item ``[4, C]`` fed to a dynamic-batch model is 4 samples (the feed's batch axis), not one."""
    import openvino.opset13 as ops
    data = ops.parameter([-1, 4], ov.Type.f32, name="input")
    act = ops.add(data, ops.constant(np.zeros(4, np.float32)))
    act.set_friendly_name("act")
    matmul = ops.matmul(act, ops.constant(np.ones((4, 2), np.float32)), False, False)
    model = ov.Model([ops.result(matmul)], [data], "batched_item")
    item = np.diag(np.arange(1, 5, dtype=np.float32))  # sample i has max |x| i + 1
    result = quantize({"preset": "performance"}, [item], model=model)
    node = next(node for node in fake_quantize_ops(result.get_model())
                if node.input_value(0).get_node().get_friendly_name() == "act")
    assert float(np.max(fake_quantize_ranges(node)[1])) == pytest.approx(2.5, rel=1e-6)  # mean of 1..4
