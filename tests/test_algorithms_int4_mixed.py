"""INT4MixedQuantization: 4-bit convolutions on the CPU plugin, returned to 8 bits until the drop is met (f32)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer
from output_metrics import Closeness
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.algorithms.quantization.int4_mixed import Int4DropNotMetWarning
from pot_torch.graph.editor import constant_value, fake_quantize_ops, fake_quantize_ranges


class ImagesWithFpOutputs(DataLoader):
    """12 images; the annotation of each is the floating-point model's output on it."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self.images = (rng.standard_normal((12, 1, 3, 16, 16)) + 0.5).astype(np.float32)
        model = conv_model()
        self.outputs = [reference_infer(model, [image])[0] for image in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index][0], self.outputs[index]


def _run(**params):
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, ImagesWithFpOutputs(), Closeness())
    pipeline = create_pipeline([{"name": "INT4MixedQuantization", "params": params}], engine)
    return pipeline.algorithms[0], pipeline.run(CompressedModel(conv_model()))


def _levels(model: CompressedModel) -> dict:
    return {fq.get_friendly_name(): fq.get_attributes()["levels"] for fq in fake_quantize_ops(model.get_model())}


def test_a_loose_drop_keeps_every_convolution_at_four_bits():
    algorithm, quantized = _run(maximal_drop=10.0)
    assert algorithm.low_bit_layers == ["conv1", "conv2"] and algorithm.int8_layers == []
    levels = _levels(quantized)
    # 4-bit symmetric weights: -7..7 (15 levels); 4-bit activations read only by convolutions: 16 levels;
    # the MatMul (fc) and its input stay at 8 bits (255 and 256 levels)
    assert {name: value for name, value in levels.items() if "conv" in name or name.startswith(("input", "relu1"))} \
        == {"conv1/fq_weights_1": 15, "conv2/fq_weights_1": 15, "input/fq_output_0": 16, "relu1/fq_output_0": 16}
    assert levels["fc/fq_weights_1"] == 255 and levels["pool/fq_output_0"] == 256
    # POT's 4-bit estimator: per output channel, the 0.999 quantile of |w| (outlier probability 1e-3)
    fq = next(op for op in fake_quantize_ops(quantized.get_model()) if op.get_friendly_name() == "conv2/fq_weights_1")
    weights = constant_value(fq.input_value(0)).reshape(8, -1)
    low, high, _, _ = fake_quantize_ranges(fq)
    np.testing.assert_allclose(high.ravel(), np.quantile(np.abs(weights), 0.999, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(low, -high)


def test_an_impossible_drop_returns_every_convolution_to_eight_bits_and_warns():
    with pytest.warns(Int4DropNotMetWarning, match="could not achieve"):
        algorithm, quantized = _run(maximal_drop=0.0)
    assert sorted(algorithm.int8_layers) == ["conv1", "conv2"] and algorithm.low_bit_layers == []
    assert set(_levels(quantized).values()) == {255, 256}
    # every convolution back at 8 bits: the same model as DefaultQuantization's
    engine = IEEngine({"device": "CPU"}, ImagesWithFpOutputs())
    default = create_pipeline([{"name": "DefaultQuantization"}], engine).run(CompressedModel(conv_model()))
    image = ImagesWithFpOutputs().images[0]
    np.testing.assert_array_equal(reference_infer(quantized.get_model(), [image])[0],
                                  reference_infer(default.get_model(), [image])[0])


def _run_on_cpu(model: ov.Model, x: np.ndarray, **config) -> np.ndarray:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})
    return compiled(x)[0]


def test_the_cpu_plugin_runs_sixteen_level_fake_quantize_exactly():
    # why INT4MixedQuantization is kept: 4-bit activations and weights as FakeQuantize with 16 levels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    w_high = np.abs(w).max(axis=0, keepdims=True)
    parameter = ops.parameter([4, 64], np.float32)
    fq_x = ops.fake_quantize(parameter, *(ops.constant(np.float32(v)) for v in (-3, 3, -3, 3)), 16)
    fq_w = ops.fake_quantize(ops.constant(w), *(ops.constant(v) for v in (-w_high, w_high, -w_high, w_high)), 16)
    model = ov.Model([ops.matmul(fq_x, fq_w, False, False)], [parameter])

    def fake_quantize(values, low, high):
        step = (high - low) / 15
        return np.round((np.clip(values, low, high) - low) / step) * step + low

    hand = fake_quantize(x, -3.0, 3.0) @ fake_quantize(w, -w_high, w_high)
    np.testing.assert_allclose(_run_on_cpu(model, x), hand, atol=1e-4)


def test_the_cpu_plugin_runs_u4_weights_exactly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    codes = rng.integers(0, 16, size=(64, 32))
    scale = (rng.random((1, 32)) * 0.1 + 0.01).astype(np.float32)
    weights = ov.op.Constant(ov.Type.u4, ov.Shape([64, 32]), codes.ravel().tolist())
    decompressed = ops.multiply(ops.subtract(ops.convert(weights, np.float32), ops.constant(np.float32(8))),
                                ops.constant(scale))
    parameter = ops.parameter([4, 64], np.float32)
    model = ov.Model([ops.matmul(parameter, decompressed, False, False)], [parameter])
    hand = x @ ((codes - 8) * scale)
    np.testing.assert_allclose(_run_on_cpu(model, x, DYNAMIC_QUANTIZATION_GROUP_SIZE="0"), hand, atol=1e-4)
