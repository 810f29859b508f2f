"""The ops the OpenVINO CPU plugin may fuse into a convolution or a MatMul after it (post-ops), with the FakeQuantize
ops placement plans.

:func:`post_ops` spells the chain of single readers after an op as letters (``a``/``A`` an Add of a constant of
one/several values, ``m``/``M`` another elementwise op of a constant, ``N`` an activation, ``F``/``P`` a FakeQuantize
per tensor/channel, ``R`` an elementwise op of two activations), planned FakeQuantize sites counted where they will
be (``graph.cpu_fusion.fused_producer`` walks back from an output instead). ``cpu_workarounds`` matches the plugin's
bugs on them.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import openvino as ov

from pot_torch.algorithms.quantization.sites import ActivationSite
from pot_torch.graph.cpu_fusion import ELEMENTWISE, FUSED_ACTIVATIONS, Folded, is_constant


def _several_values(value: ov.Output) -> bool:
    shape = value.get_partial_shape()
    return shape.is_static and math.prod(shape.to_shape()) > 1


def _post_op_letter(node: ov.Node, shape: ov.PartialShape, constant: Folded) -> Optional[str]:
    """``node`` as a post-op of a convolution or MatMul with output ``shape``, as a letter of :func:`post_ops`;
    ``None`` when the plugin does not fuse it (another op, or an elementwise op that broadcasts to another shape).
    ``constant``: the model's ops computed from Constants only."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return "P" if any(_several_values(value) for value in node.input_values()[1:]) else "F"
    if kind in FUSED_ACTIVATIONS:
        return "N"
    if kind not in ELEMENTWISE or node.get_output_partial_shape(0) != shape:
        return None
    constants = [value for value in node.input_values() if is_constant(value, constant)]
    if len(constants) != 1:
        return "R"
    letter = "a" if kind == "Add" else "m"
    return letter.upper() if _several_values(constants[0]) else letter


def post_ops(node: ov.Node, planned: Dict[Tuple[str, int], ActivationSite], constant: Folded) -> str:
    """The letters of the chain of single readers of ``node``'s output the plugin fuses into it, with the
    FakeQuantize ops of the ``planned`` sites (by the inputs they feed) where they will be; ``constant``: the model's
    ops computed from Constants only."""
    targets, letters, shape = list(node.output(0).get_target_inputs()), "", node.get_output_partial_shape(0)
    through_site = False
    while True:
        keys = [(target.get_node().get_friendly_name(), target.get_index()) for target in targets]
        if not through_site and any(key in planned for key in keys):
            if not all(key in planned for key in keys):
                return letters  # a quantized and a float reader: the chain branches
            perchannel = any(option["granularity"] == "perchannel" for option in planned[keys[0]].options)
            letters, through_site = letters + ("P" if perchannel else "F"), True
            continue
        letter = _post_op_letter(targets[0].get_node(), shape, constant) if len(targets) == 1 else None
        if letter is None:
            return letters
        letters, through_site = letters + letter, False
        targets = list(targets[0].get_node().output(0).get_target_inputs())
