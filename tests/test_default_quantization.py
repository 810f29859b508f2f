"""DefaultQuantization: composition of alignment, MinMax and bias correction, statistics passes, parameters."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, create_pipeline
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.engines import IEEngine
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges, find_op
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.statistics.reducers import make_reducer
from tests.model_builders import conv_model, reference_infer
from tests.test_minmax import HIGHS, ArrayLoader, fq, images, quantize


class CountingEngine(IEEngine):
    """A user's IEEngine subclass that counts passes over the data (real inference underneath)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes = 0

    def predict(self, *args, **kwargs):
        self.passes += 1
        return super().predict(*args, **kwargs)


def aligned_pair_model() -> ov.Model:
    """input -> conv_a (+bias) -> conv_b 1x1 (+bias) -> relu -> output: a pair ActivationChannelAlignment takes."""
    rng = np.random.default_rng(4)
    x = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    scales = np.array([0.05, 1.0, 4.0, 0.3], np.float32).reshape(4, 1, 1, 1)
    conv_a = ops.convolution(x, ops.constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * scales),
                             [1, 1], [1, 1], [1, 1], [1, 1])
    conv_a.set_friendly_name("conv_a")
    bias_a = ops.add(conv_a, ops.constant(rng.standard_normal((1, 4, 1, 1)).astype(np.float32)))
    bias_a.set_friendly_name("conv_a_bias")
    conv_b = ops.convolution(bias_a, ops.constant(rng.standard_normal((4, 4, 1, 1)).astype(np.float32) * 0.3),
                             [1, 1], [0, 0], [0, 0], [1, 1])
    conv_b.set_friendly_name("conv_b")
    bias_b = ops.add(conv_b, ops.constant(rng.standard_normal((1, 4, 1, 1)).astype(np.float32) * 0.1))
    bias_b.set_friendly_name("conv_b_bias")
    relu = ops.relu(bias_b)
    relu.set_friendly_name("relu")
    return ov.Model([ops.result(relu)], [x], "aligned_pair")


def _run(params, model, data, engine_cls=CountingEngine):
    engine = engine_cls({"device": "CPU"}, ArrayLoader(data))
    result = create_pipeline([{"name": "DefaultQuantization", "params": params}], engine).run(CompressedModel(model))
    return result, engine


def test_one_statistics_pass_for_minmax_and_fast_bias_correction():
    result, engine = _run({}, conv_model(), images())
    assert engine.passes == 1  # no conv pair to align (ReLU in between), MinMax + FBC share one pass
    minmax_only = quantize({})
    names = [node.get_friendly_name() for node in fake_quantize_ops(result.get_model())]
    assert names == [node.get_friendly_name() for node in fake_quantize_ops(minmax_only.get_model())]
    for name in names:  # same ranges as MinMaxQuantization alone (its sub-parameters are the defaults)
        for a, b in zip(fq(result, name), fq(minmax_only, name)):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_fast_bias_correction_changes_biases_and_brings_outputs_closer():
    data = images()
    result, _ = _run({}, conv_model(), data)
    minmax_only = quantize({}, data)
    corrected = find_op(result.get_model(), "fc_bias_const").get_data()
    assert not np.array_equal(corrected, find_op(conv_model(), "fc_bias_const").get_data())
    errors = []
    for model in (minmax_only.get_model(), result.get_model()):
        errors.append(np.mean([np.abs(reference_infer(model, [x])[0] - reference_infer(conv_model(), [x])[0]).mean()
                               for x in data[:2]]))
    assert errors[1] < errors[0]


def _constants_and_ranges(model: ov.Model) -> dict:
    """Every Constant of ``model`` by the op reading it (FakeQuantize ranges and the aligned weights and biases)."""
    return {(target.get_node().get_friendly_name(), target.get_index()): np.asarray(op.get_data())
            for op in model.get_ordered_ops() if op.get_type_name() == "Constant"
            for target in op.output(0).get_target_inputs()}


def _two_pass(params, data) -> CompressedModel:
    """ActivationChannelAlignment, then MinMax and the bias correction on statistics of the aligned model (the
    parts DefaultQuantization runs, with the parameters it gives them)."""
    engine = IEEngine({"device": "CPU"}, ArrayLoader(data))
    config = resolve_params("DefaultQuantization", params)
    correction = "FastBiasCorrection" if config.use_fast_bias else "BiasCorrection"
    return create_pipeline([{"name": name, "params": dict(sub_params(config, name))}
                            for name in ("ActivationChannelAlignment", "MinMaxQuantization", correction)],
                           engine).run(CompressedModel(aligned_pair_model()))


def _pair_data():
    return [np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32) for i in range(4)]


@pytest.mark.parametrize("params", [{}, {"preset": "mixed"}, {"use_fast_bias": False},
                                    {"activations": {"granularity": "perchannel"}}])
def test_channel_alignment_shares_the_one_statistics_pass(params):
    """Issue #13: the statistics of the aligned activation are derived from its per-channel min/max/mean
    measured before alignment, so a CNN with a conv pair takes one pass (was two); the IR matches the two-pass
    one (float32 rounding of the aligned convolution aside)."""
    data = _pair_data()
    result, engine = _run(params, aligned_pair_model(), data)
    assert engine.passes == 1
    before = find_op(aligned_pair_model(), "conv_a_bias").input_value(1).get_node().get_data()
    after = find_op(result.get_model(), "conv_a_bias").input_value(1).get_node().get_data()
    assert not np.allclose(before, after)  # the alignment shifted the producer's bias
    expected = _constants_and_ranges(_two_pass(params, data).get_model())
    got = _constants_and_ranges(result.get_model())
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_channel_alignment_with_quantile_ranges_measures_them_in_a_second_pass(caplog):
    """Quantiles do not follow from per-channel min/max: the aligned activation's are measured again (DEBUG)."""
    data = _pair_data()
    params = {"range_estimator": {"preset": "quantile"}}
    with caplog.at_level("DEBUG", logger="pot_torch"):
        result, engine = _run(params, aligned_pair_model(), data)
    assert engine.passes == 2
    assert any("measured on the aligned model" in record.getMessage() and "conv_a_bias" in record.getMessage()
               for record in caplog.records)
    expected = _constants_and_ranges(_two_pass(params, data).get_model())
    got = _constants_and_ranges(result.get_model())
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_full_bias_correction_with_use_fast_bias_false():
    result, engine = _run({"use_fast_bias": False}, conv_model(), images())
    assert engine.passes == 1  # BiasCorrection's first 20 % of the subset rides on the main pass (was 2)
    assert len(fake_quantize_ops(result.get_model())) == 7
    changed = find_op(result.get_model(), "fc_bias_const").get_data()
    assert not np.array_equal(changed, find_op(conv_model(), "fc_bias_const").get_data())


def test_parameters_reach_minmax():
    result, _ = _run({"preset": "mixed", "stat_subset_size": 2}, conv_model(), images(signed=True))
    _, low, high, *_ = fq(result, "input/fq_output_0")
    assert float(low) < 0 and float(high) == pytest.approx(HIGHS[:2].mean(), rel=1e-6)  # asymmetric, 2 samples
    result, _ = _run({"ignored": {"scope": ["fc"]}, "saturation_fix": "no"}, conv_model(), images())
    names = [node.get_friendly_name() for node in fake_quantize_ops(result.get_model())]
    assert "fc/fq_weights_1" not in names
    _, _, high, _, out_high = fq(result, "conv1/fq_weights_1")
    np.testing.assert_array_equal(high, out_high)


def test_statistics_requests_empty_and_transformer_preset():
    engine = IEEngine({"device": "CPU"}, ArrayLoader(images()))
    algorithm = DefaultQuantization({}, engine)
    assert algorithm.statistics_requests(CompressedModel(conv_model())) == []
    assert DefaultQuantization({"model_type": "transformer"}, engine).config.preset == "mixed"
    with pytest.raises(ValueError, match="unknown parameter.*'use_fast_bias_correction'.*valid parameters:.*use_fast_bias"):
        DefaultQuantization({"use_fast_bias_correction": True}, engine)


def test_fake_quantize_ranges_are_finite():
    result, _ = _run({}, conv_model(), images())
    for node in fake_quantize_ops(result.get_model()):
        assert all(np.isfinite(v).all() for v in fake_quantize_ranges(node))


def embedding_se_model() -> ov.Model:
    """ids [1,6] -> embedding Gather [50,16] -> MatMul fc [16,16] -> reshape [1,16,2,3] -> mean (1x1) ->
    1x1 conv ``se_conv`` -> output: a weights-only embedding table and a weights-only 1x1-spatial conv."""
    rng = np.random.default_rng(7)
    ids = ops.parameter([1, 6], np.int64, name="ids")
    table = ops.constant(rng.standard_normal((50, 16)).astype(np.float32))
    rows = ops.gather(table, ids, ops.constant(np.array(0, np.int64)))
    rows.set_friendly_name("embedding")
    fc = ops.matmul(rows, ops.constant(rng.standard_normal((16, 16)).astype(np.float32) * 0.2), False, False)
    fc.set_friendly_name("fc")
    image = ops.reshape(ops.transpose(fc, ops.constant(np.array([0, 2, 1], np.int64))),
                        ops.constant(np.array([1, 16, 2, 3], np.int64)), False)
    pooled = ops.reduce_mean(image, ops.constant(np.array([2, 3], np.int64)), True)
    se = ops.convolution(pooled, ops.constant(rng.standard_normal((16, 16, 1, 1)).astype(np.float32) * 0.2),
                         [1, 1], [0, 0], [0, 0], [1, 1])
    se.set_friendly_name("se_conv")
    return ov.Model([ops.result(se)], [ids], "embedding_se")


def test_weights_only_quantizers_compress_and_reload(tmp_path):
    from pot_torch import compress_model_weights, load_model, save_model

    data = [np.random.default_rng(i).integers(0, 50, size=(1, 6)) for i in range(8)]
    result, _ = _run({"target_device": "CPU"}, embedding_se_model(), data)
    quantized = {node.get_friendly_name() for node in fake_quantize_ops(result.get_model())}
    # the global pool's input quantizer (findings 8.12) moves up across the Transpose/Reshape to fc's output
    assert quantized == {"embedding/fq_weights_0", "fc/fq_weights_1", "embedding/fq_output_0",
                         "se_conv/fq_weights_1", "fc/fq_output_0"}
    before = [reference_infer(result.get_model(), [ids])[0] for ids in data[:3]]
    fp_paths = save_model(CompressedModel(embedding_se_model()), str(tmp_path / "fp"), model_name="m")
    compress_model_weights(result)
    int8_paths = save_model(result, str(tmp_path / "int8"), model_name="m")
    fp_bin, int8_bin = (tmp_path / "fp" / "m.bin").stat().st_size, (tmp_path / "int8" / "m.bin").stat().st_size
    assert int8_bin < 0.35 * fp_bin  # 8-bit weights plus per-row / per-channel scales
    reloaded = load_model({"model_name": "m", "model": int8_paths[0]["model"], "weights": int8_paths[0]["weights"]})
    reference = load_model({"model_name": "m", "model": fp_paths[0]["model"], "weights": fp_paths[0]["weights"]})
    for ids, quantized_out in zip(data, before):
        got = reference_infer(reloaded.get_model(), [ids])[0].ravel()
        np.testing.assert_allclose(got, quantized_out.ravel(), rtol=1e-4, atol=1e-5)  # compression is exact
        want = reference_infer(reference.get_model(), [ids])[0].ravel()
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.98


def test_a_request_on_the_first_batches_of_another_shares_its_pass_with_the_same_values():
    data = [np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32) for i in range(8)]
    engine = CountingEngine({"device": "CPU"}, ArrayLoader(data))
    model = CompressedModel(conv_model())
    long = StatisticsRequest([StatisticSpec("input", "max", make_reducer("max", False, inplace=True), "max")],
                             list(range(8)), 1)
    short = StatisticsRequest([StatisticSpec("input", "mean", make_reducer("mean", True, inplace=True), "mean"),
                               StatisticSpec("input", "raw", lambda x: x)], list(range(3)), 1)
    together = collect_statistics(engine, model, [long, short])
    assert engine.passes == 1
    alone = collect_statistics(engine, model, [short])[0]
    assert len(together[1]["input"]["raw"]) == 3  # its three batches, not the long pass's eight
    np.testing.assert_array_equal(np.concatenate(together[1]["input"]["raw"]), np.concatenate(alone["input"]["raw"]))
    np.testing.assert_allclose(together[1]["input"]["mean"], alone["input"]["mean"], rtol=1e-6)
    # cut to its batches, then aggregated: the mean of the first three samples only
    np.testing.assert_allclose(together[1]["input"]["mean"], np.mean(np.concatenate(data[:3]), axis=(0, 2, 3)),
                               rtol=1e-5)
    assert together[0]["input"]["max"] == max(float(x.max()) for x in data)
    other_order = StatisticsRequest(short.specs, [1, 2, 3], 1)  # not the long pass's first samples: own pass
    engine.passes = 0
    collect_statistics(engine, model, [long, other_order])
    assert engine.passes == 2
