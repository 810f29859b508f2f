"""Keep the OpenVINO CPU plugin from applying a constant shift along the channel axis when it varies along another.

Bug 9 (OpenVINO 2026.4 CPU plugin, docs/cpu-plugin-bugs.md): in a model with at least one FakeQuantize (anywhere:
the plugin's low-precision pass runs on the whole model), a tensor of rank 3 or more scaled per channel (axis 1: a
Multiply or Divide by a ``[1, C, 1, ...]`` constant, the dequantization of an INT8 convolution or of a per-channel
FakeQuantize), then through ops the plugin fuses (activations, elementwise ops of a constant), an Add or Subtract
of a constant with C values varying along another axis (``[C]`` on a ``[N, C, C]`` tensor) is computed as if that
constant were per channel: off by the constant's range. The same model without a FakeQuantize is right, and so is
the same Add with the constant broadcast over the channel axis too (``[1, C, C]``, the same values).

:func:`broadcast_channel_sized_shifts` makes that broadcast explicit (a ``Broadcast`` of the constant to the channel
axis, folded by the plugin) on every such Add or Subtract of a model that has FakeQuantize ops
(:mod:`pot_torch.graph.cpu_rewrites` applies it with the other CPU rewrites and says so). The model computes the
same values; the constant the plugin holds grows C times.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.graph.cpu_fusion import Folded, folded_constants, fused_producer, is_constant
from pot_torch.graph.editor import fake_quantize_ops

#: Layers whose INT8 output the plugin dequantizes per output channel (axis 1).
_PER_CHANNEL_DEQUANTIZED = ("Convolution", "GroupConvolution", "ConvolutionBackpropData",
                            "GroupConvolutionBackpropData")


def _dims(value: ov.Output, rank: int) -> Optional[List[int]]:
    """The static shape of ``value`` broadcast (numpy rules) to ``rank`` dimensions; ``None`` when dynamic."""
    shape = value.get_partial_shape()
    if not shape.is_static or len(shape) > rank:
        return None
    return [1] * (rank - len(shape)) + list(shape.to_shape())


def _channel_only(value: ov.Output, rank: int) -> int:
    """The number of values of ``value`` along axis 1 when it varies along axis 1 only (broadcast to ``rank``), else
    0."""
    dims = _dims(value, rank)
    return dims[1] if dims is not None and dims[1] > 1 and math.prod(dims) == dims[1] else 0


def _channel_scale_before(output: ov.Output, rank: int, constant: Folded) -> int:
    """The channel count C of a per-channel (axis 1) scale ``output`` carries through ops the plugin fuses: a
    Multiply or Divide by a per-channel constant on the way, or an output the plugin dequantizes per channel (a
    convolution, a per-channel FakeQuantize) at its start; 0 when there is none (or a Transpose moves the axes
    between)."""
    producer, chain = fused_producer(output.get_node(), constant)
    for node in chain:
        if node.get_type_name() == "Transpose":
            return 0
        if node.get_type_name() in ("Multiply", "Divide"):
            channels = max((_channel_only(value, rank) for value in node.input_values()
                            if is_constant(value, constant)), default=0)
            if channels:
                return channels
    if producer.get_type_name() in _PER_CHANNEL_DEQUANTIZED:
        channels = producer.get_output_partial_shape(0)[1]
        return channels.get_length() if channels.is_static else 0
    if producer.get_type_name() == "FakeQuantize":
        return max(_channel_only(value, rank) for value in producer.input_values()[1:])
    return 0


def channel_sized_shifts(model: ov.Model, constant: Optional[Folded] = None) -> List[Tuple[ov.Node, int, int]]:
    """The Adds and Subtracts of ``model`` in the position of bug 9 (see the module docstring), each with the input
    port of its constant and the channel count C; ``constant``: the model's ops computed from Constants only
    (computed when not given)."""
    constant = folded_constants(model, constant)
    found = []
    for node in model.get_ordered_ops():
        rank = node.get_output_partial_shape(0).rank if node.get_type_name() in ("Add", "Subtract") else None
        if rank is None or rank.is_dynamic or rank.get_length() < 3:
            continue
        ports = [is_constant(value, constant) for value in node.input_values()]
        if sorted(ports) != [False, True]:
            continue
        shift, data = node.input_value(ports.index(True)), node.input_value(ports.index(False))
        dims = _dims(shift, rank.get_length())
        if dims is None or dims[1] != 1 or math.prod(dims) < 2:
            continue
        channels = _channel_scale_before(data, rank.get_length(), constant)
        if channels == math.prod(dims):
            found.append((node, ports.index(True), channels))
    return found


def broadcast_channel_sized_shifts(model: ov.Model, constant: Optional[Folded] = None) -> List[str]:
    """Broadcast the constant of every Add or Subtract in the position of bug 9 over the channel axis too (same
    values), when ``model`` has FakeQuantize ops; returns their names."""
    if not fake_quantize_ops(model):
        return []
    names = []
    for node, port, channels in channel_sized_shifts(model, constant):
        shift = node.input_value(port)
        dims = _dims(shift, node.get_output_partial_shape(0).rank.get_length())
        dims[1] = channels
        broadcast = ops.broadcast(shift, ops.constant(np.array(dims, np.int64)))
        broadcast.set_friendly_name(f"{node.get_friendly_name()}/shift_over_channels")
        node.input(port).replace_source_output(broadcast.output(0))
        names.append(node.get_friendly_name())
    if names:
        model.validate_nodes_and_infer_types()
    return names
