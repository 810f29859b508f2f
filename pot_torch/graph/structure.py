"""A hashable fingerprint of an ``openvino.Model``'s graph (not its constant values), to recognise a model again."""
from __future__ import annotations

from typing import Hashable

import openvino as ov


def graph_structure(model: ov.Model) -> Hashable:
    """Every op's name, type, inputs (producer name, port) and output shapes and element types, in graph order.

    Two models with equal structures are the same graph with possibly different constant values.
    """
    return tuple(
        (op.get_friendly_name(), op.get_type_name(),
         tuple((value.get_node().get_friendly_name(), value.get_index()) for value in op.input_values()),
         tuple((str(output.get_partial_shape()), str(output.get_element_type())) for output in op.outputs()))
        for op in model.get_ordered_ops())
