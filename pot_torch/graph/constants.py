"""Which values of an ``openvino.Model`` are constants: the Constant behind an output, the ops computed from constants.

The one place that answers "is this a constant (sub)graph" for every algorithm:

- :func:`constant_source`: the single Constant an output reads through value-preserving ops (a weight, a bias,
  a FakeQuantize range); optionally only when nothing else reads that Constant (so it can be replaced);
- :func:`constant_ops`: every op computed from Constants only (any op types in between, e.g. shape arithmetic).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Set

import openvino as ov

#: Ops that pass a weight through unchanged in meaning (decompression, layout); the default of ``constant_source``.
WEIGHT_PASS_THROUGH = ("Convert", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "FakeQuantize")


def _op_type(op: ov.Node) -> str:
    return op.get_type_name()


def _single_use(node: ov.Node) -> bool:
    return all(len(output.get_target_inputs()) == 1 for output in node.outputs())


def constant_source(output: ov.Output, through: Sequence[str] = WEIGHT_PASS_THROUGH,
                    exclusive: bool = False) -> Optional[ov.Node]:
    """The Constant that ``output`` is, looking through ops of the types ``through`` (along their input 0).

    :param through: op types looked through (default: ``WEIGHT_PASS_THROUGH``).
    :param exclusive: also require that the Constant and every op in between feed only this one path (so
        replacing the Constant changes nothing else).
    :returns: the Constant, or ``None`` when ``output`` is not computed from a single Constant that way (an
        activation, or a shared Constant when ``exclusive``).
    """
    node = output.get_node()
    while node.get_type_name() in through and (not exclusive or _single_use(node)):
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant" or (exclusive and not _single_use(node)):
        return None
    return node


def constant_ops(ordered: Iterable[ov.Node], kind_of: Callable[[ov.Node], str] = _op_type,
                 constant_kind: str = "Constant") -> Set[str]:
    """Friendly names of the ops computed from Constants only (weights and their FakeQuantize, shape arithmetic...).

    :param ordered: the ops of a model in topological order (``model.get_ordered_ops()``). Parameters and
        ReadValue (state) are not constants, nor is any op that reads one.
    :param kind_of: an op's type (default ``get_type_name``; a CPU runtime graph names its types in rt_info).
    :param constant_kind: the type of a constant under ``kind_of``.
    """
    constant: Set[str] = set()
    for op in ordered:
        kind = kind_of(op)
        if kind == constant_kind or (kind not in ("Parameter", "ReadValue") and op.get_input_size() > 0 and all(
                value.get_node().get_friendly_name() in constant for value in op.input_values())):
            constant.add(op.get_friendly_name())
    return constant
