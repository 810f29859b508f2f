"""POT's graph-editing helpers on ``openvino.Model``: ``connect_nodes``, ``connect_nodes_by_name``,
``remove_node_by_name`` (POT's ``graph/editor.py`` names; POT edited Model Optimizer graphs)."""
from __future__ import annotations

from typing import Any

import openvino as ov

from pot_torch.graph.model_utils import as_members, get_node_by_name
from pot_torch.utils.unsupported import unsupported_class

#: POT's pattern-matching transformer of Model Optimizer graphs. pot_torch places FakeQuantize ops from its
#: hardware rules on the ``openvino.Model`` instead (``pot_torch.graph.hardware``).
GraphTransformer = unsupported_class(
    "openvino.tools.pot.graph.GraphTransformer",
    "it matched Model Optimizer graph patterns to place FakeQuantize ops, and Model Optimizer graphs are gone; "
    "pot_torch places them on the openvino.Model from its hardware rules (MinMaxQuantization, "
    "DefaultQuantization); edit a model with the openvino Python API or pot_torch.graph.connect_nodes")


def connect_nodes(src_node: ov.Node, src_port: int, dst_node: ov.Node, dst_port: int) -> None:
    """Make output ``src_port`` of ``src_node`` the source of input ``dst_port`` of ``dst_node`` (in place).

    :raises IndexError: a port index the op does not have.
    """
    if not 0 <= src_port < src_node.get_output_size():
        raise IndexError(f"connect_nodes: op '{src_node.get_friendly_name()}' has {src_node.get_output_size()} "
                         f"output(s), no output {src_port}")
    if not 0 <= dst_port < dst_node.get_input_size():
        raise IndexError(f"connect_nodes: op '{dst_node.get_friendly_name()}' has {dst_node.get_input_size()} "
                         f"input(s), no input {dst_port}")
    dst_node.input(dst_port).replace_source_output(src_node.output(src_port))


def _node(model: Any, name: str) -> ov.Node:
    node = get_node_by_name(model, name)
    if node is None:
        raise KeyError(f"the model has no op named '{name}' (use the op friendly names of the model)")
    return node


def connect_nodes_by_name(model: Any, src_node_name: str, src_port: int, dst_node_name: str, dst_port: int) -> None:
    """``connect_nodes`` on the ops of ``model`` (``CompressedModel`` or ``openvino.Model``) named so; shapes
    and types are inferred again afterwards.

    :raises KeyError: no op has one of the names.
    """
    connect_nodes(_node(model, src_node_name), src_port, _node(model, dst_node_name), dst_port)
    _owner(model, dst_node_name).validate_nodes_and_infer_types()


def remove_node_by_name(model: Any, node_name: str) -> None:
    """Remove the op ``node_name`` from ``model`` (``CompressedModel`` or ``openvino.Model``), in place.

    An op with one output of the same shape and element type as its input 0 (a FakeQuantize, an activation
    ...) is bypassed: its readers read its input 0 instead. A ``Result`` is removed from the model's outputs; an
    unused ``Parameter`` from its inputs. (POT left the readers of a removed node unconnected; an
    ``openvino.Model`` cannot have an unconnected input, so anything else is refused.)

    :raises KeyError: no op has that name.
    :raises ValueError: the op cannot be removed that way (the error says why).
    """
    node = _node(model, node_name)
    kind = node.get_type_name()
    ov_model = _owner(model, node_name)
    if kind == "Result":
        ov_model.remove_result(node)
    elif kind == "Parameter":
        if node.output(0).get_target_inputs():
            raise ValueError(f"remove_node_by_name: input '{node_name}' still feeds "
                             f"{len(node.output(0).get_target_inputs())} op(s); connect them elsewhere first")
        ov_model.remove_parameter(node)
    else:
        _bypass(node)
    ov_model.validate_nodes_and_infer_types()


def _bypass(node: ov.Node) -> None:
    name = node.get_friendly_name()
    if node.get_output_size() != 1 or node.get_input_size() < 1:
        raise ValueError(f"remove_node_by_name: op '{name}' ({node.get_type_name()}) has "
                         f"{node.get_input_size()} input(s) and {node.get_output_size()} output(s); only an op "
                         "with a data input and one output can be bypassed")
    source = node.input_value(0)
    output = node.output(0)
    if (source.get_partial_shape(), source.get_element_type()) != (output.get_partial_shape(),
                                                                    output.get_element_type()):
        raise ValueError(f"remove_node_by_name: op '{name}' turns {source.get_element_type().get_type_name()} "
                         f"{source.get_partial_shape()} into {output.get_element_type().get_type_name()} "
                         f"{output.get_partial_shape()}; its readers cannot read its input instead")
    for target in list(output.get_target_inputs()):
        target.replace_source_output(source)


def _owner(model: Any, node_name: str) -> ov.Model:
    """The ``openvino.Model`` of ``model`` whose top level holds the op ``node_name`` (names are unique:
    ``get_node_by_name`` refuses duplicates).

    :raises ValueError: the op is inside a sub-graph body (If, Loop, TensorIterator), which these helpers do not
        edit (they used to do nothing there without a word).
    """
    for member in as_members(model):
        if any(op.get_friendly_name() == node_name for op in member["model"].get_ops()):
            return member["model"]
    raise ValueError(f"op '{node_name}' is inside the body of an If, Loop or TensorIterator; edit that body model "
                     "(e.g. op.get_then_body()) with connect_nodes and its own methods instead")
