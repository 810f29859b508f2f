"""Graph edits on an ``openvino.Model``: FakeQuantize insertion and removal, constant replacement.

Naming conventions (shared by every algorithm; existing ops are never renamed):

- an activation FakeQuantize on output ``port`` of op ``producer`` is named ``f"{producer}/fq_output_{port}"``
  and is shared by all the quantized consumers of that output;
- a weight FakeQuantize feeding input ``in_port`` of op ``consumer`` is named ``f"{consumer}/fq_weights_{in_port}"``;
- the range constants of FakeQuantize ``fq_name`` are ``f"{fq_name}/input_low"``, ``/input_high``,
  ``/output_low`` and ``/output_high``.

Every function that iterates consumers orders them by the model's topological order, so repeated runs build
identical graphs.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.utils.node_factory import NodeFactory

from pot_torch.graph.constants import WEIGHT_PASS_THROUGH, constant_source

RANGE_NAMES = ("input_low", "input_high", "output_low", "output_high")


def activation_fq_name(producer: str, port: int) -> str:
    """Friendly name of the FakeQuantize on output ``port`` of op ``producer``."""
    return f"{producer}/fq_output_{port}"


def weight_fq_name(consumer: str, in_port: int) -> str:
    """Friendly name of the FakeQuantize on the weight input ``in_port`` of op ``consumer``."""
    return f"{consumer}/fq_weights_{in_port}"


def ops_by_name(model: ov.Model) -> Dict[str, ov.Node]:
    """``{friendly_name: op}`` for every op of ``model``, in topological order."""
    return {op.get_friendly_name(): op for op in model.get_ordered_ops()}


def find_op(model: ov.Model, name: str) -> ov.Node:
    """The op of ``model`` named ``name``; ``KeyError`` naming close matches if there is none."""
    found = ops_by_name(model).get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, list(ops_by_name(model)), n=5)
        raise KeyError(f"no op named '{name}' in model '{model.get_friendly_name()}'; close names: {close}")
    return found


def ordered_consumers(model: ov.Model, output: ov.Output) -> List[ov.Input]:
    """The inputs fed by ``output``, ordered by consumer position in ``model`` and then input index."""
    position = {op.get_instance_id(): i for i, op in enumerate(model.get_ordered_ops())}
    return sorted(output.get_target_inputs(),
                  key=lambda inp: (position.get(inp.get_node().get_instance_id(), -1), inp.get_index()))


def _range_constant(value: np.ndarray | float, element_type: ov.Type, name: str) -> ov.Node:
    array = np.asarray(value, dtype=np.float32)
    node = ops.constant(array, dtype=element_type if element_type.is_real() else ov.Type.f32)
    node.set_friendly_name(name)
    return node


def insert_fake_quantize(model: ov.Model, output: ov.Output, levels: int,
                         ranges: Sequence[np.ndarray | float] = (0.0, 1.0, 0.0, 1.0),
                         consumers: Optional[Iterable[ov.Input]] = None,
                         name: Optional[str] = None) -> ov.Node:
    """Insert a FakeQuantize on ``output`` feeding ``consumers`` (default: every consumer of ``output``).

    :param ranges: ``(input_low, input_high, output_low, output_high)`` arrays broadcastable to the output.
    :param name: friendly name (default: ``activation_fq_name`` of the producer and port).
    :returns: the new FakeQuantize op.
    """
    producer = output.get_node()
    if name is None:
        name = activation_fq_name(producer.get_friendly_name(), output.get_index())
    targets = ordered_consumers(model, output) if consumers is None else list(consumers)
    element_type = output.get_element_type()
    limits = [_range_constant(v, element_type, f"{name}/{n}") for v, n in zip(ranges, RANGE_NAMES)]
    fq = ops.fake_quantize(output, *limits, levels)
    fq.set_friendly_name(name)
    for target in targets:
        target.replace_source_output(fq.output(0))
    return fq


def fake_quantize_ranges(fq: ov.Node) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four range constants of ``fq`` (``input_low, input_high, output_low, output_high``)."""
    values = []
    for port in range(1, 5):
        const = constant_source(fq.input_value(port))
        if const is None:
            raise ValueError(f"FakeQuantize '{fq.get_friendly_name()}' input {port} is not a constant")
        values.append(np.asarray(const.get_data(), dtype=np.float32))
    return tuple(values)  # type: ignore[return-value]


def set_fake_quantize_ranges(fq: ov.Node, ranges: Sequence[np.ndarray | float],
                             levels: Optional[int] = None) -> ov.Node:
    """Replace the range constants of ``fq`` in place (and its ``levels`` when given); returns ``fq``."""
    name = fq.get_friendly_name()
    element_type = fq.get_input_element_type(0)
    for port, (value, range_name) in enumerate(zip(ranges, RANGE_NAMES), start=1):
        fq.input(port).replace_source_output(_range_constant(value, element_type, f"{name}/{range_name}").output(0))
    if levels is not None:
        fq.set_attribute("levels", int(levels))
    fq.validate_and_infer_types()
    return fq


def fake_quantize_linear_map(fq: ov.Node) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(scale, shift)`` with which ``fq`` maps its input range onto its output range (``output = input * scale
    + shift`` before rounding), or ``None`` when the ranges are equal (the map is the identity). POT's saturation
    fix makes one: half the weights in, the output range doubled."""
    in_low, in_high, out_low, out_high = fake_quantize_ranges(fq)
    scale = (out_high - out_low) / np.where(in_high == in_low, 1.0, in_high - in_low)
    shift = out_low - in_low * scale
    if np.allclose(scale, 1.0) and np.allclose(shift, 0.0):
        return None
    return scale, shift


def remove_fake_quantize(fq: ov.Node) -> None:
    """Remove ``fq``: its consumers read its data input directly again.

    A FakeQuantize on a constant whose output range differs from its input range (POT's saturation fix halves
    weights and doubles the output range) also maps the values linearly; that map is folded into the constant,
    so the layer computes what it computed with the FakeQuantize, without the rounding.
    """
    if fq.get_type_name() != "FakeQuantize":
        raise ValueError(f"'{fq.get_friendly_name()}' is a {fq.get_type_name()}, not a FakeQuantize")
    constant = constant_source(fq.input_value(0))
    if constant is not None:
        linear_map = fake_quantize_linear_map(fq)
        if linear_map is not None:
            scale, shift = linear_map
            data = constant.get_data().astype(np.float32)
            if tuple(data.shape) != tuple(fq.get_input_shape(0)):
                raise ValueError(f"cannot remove '{fq.get_friendly_name()}': it rescales its constant input, "
                                 "which is reshaped on the way")
            replace_constant(constant, data * scale + shift)
    fq.output(0).replace(fq.input_value(0))


def replace_constant(const: ov.Node, value: np.ndarray) -> ov.Node:
    """Replace Constant ``const`` by one holding ``value`` (same friendly name and element type) everywhere.

    :returns: the new Constant op.
    """
    if const.get_type_name() != "Constant":
        raise ValueError(f"'{const.get_friendly_name()}' is a {const.get_type_name()}, not a Constant")
    element_type = const.get_output_element_type(0)
    new = ops.constant(np.asarray(value).astype(element_type.to_dtype()), dtype=element_type)
    name = const.get_friendly_name()
    names = const.output(0).get_names()
    const.output(0).replace(new.output(0))
    new.set_friendly_name(name)
    if names:
        new.output(0).set_names(names)
    return new


def compressed_weight_of(node: ov.Node, port: int) -> Optional[ov.Node]:
    """The integer Constant behind input ``port`` of ``node`` when that input is a weight stored compressed.

    That is ``Constant (integer) -> Convert -> [Subtract (zero point)] -> Multiply (scale)``, possibly followed
    by ``WEIGHT_PASS_THROUGH`` ops: what ``compress_model_weights`` (POT's and pot_torch's) and NNCF write for
    quantized weights. The zero point and the scale are constants (possibly through a Convert). An f16
    Constant decompressed by a Convert is a float weight, not a compressed one: ``None``, like for activations.
    """
    multiply = node.input_value(port).get_node()
    while multiply.get_type_name() in WEIGHT_PASS_THROUGH and multiply.get_type_name() != "FakeQuantize":
        multiply = multiply.input_value(0).get_node()
    if multiply.get_type_name() != "Multiply":
        return None
    for data_port in range(2):
        if constant_source(multiply.input_value(1 - data_port)) is None:
            continue
        source = multiply.input_value(data_port).get_node()
        if source.get_type_name() == "Subtract":
            if constant_source(source.input_value(1)) is None:
                continue
            source = source.input_value(0).get_node()
        if source.get_type_name() != "Convert":
            continue
        constant = source.input_value(0).get_node()
        if constant.get_type_name() == "Constant" and constant.get_output_element_type(0).is_integral():
            return constant
    return None


def weight_source_output(node: ov.Node, port: int) -> ov.Output:
    """Where a weight FakeQuantize on input ``port`` of ``node`` goes: the output feeding that input.

    That is the weight Constant, or the Convert decompressing an f16 Constant; an existing FakeQuantize is
    looked through (so re-quantizing replaces it rather than stacking another).
    """
    source = node.input_value(port)
    while source.get_node().get_type_name() == "FakeQuantize":
        source = source.get_node().input_value(0)
    return source


def copy_node(node: ov.Node, inputs: Sequence[ov.Output]) -> ov.Node:
    """A new op of ``node``'s type, version and attributes reading ``inputs`` (``node`` is unchanged)."""
    info = node.get_type_info()
    return NodeFactory(info.version_id).create(info.name, list(inputs), node.get_attributes())


def fake_quantize_ops(model: ov.Model) -> List[ov.Node]:
    """The FakeQuantize ops of ``model`` in topological order."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]


def constant_value(output: ov.Output) -> np.ndarray:
    """The value of an output computed from a Constant only through ``WEIGHT_PASS_THROUGH`` ops, as float32.

    :raises ValueError: if ``output`` depends on anything else.
    """
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "Constant":
        return np.asarray(node.get_data(), dtype=np.float32)
    if kind not in WEIGHT_PASS_THROUGH or kind == "FakeQuantize":
        raise ValueError(f"'{node.get_friendly_name()}' ({kind}) is not a constant or a Convert/Reshape/"
                         "Transpose of one")
    value = constant_value(node.input_value(0))
    if kind == "Transpose":
        return np.transpose(value, constant_value(node.input_value(1)).astype(np.int64))
    return value.reshape(tuple(output.get_shape()))
