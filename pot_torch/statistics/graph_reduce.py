"""Build small ``openvino.opset13`` subgraphs that reduce an activation inside the model.

The statistics engine appends these subgraphs to the outputs it measures, so a reducer's value is computed
by OpenVINO instead of copying the whole activation back to numpy. Every builder takes the ``openvino.Output``
to measure and returns an ``openvino.Output`` holding the reduced value in ``f32``, with the same numbers as
the numpy reducers when the model runs at ``f32`` inference precision. Names of the new ops are derived from
``name`` only, so building the same statistics twice gives identical graphs.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import openvino as ov
import openvino.opset13 as ops

#: Reductions :func:`reduce_output` knows, in the names reducers use.
GRAPH_REDUCTIONS = ("min", "max", "abs_max", "mean")


def static_rank(output: ov.Output, what: str = "statistics") -> int:
    """Return the rank of ``output``; raise ``ValueError`` when it is not known when building the graph."""
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic:
        raise ValueError(
            f"cannot compute {what} in-graph on {output_label(output)!r}: its rank is dynamic ({shape}); "
            f"collect this statistic in numpy (inplace=False) or reshape the model to a static rank")
    return shape.rank.get_length()


def static_size(output: ov.Output, axes: Sequence[int]) -> Optional[int]:
    """Number of elements of ``output`` over ``axes``, or ``None`` when one of those dimensions is dynamic."""
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic or any(shape[axis].is_dynamic for axis in axes):
        return None
    return int(np.prod([shape[axis].get_length() for axis in axes], dtype=np.int64))


def output_label(output: ov.Output) -> str:
    """A stable text label for ``output``: ``friendly_name`` for output 0, else ``friendly_name.index``."""
    name = output.get_node().get_friendly_name()
    return name if output.get_index() == 0 else f"{name}.{output.get_index()}"


def named(node: ov.Node, name: str) -> ov.Output:
    """``node``'s output 0, the node given the friendly name ``name``."""
    node.set_friendly_name(name)
    return node.output(0)


def _const(value: np.ndarray, name: str) -> ov.Output:
    return named(ops.constant(value), name)


def as_f32(output: ov.Output, name: str) -> ov.Output:
    """``output`` converted to ``f32`` (a Convert named ``{name}/to_f32``), or as it is when it already is."""
    if output.get_element_type() == ov.Type.f32:
        return output
    return named(ops.convert(output, ov.Type.f32), f"{name}/to_f32")


def _prepared(output: ov.Output, absolute: bool, name: str) -> ov.Output:
    """``output`` as ``f32``, rank 0 reshaped to ``[1]``, absolute value when ``absolute``."""
    value = as_f32(output, name)
    if static_rank(output) == 0:
        shape_1d = _const(np.array([1], np.int64), f"{name}/shape_1d")
        value = named(ops.reshape(value, shape_1d, special_zero=False), f"{name}/to_1d")
    if absolute:
        value = named(ops.abs(value), f"{name}/abs")
    return value


def reduce_output(output: ov.Output, kind: str, axes: Sequence[int], name: str) -> ov.Output:
    """Reduce ``output`` in-graph with ``kind`` (one of :data:`GRAPH_REDUCTIONS`) over ``axes``.

    The result is ``f32`` with the reduced axes dropped. A rank-0 ``output`` is first reshaped to ``[1]``
    (``axes`` then refer to that shape). With no ``axes`` the (converted, for ``abs_max`` absolute) output is
    returned as is.

    :param output: the activation to measure.
    :param kind: ``'min'``, ``'max'``, ``'abs_max'`` or ``'mean'``.
    :param axes: non-negative axes to reduce.
    :param name: friendly name of the result op (and prefix of the helper ops).
    """
    if kind not in GRAPH_REDUCTIONS:
        raise ValueError(f"unknown in-graph reduction '{kind}'; expected one of "
                         f"{', '.join(GRAPH_REDUCTIONS)}")
    value = _prepared(output, kind == "abs_max", name)
    if not axes:
        return value
    axes_const = _const(np.asarray(list(axes), dtype=np.int64), f"{name}/axes")
    if kind == "min":
        node = ops.reduce_min(value, axes_const, keep_dims=False)
    elif kind == "mean":
        node = ops.reduce_mean(value, axes_const, keep_dims=False)
    else:
        node = ops.reduce_max(value, axes_const, keep_dims=False)
    return named(node, name)


def abs_max_from_extremes(maximum: ov.Output, minimum: ov.Output, name: str) -> ov.Output:
    """``max(|x|)`` from ``maximum`` and ``minimum``, the max and min of ``x`` over the same axes:
    ``|max(maximum, -minimum)|``, the value of ``ReduceMax(Abs(x))`` bit for bit (negation is exact and the max
    over the union of ``x`` and ``-x`` is the larger of the two maxima; the ``Abs`` of the small result makes the
    ``-0.0`` of data made of zeros ``+0.0``, as ``Abs`` before the reduction does). An activation measured by a
    min and an abs_max is then read by two reductions, with no ``Abs`` pass writing ``|x|`` over it.
    """
    negated = named(ops.negative(minimum), f"{name}/negated_min")
    return named(ops.abs(named(ops.maximum(maximum, negated), f"{name}/larger")), name)


def quantile_output(output: ov.Output, q: float, channel_axis: Optional[int], absolute: bool,
                    name: str) -> ov.Output:
    """The ``q`` quantile of ``output``, in-graph, per sample (``channel_axis=None``) or sample and channel.

    Gives the numbers of ``numpy.quantile(x, q, axis=...)`` (linear method, ``q`` a Python float) at ``f32``
    inference precision: a ``TopK`` takes the two order statistics around the virtual index
    ``(n - 1) * q`` from the cheaper end, and they are interpolated with numpy's two-sided formula. The number
    of reduced elements ``n`` must be static; the activation's rank must be at least 2 per channel. Per channel
    the values are laid out ``[B, n, C]`` (channels last, a transpose unless the channel axis is the last one)
    and the ``TopK`` runs along axis 1: the CPU plugin's ``TopK`` is vectorized over the axes after its own, so
    this is several times faster than along the last axis of ``[B, C, n]`` (450 vs 60 us for two ``k = 2``
    quantiles of a ``[1, 16, 56, 56]`` activation, one thread), with the same values (order statistics are
    elements of the data).

    :param output: the activation to measure (batch axis 0).
    :param q: the quantile in ``[0, 1]``.
    :param channel_axis: non-negative channel axis to keep, or ``None`` for per tensor.
    :param absolute: take the quantile of ``|x|``.
    :param name: friendly name of the result op (and prefix of the helper ops).
    :raises ValueError: when ``n`` is dynamic.
    """
    value = _prepared(output, absolute, name)
    rank = max(static_rank(output), 1)
    reduced = [axis for axis in range(1, rank) if axis != channel_axis]
    if not reduced:
        return value
    count = static_size(output, reduced)
    if count is None:
        raise ValueError(
            f"cannot compute a quantile in-graph on {output_label(output)!r}: the reduced dimensions "
            f"{reduced} of {output.get_partial_shape()} are not all static; collect it in numpy "
            f"(inplace=False) or reshape the model to static dimensions")
    if channel_axis is None:
        value = named(ops.reshape(value, _const(np.array([0, -1], np.int64), f"{name}/shape_2d"),
                                  special_zero=True), f"{name}/flatten")
    else:
        if channel_axis != rank - 1:
            order = [0] + reduced + [channel_axis]
            value = named(ops.transpose(value, _const(np.array(order, np.int64), f"{name}/order")),
                          f"{name}/channels_last")
        value = named(ops.reshape(value, _const(np.array([0, count, -1], np.int64), f"{name}/shape_3d"),
                                  special_zero=True), f"{name}/flatten")
    return _interpolated_order_statistic(value, count, q, name)


def _interpolated_order_statistic(flat: ov.Output, count: int, q: float, name: str) -> ov.Output:
    """numpy's linear quantile along axis 1 (length ``count``) of ``flat`` (``[B, count]`` or ``[B, count, C]``),
    axis 1 dropped."""
    virtual = (count - 1) * q
    low = min(int(math.floor(virtual)), count - 1)
    high = min(low + 1, count - 1)
    fraction = virtual - math.floor(virtual)
    if high + 1 <= count - low:  # fewer elements from the bottom: ascending TopK, sorted
        keep, mode, low_pos, high_pos = high + 1, "min", low, high
    else:  # fewer from the top: descending TopK, sorted
        keep, mode, low_pos, high_pos = count - low, "max", count - 1 - low, count - 1 - high
    axis = 1
    topk = ops.topk(flat, _const(np.array(keep, np.int64), f"{name}/k"), axis=axis, mode=mode, sort="value",
                    index_element_type=ov.Type.i32)
    topk.set_friendly_name(f"{name}/topk")
    axis_const = _const(np.array(axis, np.int64), f"{name}/axis")
    below = named(ops.gather(topk.output(0), _const(np.array(low_pos, np.int64), f"{name}/low_index"),
                             axis_const), f"{name}/low")
    above = named(ops.gather(topk.output(0), _const(np.array(high_pos, np.int64), f"{name}/high_index"),
                             axis_const), f"{name}/high")
    step = named(ops.subtract(above, below), f"{name}/step")
    # numpy: below + step * t for t < 0.5, else above - step * (1 - t), each weight rounded to float32
    near_low = fraction < 0.5
    weight = np.float32(fraction if near_low else 1.0 - fraction)
    delta = named(ops.multiply(step, _const(weight, f"{name}/weight")), f"{name}/delta")
    delta = _rounded(delta, name)
    if near_low:
        return named(ops.add(below, delta), name)
    return named(ops.subtract(above, delta), name)


def _rounded(value: ov.Output, name: str) -> ov.Output:
    """``value`` routed through Concat + Gather, so the CPU plugin cannot fuse the multiply producing it with
    the next add into one fused multiply-add (which rounds once instead of twice, unlike numpy)."""
    axis = value.get_partial_shape().rank.get_length()
    stack_axis = _const(np.array(axis, np.int64), f"{name}/stack_axis")
    column = named(ops.unsqueeze(value, stack_axis), f"{name}/column")
    stacked = named(ops.concat([column, column], axis), f"{name}/stack")
    return named(ops.gather(stacked, _const(np.array(0, np.int64), f"{name}/first"),
                            _const(np.array(axis, np.int64), f"{name}/gather_axis")), f"{name}/unstack")
