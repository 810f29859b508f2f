"""Quantizer groups: FakeQuantize ops that must be reverted to floating point together.

A quantized layer (a Convolution, MatMul, residual Add ...) runs in INT8 only while all its inputs are
quantized, so reverting it means removing every FakeQuantize feeding it; a FakeQuantize shared by several
layers takes them all back together. A group is a connected set of FakeQuantize ops and the layers they feed.
A FakeQuantize placed above quantize-agnostic ops (a MaxPool, Reshape, Concat ... of the hardware description)
feeds the layers below them: the group holds those layers, not the agnostic ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Dict, List, Tuple

import openvino as ov

from pot_torch.graph.editor import fake_quantize_ops, find_op, remove_fake_quantize

#: Ops a FakeQuantize output may pass through before reaching the layer it quantizes (weights of f16 IR,
#: reshaped or transposed weights).
_PASS_THROUGH = ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze")


@dataclass(frozen=True)
class QuantizerGroup:
    """FakeQuantize ops (``fq_names``) and the layers they feed (``layers``), both in topological order."""

    fq_names: Tuple[str, ...]
    layers: Tuple[str, ...]


def _fed_layers(fq: ov.Node, pass_through: Collection[str]) -> List[ov.Node]:
    layers: List[ov.Node] = []
    pending = [fq.output(0)]
    while pending:
        for target in pending.pop().get_target_inputs():
            node = target.get_node()
            if node.get_type_name() in pass_through:
                pending.append(node.output(0))
            else:
                layers.append(node)
    return layers


def quantizer_groups(model: ov.Model, agnostic: Collection[str] = ()) -> List[QuantizerGroup]:
    """The quantizer groups of ``model``, ordered by their first FakeQuantize in topological order.

    :param agnostic: quantize-agnostic op types (``HardwareConfig.quantize_agnostic``) a FakeQuantize's
        output is followed through to the layers it quantizes.
    """
    pass_through = set(_PASS_THROUGH) | set(agnostic)
    ordered = model.get_ordered_ops()
    position = {op.get_friendly_name(): i for i, op in enumerate(ordered)}
    parent: Dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            keep, drop = (ra, rb) if position[ra] <= position[rb] else (rb, ra)
            parent[drop] = keep

    for fq in fake_quantize_ops(model):
        fq_name = fq.get_friendly_name()
        parent.setdefault(fq_name, fq_name)
        for layer in _fed_layers(fq, pass_through):
            layer_name = layer.get_friendly_name()
            parent.setdefault(layer_name, layer_name)
            join(fq_name, layer_name)
    members: Dict[str, List[str]] = {}
    for name in sorted(parent, key=position.__getitem__):
        members.setdefault(root(name), []).append(name)
    groups = []
    for names in members.values():
        fqs = tuple(n for n in names if ordered[position[n]].get_type_name() == "FakeQuantize")
        layers = tuple(n for n in names if n not in fqs)
        groups.append(QuantizerGroup(fqs, layers))
    return sorted(groups, key=lambda g: position[g.fq_names[0]])


def revert_group(model: ov.Model, group: QuantizerGroup) -> None:
    """Remove the group's FakeQuantize ops from ``model`` (in place), leaving its layers in floating point."""
    for name in group.fq_names:
        remove_fake_quantize(find_op(model, name))
