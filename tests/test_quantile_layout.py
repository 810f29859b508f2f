"""The in-graph per-channel quantile runs its TopK along axis 1 of the activation laid out ``[B, n, C]`` (the CPU
plugin's TopK along the last axis of ``[B, C, n]`` is several times slower) and gives numpy's quantiles exactly."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.statistics.reducers import make_reducer
from tests.test_reducers import F32


def _activation(shape: tuple) -> Tuple[ov.Node, ov.Output]:
    """The input and the measured activation 'act' (1.5 times the input)."""
    data = ops.parameter(list(shape), np.float32, name="input")
    act = ops.multiply(data, ops.constant(np.float32(1.5)))
    act.set_friendly_name("act")
    return data, act.output(0)


@pytest.mark.parametrize("shape, channel_axis, transposes",
                         [((1, 16, 56, 56), 1, 1), ((2, 10, 24), -1, 0), ((1, 4, 3, 5), 2, 1)])
def test_per_channel_topk_runs_along_axis_1_channels_last(shape: tuple, channel_axis: int, transposes: int) -> None:
    reducer = make_reducer("quantile", True, channel_axis, inplace=True, quantile=1 - 1e-4)
    data, act = _activation(shape)
    value = reducer.graph_reduce(act)
    model = ov.Model([ops.result(value)], [data], "quantile")
    (topk,) = [op for op in model.get_ordered_ops() if op.get_type_name() == "TopK"]
    channels = shape[channel_axis]
    assert topk.get_axis() == 1 and list(topk.input_value(0).get_partial_shape())[2:] == [channels]
    assert [op.get_type_name() for op in model.get_ops()].count("Transpose") == transposes
    assert list(value.get_partial_shape()) == [shape[0], channels]


def test_per_channel_quantiles_of_a_convolution_sized_activation_equal_numpy() -> None:
    shape = (2, 16, 56, 56)
    reducers = [make_reducer(kind, True, 1, inplace=True, quantile=q) for kind in ("quantile", "abs_quantile")
                for q in (0.0, 1e-4, 0.37, 1 - 1e-4, 1.0)]
    data, act = _activation(shape)
    model = ov.Model([ops.result(act)] + [ops.result(r.graph_reduce(act)) for r in reducers], [data], "stats")
    compiled = ov.Core().compile_model(model, "CPU", F32)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0] = 0.0
    x[0, 0, :3, :3] = -0.0  # signed zeros
    x[1, 1, :2] = x[1, 1, 2]  # ties
    x[1, 2] = np.round(x[1, 2])  # many ties
    outputs = compiled(x)
    measured = outputs[compiled.outputs[0]]
    for index, reducer in enumerate(reducers, start=1):
        np.testing.assert_array_equal(outputs[compiled.outputs[index]], reducer(measured), err_msg=repr(reducer))
