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
    flat = ops.reshape(pool, ops.constant(np.array([batch, channels], dtype=np.int64)), special_zero=False)
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
