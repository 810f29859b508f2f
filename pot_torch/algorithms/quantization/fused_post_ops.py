"""The ops the OpenVINO CPU plugin may fuse into a convolution or a MatMul after it (post-ops), read from the graph.

:func:`post_ops` spells the chain of single readers after an op as letters (``a``/``A`` an Add of a constant of
one/several values, ``m``/``M`` another elementwise op of a constant, ``N`` an activation, ``F``/``P`` a FakeQuantize
per tensor/channel, ``R`` an elementwise op of two activations), planned FakeQuantize sites counted where they will
be; :func:`fused_producer` walks back from an output to the op it may be fused into. ``cpu_workarounds`` matches
the plugin's bugs on them.
"""
from __future__ import annotations

import math
from typing import AbstractSet, Dict, List, Optional, Tuple

import openvino as ov

from pot_torch.algorithms.quantization.sites import ActivationSite
from pot_torch.graph.constants import constant_ops

#: Friendly names of a model's ops computed from Constants only (``graph.constants.constant_ops``), which the plugin
#: folds into constants.
Folded = AbstractSet[str]


def folded_constants(model: ov.Model, constant: Optional[Folded] = None) -> Folded:
    """``constant`` (the ops of ``model`` computed from Constants only, which the plugin folds), computed when not
    given: every walk counts them as constants."""
    return constant_ops(model.get_ordered_ops()) if constant is None else constant


def is_constant(output: ov.Output, constant: Folded) -> bool:
    """Whether ``output`` is a constant once the plugin folds the ops computed from Constants only (``constant``)."""
    return output.get_node().get_friendly_name() in constant


#: Unary ops the CPU plugin may fuse into a convolution or MatMul as post-ops (a longer list only matches more).
FUSED_ACTIVATIONS = ("Relu", "Clamp", "Sigmoid", "HSigmoid", "HardSigmoid", "HSwish", "Swish", "Mish", "Elu", "Selu",
                     "Gelu", "Tanh", "SoftPlus", "SoftSign", "PRelu", "Abs", "Exp", "Log", "Sqrt", "Round", "Floor",
                     "Negative", "Erf")
ELEMENTWISE = ("Add", "Multiply", "Subtract", "Divide")


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


def fused_producer(node: ov.Node, constant: Folded) -> Tuple[ov.Node, List[ov.Node]]:
    """The op ``node``'s output comes from through a chain of ops the CPU plugin may fuse into it (activations,
    elementwise ops of a constant that keep the shape, transposes), and the ops of that chain from ``node`` up
    (``node`` itself and ``[]`` without such ops); ``constant``: the model's ops computed from Constants only."""
    chain: List[ov.Node] = []
    while True:
        if node.get_type_name() in FUSED_ACTIVATIONS + ("Transpose",):
            chain.append(node)
            node = node.input_value(0).get_node()
            continue
        activations = [value for value in node.input_values() if not is_constant(value, constant)]
        if node.get_type_name() not in ELEMENTWISE or len(activations) != 1 \
                or activations[0].get_partial_shape() != node.get_output_partial_shape(0):
            return node, chain
        chain.append(node)
        node = activations[0].get_node()
