"""WeightBiasCorrection: quantized weights get the FP weights' per-channel mean and std (real OpenVINO, f32)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from model_builders import conv_model, reference_infer
from pot_torch.algorithms.quantization.minmax import MinMaxQuantization
from pot_torch.algorithms.quantization.synthetic_images import SyntheticImageLoader
from pot_torch.algorithms.quantization.weight_bias_correction import WeightBiasCorrection, fake_quantize_outputs
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.editor import fake_quantize_ops
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import create_pipeline

#: weight FakeQuantize -> (weight Constant of the FP model, its output-channel axis)
WEIGHT_FQS = {"conv1/fq_weights_1": ("conv1_weights", 0), "conv2/fq_weights_1": ("conv2_weights", 0),
              "fc/fq_weights_1": ("fc_weights", 1)}


def _loader() -> SyntheticImageLoader:
    return SyntheticImageLoader([1, 3, 16, 16], "NCHW", count=8)


@pytest.fixture(scope="module")
def engine() -> IEEngine:
    return IEEngine({"device": "CPU"}, _loader())


@pytest.fixture(scope="module")
def quantized(engine) -> CompressedModel:
    return MinMaxQuantization({"preset": "performance"}, engine).run(CompressedModel(conv_model()))


def _fp_weights():
    consts = {op.get_friendly_name(): op for op in conv_model().get_ordered_ops()}
    return {fq: (consts[const].get_data().astype(np.float32), axis) for fq, (const, axis) in WEIGHT_FQS.items()}


def _stats(weights: np.ndarray, axis: int):
    reduce = tuple(a for a in range(weights.ndim) if a != axis)
    return weights.mean(axis=reduce), weights.std(axis=reduce)


def test_quantized_weights_get_the_fp_mean_and_std_per_channel(engine, quantized):
    names = list(WEIGHT_FQS)
    before = dict(zip(names, fake_quantize_outputs(quantized.get_model(), names)))
    corrected = WeightBiasCorrection({}, engine).run(copy.deepcopy(quantized))
    after = dict(zip(names, fake_quantize_outputs(corrected.get_model(), names)))
    for name, (fp, axis) in _fp_weights().items():
        q = before[name]
        fp_mean, fp_std = _stats(fp, axis)
        q_mean, q_std = _stats(q, axis)
        # by hand: s = std(w) / (std(q) + 1e-5), m = mean(w) - mean(s q); the FQ now outputs s q + m
        s = fp_std / (q_std + 1e-5)
        m = fp_mean - s * q_mean
        shape = [1] * fp.ndim
        shape[axis] = -1
        np.testing.assert_allclose(after[name], q * s.reshape(shape) + m.reshape(shape), rtol=1e-5, atol=1e-6)
        a_mean, a_std = _stats(after[name], axis)
        np.testing.assert_allclose(a_mean, fp_mean, atol=1e-6)
        np.testing.assert_allclose(a_std, fp_std, rtol=1e-4)
        assert np.max(np.abs(q_std - fp_std) / fp_std) > 1e-4  # quantization had changed the spread


def test_saturation_fixed_first_layer_is_corrected_in_the_fp_scale(engine, quantized):
    # conv1 got POT's saturation fix: halved weights, FakeQuantize output range twice its input range
    fq = next(op for op in fake_quantize_ops(quantized.get_model()) if op.get_friendly_name() == "conv1/fq_weights_1")
    in_high = fq.input_value(2).get_node().get_data()
    out_high = fq.input_value(4).get_node().get_data()
    np.testing.assert_allclose(out_high, 2 * in_high, rtol=1e-6)
    corrected = WeightBiasCorrection({}, engine).run(copy.deepcopy(quantized))
    after = fake_quantize_outputs(corrected.get_model(), ["conv1/fq_weights_1"])[0]
    fp, axis = _fp_weights()["conv1/fq_weights_1"]
    np.testing.assert_allclose(_stats(after, axis)[1], _stats(fp, axis)[1], rtol=1e-4)


def test_per_tensor_weights_get_one_correction_and_stay_per_tensor(engine):
    quantized = MinMaxQuantization({"weights": {"granularity": "pertensor"}}, engine).run(
        CompressedModel(conv_model()))
    before = fake_quantize_outputs(quantized.get_model(), ["conv2/fq_weights_1"])[0]
    corrected = WeightBiasCorrection({}, engine).run(quantized)
    fq = next(op for op in fake_quantize_ops(corrected.get_model()) if op.get_friendly_name() == "conv2/fq_weights_1")
    assert all(fq.input_value(port).get_node().get_data().size == 1 for port in range(1, 5))
    after = fake_quantize_outputs(corrected.get_model(), ["conv2/fq_weights_1"])[0]
    fp = _fp_weights()["conv2/fq_weights_1"][0]
    s = fp.std() / (before.std() + 1e-5)
    np.testing.assert_allclose(after, s * before + (fp.mean() - s * before.mean()), rtol=1e-5, atol=1e-6)


def test_pipeline_with_minmax_runs_the_corrected_model(engine):
    pipeline = create_pipeline([{"name": "MinMaxQuantization", "params": {}},
                                {"name": "WeightBiasCorrection", "params": {"eps_factor": 1e-6}}], engine)
    result = pipeline.run(CompressedModel(conv_model()))
    item = _loader()[0][0][None]
    out = reference_infer(result.get_model(), [item])[0]
    fp = reference_infer(conv_model(), [item])[0]
    assert out.shape == fp.shape and np.max(np.abs(out - fp)) < 0.1 * np.max(np.abs(fp))
    # the shifted (asymmetric) output ranges still compress to INT8 weights (with a zero point); the CPU plugin
    # then runs fc in INT8 where it ran the uncompressed asymmetric one in floating point: a small difference
    compress_model_weights(result)
    assert not any(op.input_value(0).get_node().get_type_name() == "Constant"
                   for op in fake_quantize_ops(result.get_model()))
    np.testing.assert_allclose(reference_infer(result.get_model(), [item])[0], out, atol=0.01 * np.abs(fp).max())


def test_model_without_quantized_weights_is_left_with_a_warning(engine, caplog):
    model = CompressedModel(conv_model())
    WeightBiasCorrection({}, engine).run(model)
    assert "no fake-quantized weights" in caplog.text
    assert not fake_quantize_ops(model.get_model())


@pytest.mark.parametrize("value", [0, -1e-5, "small", float("nan")])
def test_eps_factor_must_be_positive(engine, value):
    with pytest.raises(ValueError, match="eps_factor"):
        WeightBiasCorrection({"eps_factor": value}, engine)
