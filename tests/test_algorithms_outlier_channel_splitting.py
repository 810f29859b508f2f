"""OutlierChannelSplitting: split weight channels, duplicate input channels; the FP32 output stays the same."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer, se_residual_model
from pot_torch.algorithms.quantization.outlier_channel_splitting import OutlierChannelSplitting, split_weights
from pot_torch.algorithms.quantization.synthetic_images import SyntheticImageLoader
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.pipeline import create_pipeline


def _consts(model: ov.Model):
    return {op.get_friendly_name(): op.get_data() for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}


def _inputs(count: int = 3, shape=(1, 3, 16, 16)):
    return np.random.default_rng(1).standard_normal((count,) + tuple(shape)).astype(np.float32)


def test_split_weights_by_hand():
    weights = np.array([[[[1.0]], [[-8.0]], [[2.0]]],
                        [[[3.0]], [[2.0]], [[-1.0]]]], np.float32)  # [out 2, in 3, 1, 1]
    split, origins = split_weights(weights, 0.5)  # ceil(1.5) = 2 splits
    # 1st: input channel 1 (max |w| 8): |w| > 4 only at -8 -> halves there, the new channel 3 gets -4 and 0
    # 2nd: max |w| per channel is now [3, 4, 2, 4]: channel 1 again -> -4 split into -2/-2 (> 2), 2 stays (= 2)
    expected = np.array([[1.0, -2.0, 2.0, -4.0, -2.0],
                         [3.0, 2.0, -1.0, 0.0, 0.0]], np.float32)[:, :, None, None]
    np.testing.assert_array_equal(split, expected)
    assert origins == [1, 1]
    np.testing.assert_array_equal(split[:, [0, 2]].sum(axis=1), weights[:, [0, 2]].sum(axis=1))
    np.testing.assert_array_equal(split[:, [1, 3, 4]].sum(axis=1), weights[:, 1])


def test_ratio_zero_splits_nothing():
    weights = np.ones((2, 3, 1, 1), np.float32)
    split, origins = split_weights(weights, 0.0)
    assert origins == [] and split.shape == weights.shape


def test_conv_model_output_is_unchanged_and_the_conv_weight_range_shrinks():
    original = conv_model(channels=8)
    before = _consts(original)
    model = OutlierChannelSplitting({}, None).run(CompressedModel(conv_model(channels=8)))
    after = _consts(model.get_model())
    # conv2 (8 input channels, ratio 0.01 -> one split); conv1 reads the Parameter, so it is left as it was
    w2 = before["conv2_weights"]
    index = int(np.argmax(np.abs(w2).max(axis=(0, 2, 3))))
    assert after["conv2_weights"].shape == (8, 9, 3, 3)
    np.testing.assert_array_equal(after["conv2_weights"], split_weights(w2, 0.01)[0])
    assert np.abs(after["conv2_weights"]).max() < np.abs(w2).max()
    # conv1 computes channel `index` twice, with its bias
    assert after["conv1_weights"].shape == (9, 3, 3, 3)
    np.testing.assert_array_equal(after["conv1_weights"][8], before["conv1_weights"][index])
    np.testing.assert_array_equal(after["conv1_bias_const"][0, 8], before["conv1_bias_const"][0, index])
    np.testing.assert_array_equal(after["fc_weights"], before["fc_weights"])
    for item in _inputs():
        np.testing.assert_allclose(reference_infer(model.get_model(), [item])[0],
                                   reference_infer(original, [item])[0], rtol=1e-5, atol=1e-6)


def test_depthwise_producer_and_several_splits_through_the_pipeline():
    rng = np.random.default_rng(3)
    x = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    conv1 = ops.convolution(x, ops.constant(rng.standard_normal((6, 3, 3, 3)).astype(np.float32)), [1, 1], [1, 1],
                            [1, 1], [1, 1])
    conv1.set_friendly_name("conv1")
    depthwise = ops.group_convolution(ops.relu(conv1), ops.constant(
        rng.standard_normal((6, 1, 1, 3, 3)).astype(np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
    depthwise.set_friendly_name("depthwise")
    pooled = ops.max_pool(ops.multiply(depthwise, ops.constant(rng.uniform(0.5, 2, (1, 6, 1, 1)).astype(np.float32))),
                          [1, 1], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)
    w = rng.standard_normal((4, 6, 1, 1)).astype(np.float32)
    w[:, 2] *= 10.0
    conv2 = ops.convolution(pooled, ops.constant(w), [1, 1], [0, 0], [0, 0], [1, 1])
    conv2.set_friendly_name("conv2")

    def build():
        return ov.Model([ops.result(conv2)], [x], "dw")

    original = build()
    expected = [reference_infer(original, [item])[0] for item in _inputs(shape=(1, 3, 8, 8))]
    pipeline = create_pipeline([{"name": "OutlierChannelSplitting", "params": {"weights_expansion_ratio": 0.5}}],
                               None)
    result = pipeline.run(CompressedModel(original))
    consts = {tuple(c.shape) for c in _consts(result.get_model()).values()}
    assert {(4, 9, 1, 1), (9, 1, 1, 3, 3), (1, 9, 1, 1), (9, 3, 3, 3)} <= consts  # 3 splits, 6 -> 9 channels
    for item, want in zip(_inputs(shape=(1, 3, 8, 8)), expected):
        np.testing.assert_allclose(reference_infer(result.get_model(), [item])[0], want, rtol=1e-5, atol=1e-5)


def test_before_default_quantization_in_one_pipeline():
    engine = IEEngine({"device": "CPU"}, SyntheticImageLoader([1, 3, 16, 16], "NCHW", count=4))
    pipeline = create_pipeline([{"name": "OutlierChannelSplitting", "params": {}},
                                {"name": "DefaultQuantization", "params": {}}], engine)
    result = pipeline.run(CompressedModel(conv_model(channels=8)))
    conv2 = next(op for op in result.get_model().get_ordered_ops() if op.get_friendly_name() == "conv2")
    assert list(conv2.get_input_shape(1)) == [8, 9, 3, 3]
    assert conv2.input_value(1).get_node().get_type_name() == "FakeQuantize"


def test_conv_whose_input_is_shared_is_left_alone():
    model = se_residual_model()  # conv2's input relu1 also feeds the residual Add; conv3's input is an Add of two
    before = _consts(model)
    OutlierChannelSplitting({"weights_expansion_ratio": 0.5}, None).run(CompressedModel(model))
    after = _consts(model)
    for name in ("conv2_weights", "conv3_weights"):
        np.testing.assert_array_equal(after[name], before[name])


def test_ignored_convolution_keeps_its_channels():
    model = conv_model(channels=8)
    OutlierChannelSplitting({"ignored": {"scope": ["conv2"]}}, None).run(CompressedModel(model))
    assert _consts(model)["conv2_weights"].shape == (8, 8, 3, 3)


@pytest.mark.parametrize("value", [-0.1, 1.5, "all", True])
def test_ratio_is_checked(value):
    with pytest.raises(ValueError, match="weights_expansion_ratio"):
        OutlierChannelSplitting({"weights_expansion_ratio": value}, None)
