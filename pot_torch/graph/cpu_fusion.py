"""What the OpenVINO CPU plugin folds and fuses, read from the graph: the ops it computes from Constants only (folded
into constants) and the chain of ops it may fuse into the op an output comes from (:func:`fused_producer`). The
CPU-plugin workarounds of placement and of the engine match its bugs on them.
"""
from __future__ import annotations

from typing import AbstractSet, List, Optional, Tuple

import openvino as ov

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
