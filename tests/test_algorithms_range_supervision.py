"""RangeSupervision: Clamp ops after activations with ranges from statistics, with real OpenVINO inference (f32)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import reference_infer
from pot_torch.algorithms.quantization.range_supervision import RangeSupervision
from pot_torch.algorithms.quantization.synthetic_images import SyntheticImageLoader
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.pipeline import create_pipeline

SHAPE = [1, 3, 8, 8]


def scaled(x: np.ndarray) -> np.ndarray:
    """What the model feeds its Relu: pixels 0..255 mapped to about -1..1."""
    return x * np.float32(1 / 128) - np.float32(1)


def model_out(relu_out: np.ndarray) -> np.ndarray:
    return np.tanh(relu_out * np.float32(2) - np.float32(0.5))


def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    return node


def image_net() -> ov.Model:
    """x -> Relu 'relu' of x/128 - 1 -> Tanh 'tanh' of 2 relu - 0.5 -> Result (tensor name 'scores')."""
    x = ops.parameter(SHAPE, np.float32, name="x")
    relu = _named(ops.relu(ops.subtract(ops.multiply(x, np.float32(1 / 128)), np.float32(1))), "relu")
    tanh = _named(ops.tanh(ops.subtract(ops.multiply(relu, np.float32(2)), np.float32(0.5))), "tanh")
    tanh.output(0).set_names({"scores"})
    return ov.Model([ops.result(tanh)], [x], "image_net")


def _loader(count: int = 6) -> SyntheticImageLoader:
    return SyntheticImageLoader(SHAPE, "NCHW", count)


def _clamps(model: ov.Model):
    return {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_type_name() == "Clamp"}


@pytest.fixture()
def items() -> np.ndarray:
    loader = _loader()
    return np.stack([loader[index][0] for index in range(len(loader))])


def test_clamps_hold_the_calibration_range_of_each_activation(items):
    engine = IEEngine({"device": "CPU"}, _loader())
    model = RangeSupervision({}, engine).run(CompressedModel(image_net()))
    clamps = _clamps(model.get_model())
    assert sorted(clamps) == ["relu/min_max_Clamp", "tanh/min_max_Clamp"]
    relu_out = np.maximum(scaled(items), 0)
    tanh_out = model_out(relu_out)
    relu_attrs = clamps["relu/min_max_Clamp"].get_attributes()
    tanh_attrs = clamps["tanh/min_max_Clamp"].get_attributes()
    assert relu_attrs["min"] == 0.0 and relu_attrs["max"] == pytest.approx(relu_out.max(), rel=1e-6)
    assert 0 < relu_out.max() < 0.99  # the images do not reach 255 everywhere: the range is the data's
    assert tanh_attrs["min"] == pytest.approx(tanh_out.min(), rel=1e-5)
    assert tanh_attrs["max"] == pytest.approx(tanh_out.max(), rel=1e-5)
    # the Clamp after relu feeds the Multiply, the one after tanh the model output, which keeps its name
    tanh_input = next(op for op in model.get_model().get_ordered_ops() if op.get_friendly_name() == "tanh")
    multiply = tanh_input.input_value(0).get_node().input_value(0).get_node()
    assert multiply.input_value(0).get_node().get_friendly_name() == "relu/min_max_Clamp"
    assert model.get_model().outputs[0].get_names() == {"scores"}


def test_calibration_outputs_unchanged_and_outliers_clamped(items):
    engine = IEEngine({"device": "CPU"}, _loader())
    supervised = RangeSupervision({}, engine).run(CompressedModel(image_net())).get_model()
    for item in items:
        np.testing.assert_allclose(reference_infer(supervised, [item[None]])[0],
                                   reference_infer(image_net(), [item[None]])[0], rtol=1e-6, atol=1e-7)
    relu_out = np.maximum(scaled(items), 0)
    outlier = np.full([1] + SHAPE[1:], 1000.0, np.float32)  # relu input 6.8, far above anything seen
    expected = np.clip(model_out(np.minimum(np.maximum(scaled(outlier), 0), relu_out.max())),
                       model_out(relu_out).min(), model_out(relu_out).max())
    np.testing.assert_allclose(reference_infer(supervised, [outlier])[0], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(reference_infer(image_net(), [outlier])[0], expected, atol=1e-3)


def test_subset_and_ignored_scope_through_the_pipeline(items):
    engine = IEEngine({"device": "CPU"}, _loader())
    pipeline = create_pipeline([{"name": "RangeSupervision",
                                 "params": {"stat_subset_size": 2, "ignored": {"scope": ["tanh"]}}}], engine)
    model = CompressedModel(image_net())
    result = pipeline.run(model)
    clamps = _clamps(result.get_model())
    assert list(clamps) == ["relu/min_max_Clamp"]
    expected = np.maximum(scaled(items[:2]), 0).max()
    assert clamps["relu/min_max_Clamp"].get_attributes()["max"] == pytest.approx(expected, rel=1e-6)
    assert not _clamps(model.get_model())  # the pipeline's input model is left as it was


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ValueError, match="stat_subset_size"):
        RangeSupervision({"stat_subset": 3}, IEEngine({"device": "CPU"}, _loader()))
