"""FakeQuantize placement from the hardware description, checked on small graphs."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.algorithms.quantization.placement import ignored_op_names, place_quantizers
from pot_torch.graph.hardware.config import HardwareConfig, load_hardware_config
from tests.model_builders import conv_model, se_residual_model

CPU = load_hardware_config("CPU")
GPU = load_hardware_config("GPU")  # keeps POT's per-channel depthwise activations


def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    return node


def _w(rng, shape, name=None):
    node = ops.constant(rng.standard_normal(shape).astype(np.float32) * 0.2)
    return _named(node, name) if name else node


def _conv(x, rng, cin, cout, name, k=3):
    return _named(ops.convolution(x, _w(rng, [cout, cin, k, k]), [1, 1], [k // 2] * 2, [k // 2] * 2, [1, 1]), name)


def residual_model() -> ov.Model:
    """input -> conv1 -> relu1 -> conv2 (+bias) -> add(relu1, conv2_bias) -> maxpool -> conv3 -> output."""
    rng = np.random.default_rng(1)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    relu1 = _named(ops.relu(_conv(x, rng, 4, 4, "conv1")), "relu1")
    bias = _named(ops.add(_conv(relu1, rng, 4, 4, "conv2"), _w(rng, [1, 4, 1, 1])), "conv2_bias")
    add = _named(ops.add(relu1, bias), "residual")
    pool = _named(ops.max_pool(add, [1, 1], [1, 1], [0, 0], [0, 0], [2, 2]), "maxpool")  # 2 outputs, 1 used
    conv3 = _conv(pool.output(0), rng, 4, 4, "conv3")
    return ov.Model([_named(ops.result(conv3), "output")], [x], "residual_model")


def concat_model() -> ov.Model:
    """input -> conv_a, conv_b -> relu_a, relu_b -> concat -> conv_c; depthwise conv on relu_a -> output2."""
    rng = np.random.default_rng(2)
    x = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    relu_a = _named(ops.relu(_conv(x, rng, 3, 4, "conv_a")), "relu_a")
    relu_b = _named(ops.relu(_conv(x, rng, 3, 4, "conv_b")), "relu_b")
    concat = _named(ops.concat([relu_a, relu_b], 1), "concat")
    conv_c = _conv(concat, rng, 8, 2, "conv_c")
    dw = _named(ops.group_convolution(relu_a, _w(rng, [4, 1, 1, 3, 3]), [1, 1], [1, 1], [1, 1], [1, 1]), "dw")
    return ov.Model([ops.result(conv_c), ops.result(dw)], [x], "concat_model")


def attention_model() -> ov.Model:
    """x[1,6,8] -> q,k,v MatMuls -> softmax(q @ k^T) @ v -> add(x) -> mvn -> proj MatMul."""
    rng = np.random.default_rng(3)
    x = ops.parameter([1, 6, 8], np.float32, name="x")
    q = _named(ops.matmul(x, _w(rng, [8, 8]), False, False), "q")
    k = _named(ops.matmul(x, _w(rng, [8, 8]), False, False), "k")
    v = _named(ops.matmul(x, _w(rng, [8, 8]), False, False), "v")
    scores = _named(ops.matmul(q, k, False, True), "scores")
    probs = _named(ops.softmax(scores, -1), "softmax")
    context = _named(ops.matmul(probs, v, False, False), "context")
    residual = _named(ops.add(context, x), "residual")
    norm = _named(ops.mvn(residual, ops.constant(np.array([-1], np.int64)), True, 1e-5, "inside_sqrt"), "norm")
    proj = _named(ops.matmul(norm, _w(rng, [8, 8]), False, True), "proj")
    return ov.Model([ops.result(proj)], [x], "attention_model")


def _sites(placement):
    return ({s.name: s.consumers for s in placement.activations}, {s.name for s in placement.weights})


def test_conv_model_sites():
    activations, weights = _sites(place_quantizers(conv_model(), CPU))
    # the FC input quantizer moves up across the flatten Reshape to the pool output; bias Adds get none
    assert activations == {"input/fq_output_0": [("conv1", 0)], "relu1/fq_output_0": [("conv2", 0)],
                           "relu2/fq_output_0": [("pool", 0)], "pool/fq_output_0": [("flatten", 0)]}
    assert weights == {"conv1/fq_weights_1", "conv2/fq_weights_1", "fc/fq_weights_1"}


def test_weight_channel_axes():
    placement = place_quantizers(conv_model(), CPU)
    axes = {s.consumer: s.channel_axes for s in placement.weights}
    assert axes == {"conv1": (0,), "conv2": (0,), "fc": (1,)}  # fc weights [K, N], transpose_b False


def test_residual_add_shares_producer_quantizer_and_maxpool_is_crossed():
    activations, _ = _sites(place_quantizers(residual_model(), CPU))
    # relu1 feeds conv2 and the residual Add: ONE FakeQuantize for both; the bias Add is not quantized;
    # conv3's quantizer moves up across the single-consumer MaxPool to the residual Add's output
    assert activations == {"input/fq_output_0": [("conv1", 0)],
                           "relu1/fq_output_0": [("conv2", 0), ("residual", 0)],
                           "conv2_bias/fq_output_0": [("residual", 1)],
                           "residual/fq_output_0": [("maxpool", 0)]}


def test_concat_inputs_unified_and_depthwise_per_channel():
    placement = place_quantizers(concat_model(), GPU)
    activations, weights = _sites(placement)
    assert activations["relu_b/fq_output_0"] == [("concat", 1)]
    assert placement.unified == (("relu_a/fq_output_0", "relu_b/fq_output_0"),)
    by_name = {s.name: s for s in placement.activations}
    # relu_a feeds the depthwise conv (per channel) and the concat (unified, per tensor): per tensor wins
    assert activations["relu_a/fq_output_0"] == [("dw", 0), ("concat", 0)]
    assert {o["granularity"] for o in by_name["relu_a/fq_output_0"].options} == {"pertensor"}
    assert "dw/fq_weights_1" in weights
    assert [s.channel_axes for s in placement.weights if s.consumer == "dw"] == [(0, 1)]


def _depthwise_model() -> ov.Model:
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    dw = _named(ops.group_convolution(x, _w(rng, [4, 1, 1, 3, 3]), [1, 1], [1, 1], [1, 1], [1, 1]), "dw")
    return ov.Model([ops.result(dw)], [x], "dw")


def test_depthwise_alone_is_per_channel_on_gpu():
    placement = place_quantizers(_depthwise_model(), GPU)
    assert {o["granularity"] for o in placement.activations[0].options} == {"perchannel"}


def test_depthwise_input_is_quantized_per_channel_on_cpu():
    """Finding 8.10 (EfficientNet-Lite0, ImageNet weights): weights-only depthwise convolutions cost
    bf16<->INT8 reorders (1.08-1.38x NNCF's latency at bf16, 1.29-1.94x at f32); their inputs are quantized.
    Finding 8.15 (PP-OCRv4 text recognizer, real weights): per channel, as NNCF's CPU setup (the same INT8
    depthwise kernel runs); per-tensor ranges lost 0.021 of output cosine to NNCF's per-channel ones."""
    placement = place_quantizers(_depthwise_model(), CPU)
    activations, weights = _sites(placement)
    assert list(activations) == ["input/fq_output_0"] and weights == {"dw/fq_weights_1"}
    assert {o["granularity"] for o in placement.activations[0].options} == {"perchannel"}


def test_depthwise_input_on_a_matmul_output_is_per_tensor_on_cpu(caplog):
    """The CPU plugin fuses a depthwise convolution's per-channel input FakeQuantize into the MatMul producing it
    (channels on its last axis) and cannot compile it: that site is per tensor, and a warning names it."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    scores = _named(ops.matmul(x, x, False, True), "scores")
    dw = _named(ops.group_convolution(scores, _w(rng, [4, 1, 1, 3, 3]), [1, 1], [1, 1], [1, 1], [1, 1]), "dw")
    model = ov.Model([ops.result(dw)], [x], "scores_dw")
    with caplog.at_level("WARNING", logger="pot_torch"):
        placement = place_quantizers(model, CPU)
    by_name = {site.name: site for site in placement.activations}
    assert {o["granularity"] for o in by_name["scores/fq_output_0"].options} == {"pertensor"}
    assert "quantized per tensor instead: scores/fq_output_0" in caplog.text
    assert {o["granularity"] for o in place_quantizers(model, GPU).activations[-1].options} == {"perchannel"}


def _se_model() -> ov.Model:
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    pooled = _named(ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), True), "squeeze")
    se = _conv(pooled, rng, 4, 4, "se_conv", k=1)
    return ov.Model([ops.result(se)], [x], "se")


def test_small_spatial_convolution_computes_in_float_from_quantized_weights():
    activations, weights = _sites(place_quantizers(_se_model(), CPU))
    # the pooled (1x1) input of se_conv gets no FakeQuantize; the global pool's own input does (8.12)
    assert activations == {"input/fq_output_0": [("squeeze", 0)]} and weights == {"se_conv/fq_weights_1"}


def test_global_average_pool_input_is_quantized_on_cpu():
    """Finding 8.12: as POT and NNCF, the input of a global average pool (ReduceMean over the spatial axes) gets a
    FakeQuantize (latency-neutral; the outlier CNN's accuracy-aware result keeps NNCF's FakeQuantize count)."""
    placement = place_quantizers(_se_model(), CPU)
    assert [(site.name, site.consumers) for site in placement.activations] == [("input/fq_output_0",
                                                                                 [("squeeze", 0)])]
    assert {o["granularity"] for o in placement.activations[0].options} == {"pertensor"}


def test_small_spatial_convolution_skipped_entirely_by_default():
    description = {"quantizers": {"q8": {"bits": 8, "mode": "symmetric", "granularity": "pertensor"}},
                   "operations": {"Convolution": {"activations": "q8", "weights": "q8", "min_input_spatial": 2,
                                                  "weight_channel_axes": [0]}}}
    activations, weights = _sites(place_quantizers(_se_model(), HardwareConfig(description, "CPU")))
    assert activations == {} and weights == set()


def _embedding_model(axis: int) -> ov.Model:
    """ids [1,5] -> Gather(table [8,8], axis) -> MatMul ``proj`` (rows of the table when ``axis`` is 0)."""
    rng = np.random.default_rng(0)
    ids = ops.parameter([5], np.int64, name="ids")
    table = _w(rng, [8, 8], "table")
    rows = _named(ops.gather(table, ids, ops.constant(np.array(axis, np.int64))), "embedding")
    proj = _named(ops.matmul(rows, _w(rng, [8, 8]), axis == 1, True), "proj")
    return ov.Model([ops.result(proj)], [ids], "embedding_model")


def test_embedding_table_weights_quantized_per_row():
    placement = place_quantizers(_embedding_model(0), CPU)
    activations, weights = _sites(placement)
    assert weights == {"embedding/fq_weights_0", "proj/fq_weights_1"}
    assert activations == {"embedding/fq_output_0": [("proj", 0)]}
    assert [s.channel_axes for s in placement.weights if s.consumer == "embedding"] == [(0,)]


def test_gather_of_constant_along_other_axis_is_not_an_embedding():
    _, weights = _sites(place_quantizers(_embedding_model(1), CPU))
    assert weights == {"proj/fq_weights_1"}


def _folded_model(folded: str) -> ov.Model:
    """input -> conv (+ bias) -> relu -> conv2, with the bias (``folded="bias"``) or conv2's weights
    (``folded="weights"``) computed by an Add of two Constants, as a hand-built graph may have them."""
    rng = np.random.default_rng(2)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    computed = lambda shape: ops.add(_w(rng, shape), _w(rng, shape))  # noqa: E731
    bias = _named(ops.add(_conv(x, rng, 4, 4, "conv"), computed([1, 4, 1, 1]) if folded == "bias"
                          else _w(rng, [1, 4, 1, 1])), "conv_bias")
    relu = _named(ops.relu(bias), "relu")
    weights = computed([4, 4, 3, 3]) if folded == "weights" else _w(rng, [4, 4, 3, 3])
    conv2 = _named(ops.convolution(relu, weights, [1, 1], [1, 1], [1, 1], [1, 1]), "conv2")
    return ov.Model([ops.result(conv2)], [x], "folded_constants")


def test_a_bias_computed_from_constants_is_a_bias_not_a_residual_add():
    """An Add of an activation and a value computed from Constants only (the plugin folds it) is a bias Add, as with
    a Constant: no FakeQuantize on the convolution's output or on the computed bias (before session 8 it was a
    residual Add of two activations, both inputs quantized)."""
    plain, folded = (_sites(place_quantizers(_folded_model(kind), CPU)) for kind in ("none", "bias"))
    assert folded == plain
    assert set(folded[0]) == {"input/fq_output_0", "relu/fq_output_0"}


def test_weights_computed_from_constants_are_left_in_floating_point_with_a_warning(caplog):
    """A convolution whose weights are computed in the graph (an Add of two Constants) has no Constant to quantize:
    it is left in floating point, named in a warning that says how to fold the constants."""
    with caplog.at_level("WARNING"):
        activations, weights = _sites(place_quantizers(_folded_model("weights"), CPU))
    assert weights == {"conv/fq_weights_1"} and set(activations) == {"input/fq_output_0"}
    assert "the weights of conv2 are computed in the graph from Constants" in caplog.text
    assert "ConstantFolding" in caplog.text


def test_ignored_scope_names_types_and_attributes():
    model = conv_model()
    activations, weights = _sites(place_quantizers(model, CPU, {"scope": ["conv2"]}))
    assert "relu1/fq_output_0" not in activations and "conv2/fq_weights_1" not in weights
    assert "conv1/fq_weights_1" in weights
    _, weights = _sites(place_quantizers(model, CPU, {"operations": [{"type": "MatMul"}]}))
    assert weights == {"conv1/fq_weights_1", "conv2/fq_weights_1"}
    ignored = ignored_op_names(model, {"operations": [{"type": "Convolution", "attributes": {"pads_begin": [1, 1]}}]})
    assert ignored == {"conv1", "conv2"}
    assert ignored_op_names(model, {"operations": [{"type": "Convolution", "attributes": {"strides": [2, 2]}}]}) == set()
    assert len(ignored_op_names(model, {"skip_model": True})) == len(model.get_ops())


def test_unknown_ignored_name_lists_close_names():
    with pytest.raises(ValueError, match="ignored scope names 'conv_2'.*close op names: \\['conv2', 'conv1'"):
        place_quantizers(conv_model(), CPU, {"scope": ["conv_2"]})


def test_ignored_operation_type_the_model_lacks_is_warned_about(caplog):
    """An ignored op type the model does not have selects nothing: said, not silent."""
    import logging

    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        assert ignored_op_names(conv_model(), {"operations": [{"type": "Softmax"}]}) == set()
    assert any("op type 'Softmax', which no op of model" in r.getMessage() for r in caplog.records)


def test_already_quantized_inputs_are_skipped():
    from pot_torch.algorithms.quantization.minmax import MinMaxQuantization  # noqa: F401  (registry)
    from pot_torch.graph.editor import insert_fake_quantize, weight_fq_name

    model = conv_model()
    conv1 = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == "conv1")
    insert_fake_quantize(model, conv1.input_value(0), 256)
    insert_fake_quantize(model, conv1.input_value(1), 255, consumers=[conv1.input(1)], name=weight_fq_name("conv1", 1))
    activations, weights = _sites(place_quantizers(model, CPU))
    assert "input/fq_output_0" not in activations and "conv1/fq_weights_1" not in weights
    assert "conv2/fq_weights_1" in weights


def test_transformer_rules():
    model = attention_model()
    plain = place_quantizers(model, CPU)
    activations, weights = _sites(plain)
    assert "residual/fq_output_0" in activations or ("context/fq_output_0" in activations)
    transformer = place_quantizers(model, CPU, model_type="transformer")
    activations, weights = _sites(transformer)
    # no FakeQuantize for Add/MVN; the Softmax output is not quantized, so probabilities @ v runs in floating
    # point and v gets no quantizer either; q and k inputs of attention are quantized
    assert not any(consumer == "residual" for site in activations.values() for consumer, _ in site)
    assert "softmax/fq_output_0" not in activations
    assert activations["q/fq_output_0"] == [("scores", 0)] and activations["k/fq_output_0"] == [("scores", 1)]
    assert "v/fq_output_0" not in activations
    assert activations["norm/fq_output_0"] == [("proj", 0)]
    assert weights == {"q/fq_weights_1", "k/fq_weights_1", "v/fq_weights_1", "proj/fq_weights_1"}
    by_name = {s.name: s for s in transformer.activations}
    assert {o["mode"] for o in by_name["q/fq_output_0"].options} == {"symmetric"}  # MatMul without weights
    assert {o["mode"] for o in by_name["x/fq_output_0"].options} == {"symmetric", "asymmetric"}
    proj_axes = [s.channel_axes for s in transformer.weights if s.consumer == "proj"]
    assert proj_axes == [(0,)]  # transpose_b: weights [N, K]


def test_f16_weights_quantized_after_convert(tmp_path):
    ov.save_model(conv_model(), tmp_path / "m.xml", compress_to_fp16=True)
    model = ov.Core().read_model(tmp_path / "m.xml")
    conv1 = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == "conv1")
    assert conv1.input_value(1).get_node().get_type_name() == "Convert"
    _, weights = _sites(place_quantizers(model, CPU))
    assert "conv1/fq_weights_1" in weights


def test_quantizer_serving_every_consumer_of_a_maxpool_moves_above_it():
    """relu -> maxpool -> (conv2, residual Add): one FakeQuantize on the relu output, none after the MaxPool."""
    rng = np.random.default_rng(5)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    relu = _named(ops.relu(_conv(x, rng, 4, 4, "conv1")), "relu")
    pool = _named(ops.max_pool(relu, [1, 1], [1, 1], [0, 0], [0, 0], [2, 2]), "maxpool")
    conv2 = _conv(pool.output(0), rng, 4, 4, "conv2")
    add = _named(ops.add(pool.output(0), conv2), "residual")
    activations, _ = _sites(place_quantizers(ov.Model([ops.result(add)], [x], "pool_fanout"), CPU))
    assert activations == {"input/fq_output_0": [("conv1", 0)], "relu/fq_output_0": [("maxpool", 0)],
                           "conv2/fq_output_0": [("residual", 1)]}


def test_activation_quantizer_is_shared_by_every_consumer_of_its_output():
    """conv2 feeds the residual Add (quantized) and a squeeze-excitation gate (ReduceMean, Multiply: not
    quantized on the CPU): one FakeQuantize on conv2 serves all three, as POT and NNCF place it (with
    one edge quantized and the others raw, the CPU plugin computes the block wrongly under dynamic shapes;
    docs/int8-placement-findings.md, "Dynamic shapes")."""
    activations, _ = _sites(place_quantizers(se_residual_model(shape=(-1, 3, -1, -1)), CPU))
    assert activations["conv2/fq_output_0"] == [("residual", 1), ("se_mean", 0), ("se_scale", 0)]


def test_ignored_consumer_keeps_reading_the_float_output():
    activations, _ = _sites(place_quantizers(se_residual_model(), CPU, {"scope": ["se_scale"]}))
    assert activations["conv2/fq_output_0"] == [("residual", 1), ("se_mean", 0)]


def _branching_conv_model(shape) -> ov.Model:
    """input -> conv (no bias) -> relu and sigmoid, both model outputs (neither is quantized on the CPU)."""
    rng = np.random.default_rng(6)
    x = ops.parameter(shape, np.float32, name="input")
    conv = _conv(x, rng, 4, 4, "conv")
    return ov.Model([ops.result(_named(ops.relu(conv), "relu")), ops.result(_named(ops.sigmoid(conv), "sigmoid"))],
                    [x], "branching_conv")


def test_branching_int8_convolution_output_is_quantized_only_under_dynamic_shapes():
    """The CPU plugin miscomputes an INT8 convolution (no bias) read by several ops under dynamic shapes
    (tests/test_regressions.py); one FakeQuantize reading it avoids that, so it gets one there, and only there."""
    static, _ = _sites(place_quantizers(_branching_conv_model([1, 4, 8, 8]), CPU))
    dynamic, _ = _sites(place_quantizers(_branching_conv_model([-1, 4, -1, -1]), CPU))
    assert static == {"input/fq_output_0": [("conv", 0)]}
    assert dynamic.keys() == {"input/fq_output_0", "conv/fq_output_0"}
    assert sorted(dynamic["conv/fq_output_0"]) == [("relu", 0), ("sigmoid", 0)]


def test_branching_int8_output_workaround_is_cpu_only():
    """The extra output FakeQuantize works around a CPU plugin bug: another device's placement (and a CPU
    placement asked to skip the plugin's workarounds) stays POT's and NNCF's."""
    for hw, cpu_plugin in ((GPU, None), (CPU, False)):
        dynamic, _ = _sites(place_quantizers(_branching_conv_model([-1, 4, -1, -1]), hw, cpu_plugin=cpu_plugin))
        assert dynamic == {"input/fq_output_0": [("conv", 0)]}, hw
