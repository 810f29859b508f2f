"""Small real OpenVINO models built in code for the tests (no downloads)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def _const(rng: np.random.Generator, shape: Sequence[int], scale: float = 0.1, name: str = "") -> ov.Node:
    node = ops.constant(rng.standard_normal(shape).astype(np.float32) * scale)
    if name:
        node.set_friendly_name(name)
    return node


def conv_model(seed: int = 0, channels: int = 8, size: int = 16, batch: int = 1) -> ov.Model:
    """input[batch,3,size,size] -> conv1 + bias -> relu -> conv2 + bias -> relu -> avgpool -> matmul(fc) + bias.

    Op names: input, conv1, conv1_bias, relu1, conv2, conv2_bias, relu2, pool, flatten, fc, fc_bias, output.
    """
    rng = np.random.default_rng(seed)
    x = ops.parameter([batch, 3, size, size], np.float32, name="input")
    conv1 = ops.convolution(x, _const(rng, [channels, 3, 3, 3], 0.3, "conv1_weights"), [1, 1], [1, 1], [1, 1], [1, 1])
    conv1.set_friendly_name("conv1")
    add1 = ops.add(conv1, _const(rng, [1, channels, 1, 1], 0.1, "conv1_bias_const"))
    add1.set_friendly_name("conv1_bias")
    relu1 = ops.relu(add1)
    relu1.set_friendly_name("relu1")
    conv2 = ops.convolution(relu1, _const(rng, [channels, channels, 3, 3], 0.2, "conv2_weights"), [1, 1], [1, 1],
                            [1, 1], [1, 1])
    conv2.set_friendly_name("conv2")
    add2 = ops.add(conv2, _const(rng, [1, channels, 1, 1], 0.1, "conv2_bias_const"))
    add2.set_friendly_name("conv2_bias")
    relu2 = ops.relu(add2)
    relu2.set_friendly_name("relu2")
    pool = ops.avg_pool(relu2, [1, 1], [0, 0], [0, 0], [size, size], exclude_pad=True)
    pool.set_friendly_name("pool")
    shape = ops.constant(np.array([batch, channels], dtype=np.int64))
    shape.set_friendly_name("flatten_shape")
    flat = ops.reshape(pool, shape, special_zero=False)
    flat.set_friendly_name("flatten")
    fc = ops.matmul(flat, _const(rng, [channels, 10], 0.3, "fc_weights"), False, False)
    fc.set_friendly_name("fc")
    fc_bias = ops.add(fc, _const(rng, [1, 10], 0.1, "fc_bias_const"))
    fc_bias.set_friendly_name("fc_bias")
    result = ops.result(fc_bias)
    result.set_friendly_name("output")
    model = ov.Model([result], [x], "conv_model")
    return model


def two_input_model(seed: int = 0) -> ov.Model:
    """inputs ``a`` [1,4] and ``b`` [1,4] -> outputs ``sum`` = a@W + b and ``prod`` = a * b."""
    rng = np.random.default_rng(seed)
    a = ops.parameter([1, 4], np.float32, name="a")
    b = ops.parameter([1, 4], np.float32, name="b")
    mm = ops.matmul(a, _const(rng, [4, 4], 0.5, "w"), False, False)
    mm.set_friendly_name("mm")
    total = ops.add(mm, b)
    total.set_friendly_name("sum")
    prod = ops.multiply(a, b)
    prod.set_friendly_name("prod")
    return ov.Model([ops.result(total), ops.result(prod)], [a, b], "two_input_model")


def reference_infer(model: ov.Model, inputs: Sequence[np.ndarray] | dict, precision: str = "f32") -> list:
    """Plain OpenVINO inference of ``model`` on one input set (the numbers the tests compare against)."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    result = compiled(inputs)
    return [result[output] for output in compiled.outputs]


def _dense(x: ov.Node, weights: np.ndarray, name: str) -> ov.Node:
    """MatMul ``name`` with ``weights`` followed by a zero bias Add ``{name}_bias``."""
    matmul = ops.matmul(x, ops.constant(weights), False, False)
    matmul.set_friendly_name(name)
    bias = ops.add(matmul, ops.constant(np.zeros((1, weights.shape[1]), np.float32)))
    bias.set_friendly_name(f"{name}_bias")
    return bias


def outlier_classifier(seed: int = 0, features: int = 16, hidden: int = 32, classes: int = 4):
    """A 2-layer MLP whose last input feature is a huge, irrelevant outlier (scale 1000).

    8-bit per-tensor quantization of its input wipes out the small informative features, so default INT8
    loses most of its accuracy; leaving the first MatMul in floating point restores it. Returns
    ``(model, inputs [n, 1, features], labels)`` with labels = the FP model's own predictions (FP accuracy 1.0).
    Ops: input, fc1, fc1_bias, relu, fc2, fc2_bias, logits.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((features, hidden)).astype(np.float32) * 0.5
    w1[-1, :] = 1e-5
    w2 = rng.standard_normal((hidden, classes)).astype(np.float32) * 0.5
    x = ops.parameter([1, features], np.float32, name="input")
    relu = ops.relu(_dense(x, w1, "fc1"))
    relu.set_friendly_name("relu")
    result = ops.result(_dense(relu, w2, "fc2"))
    result.set_friendly_name("logits")
    model = ov.Model([result], [x], "outlier_classifier")
    inputs = rng.standard_normal((240, 1, features)).astype(np.float32)
    inputs[:, :, -1] = rng.standard_normal((240, 1)).astype(np.float32) * 1000.0
    hidden_values = np.maximum(inputs[:, 0] @ w1, 0)
    labels = np.argmax(hidden_values @ w2, axis=1)
    return model, inputs, labels


def se_residual_model(seed: int = 0, channels: int = 8, shape: Sequence[int] = (1, 3, 16, 16)) -> ov.Model:
    """A DBNet-neck-like block: a convolution output read by a residual Add and by a squeeze-excitation gate.

    input[shape] -> conv1 + bias -> relu1 -> conv2 (no bias, as DBNet's neck) -> residual Add(relu1, conv2);
    ``conv2`` also feeds the SE gate ``conv2 * sigmoid(se_up(relu(se_down(mean(conv2)))))``;
    ``merge`` = residual + gate -> conv3 + bias -> output. ``shape`` may hold -1 (dynamic) dimensions.
    """
    rng = np.random.default_rng(seed)
    x = ops.parameter(list(shape), np.float32, name="input")

    def conv(data: ov.Node, cin: int, cout: int, name: str, kernel: int = 3, bias: bool = True) -> ov.Node:
        pad = [kernel // 2] * 2
        node = ops.convolution(data, _const(rng, [cout, cin, kernel, kernel], 0.3, f"{name}_weights"), [1, 1], pad,
                               pad, [1, 1])
        node.set_friendly_name(name)
        if not bias:
            return node
        bias = ops.add(node, _const(rng, [1, cout, 1, 1], 0.1, f"{name}_bias_const"))
        bias.set_friendly_name(f"{name}_bias")
        return bias

    def named(node: ov.Node, name: str) -> ov.Node:
        node.set_friendly_name(name)
        return node

    relu1 = named(ops.relu(conv(x, int(shape[1]), channels, "conv1")), "relu1")
    y = conv(relu1, channels, channels, "conv2", bias=False)
    residual = named(ops.add(relu1, y), "residual")
    pooled = named(ops.reduce_mean(y, ops.constant(np.array([2, 3], np.int64)), True), "se_mean")
    squeezed = named(ops.relu(conv(pooled, channels, channels // 2, "se_down", kernel=1)), "se_relu")
    gate = named(ops.sigmoid(conv(squeezed, channels // 2, channels, "se_up", kernel=1)), "se_gate")
    scaled = named(ops.multiply(y, gate), "se_scale")
    merge = named(ops.add(residual, scaled), "merge")
    result = ops.result(conv(merge, channels, 4, "conv3"))
    result.set_friendly_name("output")
    return ov.Model([result], [x], "se_residual_model")
