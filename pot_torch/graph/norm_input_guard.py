"""Keep the OpenVINO CPU plugin from normalizing the integers of an INT8 value (bug 7, docs/cpu-plugin-bugs.md).

Bug 7 (OpenVINO 2026.4 CPU plugin, f32 and bf16): a normalization whose result does not depend on the scale of its
input but for its eps (an MVN that normalizes the variance, a GroupNormalization, a NormalizeL2, or a layer norm or
L2 norm written out in ops, which the plugin fuses into one) reading a dequantized INT8 value with nothing but ops
that move data (a Reshape, Transpose, Squeeze, Unsqueeze, MaxPool, StridedSlice or Pad), ReLUs or a Multiply by a
constant between runs on the integers: the plugin moves the dequantization scale through it, so its eps counts in
integer units (eps times the squared scale in real ones) and rows whose variance (or sum of squares) is not far
above the eps come out wrong. The value is a FakeQuantize output whose zero is level 0 or its middle level, or the
output of an INT8 convolution or MatMul with no bias: per-tensor weights, a MatMul of two activations, or per-
channel weights under an MVN that does not reduce over the channels (an instance norm; static shapes only, right
under a dynamic batch: the other cases are wrong with both). Rows of variance ~2e-5 with eps 1e-5: 5-36 dB from the
IR's own result, against 141-151 dB once guarded; a bias Add between keeps it right.

An Add between keeps the scale before the normalization, so :func:`guard_normalization_inputs` makes every such op
read its input plus :data:`GUARD_SHIFT` (1e-30): float32 addition absorbs 1e-30 into any value above ~1e-23 in
magnitude, and what is left is a shift common to all values, which the mean of an MVN or a GroupNormalization
removes exactly and which changes a NormalizeL2 by less than 1e-28; an Add of an exact zero is removed by the plugin
and does not help. The plugin fuses the Add into the layer before it (no extra runtime layer; an instance-norm
network timed within its noise band). It depends on the graph only, not on the ranges, so algorithms that change
ranges later (RangeOptimization) keep it.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.graph.hardware.config import load_hardware_config

#: Ops the plugin moves a dequantization scale through, into a normalization (measured: Reshape, Transpose, ReLU,
#: MaxPool, StridedSlice, Pad; a Concat keeps it out), and so does a Multiply or Divide by a constant.
SCALE_MOVERS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Relu", "MaxPool", "StridedSlice", "Pad")
#: Layers the plugin computes in INT8 when they read a FakeQuantize output, and dequantizes after.
_INT8_LAYERS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
                "MatMul")
#: Ops that only move data, which the plugin's INT8 layers read a FakeQuantize through: the CPU hardware
#: description's ``quantize_agnostic`` ops (measured: Reshape, Transpose, MaxPool).
_DATA_MOVERS = load_hardware_config("CPU").quantize_agnostic
#: What a guarded normalization reads added to its input: absorbed by float32 above ~1e-23, a mean removes the rest.
GUARD_SHIFT = np.float32(1e-30)


def _behind_data_movers(value: ov.Output) -> bool:
    """Whether ``value`` is a FakeQuantize output, directly or through :data:`_DATA_MOVERS`."""
    node = value.get_node()
    if node.get_type_name() == "FakeQuantize":
        return True
    return node.get_type_name() in _DATA_MOVERS and any(_behind_data_movers(source) for source in node.input_values())


def _dequantized(value: ov.Output) -> bool:
    """Whether the plugin computes ``value`` as integers times a scale: a FakeQuantize output, or the output of a
    layer that reads one, directly or through data movers (an INT8 convolution or MatMul; its weights may be a
    FakeQuantize or stored as integers)."""
    node = value.get_node()
    if node.get_type_name() == "FakeQuantize":
        return True
    return node.get_type_name() in _INT8_LAYERS and any(_behind_data_movers(source) for source in node.input_values())


def _same(a: ov.Output, b: ov.Output) -> bool:
    return a.get_node().get_friendly_name() == b.get_node().get_friendly_name() and a.get_index() == b.get_index()


#: Ops a normalization written out in ops computes its statistic with (the plugin fuses such chains into an MVN or a
#: NormalizeL2); a walk from a Subtract, Divide or Multiply through these only finds the reduction of its operand.
_STATISTIC_OPS = ("ReduceMean", "ReduceSum", "ReduceL2", "Power", "Multiply", "Divide", "Add", "Subtract", "Sqrt",
                  "Maximum", "Convert")
_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceL2")
_MAX_HOPS = 6


def _statistic_readers(statistic: ov.Output, value: ov.Output) -> List[ov.Input]:
    """The inputs reading ``value`` of the ops ``statistic`` is computed from (through :data:`_STATISTIC_OPS`, at most
    :data:`_MAX_HOPS` deep), when one of those ops is a reduction; else ``[]``."""
    readers: List[ov.Input] = []
    reduces, seen = False, set()
    stack = [(statistic.get_node(), 0)]
    while stack:
        node, depth = stack.pop()
        if node.get_friendly_name() in seen or node.get_type_name() not in _STATISTIC_OPS or depth > _MAX_HOPS:
            continue
        seen.add(node.get_friendly_name())
        reduces |= node.get_type_name() in _REDUCTIONS
        for node_input in node.inputs():
            source = node_input.get_source_output()
            if _same(source, value):
                readers.append(node_input)
            elif source.get_node().get_type_name() != "Constant":
                stack.append((source.get_node(), depth + 1))
    return readers if reduces else []


def _normalizing_readers(node: ov.Node) -> List[ov.Input]:
    """The inputs through which ``node`` normalizes a value: an MVN that normalizes the variance, a GroupNormalization
    or a NormalizeL2 (their data input), or a normalization written out in ops, which the plugin fuses into an MVN or
    a NormalizeL2: ``x - mean(x)``, ``x / f(sum(x * x))``, ``x * f(...)`` (every input of it reading ``x``); ``[]``
    for any other op."""
    if node.get_type_name() in ("GroupNormalization", "NormalizeL2"):
        return [node.input(0)]
    if node.get_type_name() == "MVN":
        return [node.input(0)] if node.get_attributes()["normalize_variance"] else []
    if node.get_type_name() not in ("Subtract", "Divide", "Multiply"):
        return []
    for port in ((0, 1) if node.get_type_name() == "Multiply" else (0,)):
        readers = _statistic_readers(node.input_value(1 - port), node.input_value(port))
        if readers:
            return [node.input(port)] + readers
    return []


def _scale_source(node: ov.Node) -> Optional[ov.Output]:
    """The input whose dequantization scale the plugin moves through ``node`` (one of :data:`SCALE_MOVERS`, or a
    Multiply or Divide by a constant); ``None`` for any other op."""
    if node.get_type_name() in SCALE_MOVERS:
        return node.input_value(0)
    if node.get_type_name() not in ("Multiply", "Divide"):
        return None
    constant = [value.get_node().get_type_name() == "Constant" for value in node.input_values()]
    if constant == [False, True] or (node.get_type_name() == "Multiply" and constant == [True, False]):
        return node.input_value(constant.index(False))
    return None


def unguarded_normalizations(model: ov.Model) -> List[Tuple[ov.Node, List[ov.Input]]]:
    """The normalizations of ``model`` (MVNs, GroupNormalizations, NormalizeL2s, and those written out in ops, named by
    the op that subtracts, divides or multiplies their operand) that read a float32 dequantized INT8 value through
    :data:`SCALE_MOVERS` and constant scales only (bug 7, see the module docstring), each with the inputs that read
    that value."""
    found = []
    for node in model.get_ordered_ops():
        readers = _normalizing_readers(node)
        if not readers or readers[0].get_element_type() != ov.Type.f32:
            continue
        value = readers[0].get_source_output()
        source = _scale_source(value.get_node())
        while source is not None:
            value, source = source, _scale_source(source.get_node())
        if _dequantized(value):
            found.append((node, readers))
    return found


def guard_normalization_inputs(model: ov.Model) -> List[str]:
    """Make every normalization of :func:`unguarded_normalizations` read its input plus :data:`GUARD_SHIFT` (an ``Add``
    named ``<op>/guard_shift``), so that the CPU plugin keeps that input in floating point; returns the ops' names."""
    names = []
    for node, readers in unguarded_normalizations(model):
        shifted = ops.add(readers[0].get_source_output(), ops.constant(GUARD_SHIFT))
        shifted.set_friendly_name(f"{node.get_friendly_name()}/guard_shift")
        for reader in readers:
            reader.replace_source_output(shifted.output(0))
        names.append(node.get_friendly_name())
    if names:
        model.validate_nodes_and_infer_types()
    return names
