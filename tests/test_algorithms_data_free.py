"""DataFreeQuantization: DefaultQuantization on synthetic images made from the model's input (real OpenVINO)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer
from pot_torch.algorithms.quantization.data_free import (DataFreeQuantization, image_input_layout,
                                                         image_input_shape)
from pot_torch.algorithms.quantization.synthetic_images import SyntheticImageLoader, synthetic_image
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.pipeline import create_pipeline

PARAMS = {"subset_size": 6, "preset": "performance"}


def _fq(model: ov.Model, name: str) -> ov.Node:
    return next(op for op in fake_quantize_ops(model) if op.get_friendly_name() == name)


def test_synthetic_images_are_reproducible_images():
    first = synthetic_image(0, 3, 20, 24)
    assert first.shape == (20, 24, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, synthetic_image(0, 3, 20, 24))  # the same, whatever was made before
    assert not np.array_equal(first, synthetic_image(1, 3, 20, 24))
    assert not np.array_equal(first, synthetic_image(0, 4, 20, 24))
    assert first.std() > 5  # a picture, not a flat colour
    loader = SyntheticImageLoader([1, 3, 20, 24], "NCHW", count=2)
    assert len(loader) == 2 and loader[1][0].shape == (3, 20, 24) and loader[1][1] is None
    np.testing.assert_array_equal(loader[1][0], synthetic_image(0, 1, 20, 24).transpose(2, 0, 1))
    grey = SyntheticImageLoader([20, 24, 1], "HWC", count=1)[0][0]
    assert grey.shape == (20, 24, 1)
    with pytest.raises(IndexError):
        loader[2]


def test_quantizes_on_the_synthetic_images_without_a_data_set():
    model = CompressedModel(conv_model())
    result = DataFreeQuantization(PARAMS, None).run(model)
    assert len(fake_quantize_ops(result.get_model())) >= 4
    # the input FakeQuantize (unsigned: the images are 0..255) ends at the mean of the images' maxima
    images = [SyntheticImageLoader([1, 3, 16, 16], "NCHW", 6)[i][0] for i in range(6)]
    low, high, _, _ = fake_quantize_ranges(_fq(result.get_model(), "input/fq_output_0"))
    assert float(low) == 0.0
    assert float(high) == pytest.approx(np.mean([image.max() for image in images]), rel=1e-6)
    item = images[0][None]
    fp = reference_infer(conv_model(), [item])[0]
    assert np.max(np.abs(reference_infer(result.get_model(), [item])[0] - fp)) < 0.1 * np.abs(fp).max()


def test_an_engine_data_loader_is_not_used_and_that_is_said(caplog):
    engine = IEEngine({"device": "CPU"}, SyntheticImageLoader([1, 3, 16, 16], "NCHW", 2, seed=5))
    DataFreeQuantization(PARAMS, engine).run(CompressedModel(conv_model()))
    assert "not on the engine's data loader" in caplog.text


def test_same_seed_same_model_through_the_pipeline():
    runs = []
    for _ in range(2):
        pipeline = create_pipeline([{"name": "DataFreeQuantization", "params": dict(PARAMS)}],
                                   IEEngine({"device": "CPU"}))
        quantized = pipeline.run(CompressedModel(conv_model()))
        runs.append([np.concatenate([r.ravel() for r in fake_quantize_ranges(fq)])
                     for fq in fake_quantize_ops(quantized.get_model())])
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_dynamic_input_needs_the_shape_parameter():
    model = conv_model()
    model.reshape({"input": ov.PartialShape([-1, 3, -1, -1])})
    with pytest.raises(ValueError, match=r"model input 'input' has the dynamic shape .*'shape': \[1, 3, 224, 224\]"):
        image_input_shape(model, None)
    assert image_input_shape(model, [1, 3, 16, 16]) == [1, 3, 16, 16]
    with pytest.raises(ValueError, match="does not fit model input 'input'"):
        image_input_shape(model, [1, 4, 16, 16])
    static = conv_model()
    static.reshape({"input": ov.PartialShape([-1, 3, 16, 16])})
    assert image_input_shape(static, None) == [1, 3, 16, 16]  # a dynamic batch alone is fine: batch 1


def test_layout_from_the_channel_axis_or_the_parameter():
    x = ops.parameter([1, 16, 16, 3], np.float32, name="image")
    model = ov.Model([ops.result(ops.relu(x))], [x], "nhwc")
    assert image_input_layout(model, [1, 16, 16, 3], None) == "NHWC"
    assert image_input_layout(conv_model(), [1, 3, 16, 16], None) == "NCHW"
    with pytest.raises(ValueError, match="has 16 channels"):
        image_input_layout(model, [1, 16, 16, 3], "NCHW")
    y = ops.parameter([1, 4, 16, 16], np.float32, name="four")
    with pytest.raises(ValueError, match=r"model input 'four' .* the 'layout' parameter"):
        image_input_layout(ov.Model([ops.result(ops.relu(y))], [y], "four"), [1, 4, 16, 16], None)


def test_refuses_what_it_cannot_generate():
    with pytest.raises(ValueError, match="in memory"):
        DataFreeQuantization({"generate_data": True}, None)
    with pytest.raises(ValueError, match="data_type"):
        DataFreeQuantization({"data_type": "text"}, None)
    a = ops.parameter([1, 3, 8, 8], np.float32, name="a")
    b = ops.parameter([1, 3, 8, 8], np.float32, name="b")
    two_inputs = CompressedModel(ov.Model([ops.result(ops.add(a, b))], [a, b], "two"))
    with pytest.raises(ValueError, match=r"2 inputs \['a', 'b'\]"):
        DataFreeQuantization(PARAMS, None).run(two_inputs)
