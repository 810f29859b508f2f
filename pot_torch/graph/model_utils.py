"""POT's helper path ``openvino.tools.pot.graph.model_utils``: model I/O, extra outputs and node look-ups.

Scripts and custom engines written for POT import these names from here unchanged. Nodes are
``openvino.Node`` objects (POT returned Model Optimizer graph nodes); a node's name is its friendly name.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Union

import openvino as ov
import openvino.opset13 as opset

from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.node_key import node_key_label as convert_output_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.submodels import build_model_for_node, models_union
from pot_torch.graph.weights_compression import compress_model_weights, compress_weights

__all__ = [
    "load_model", "save_model", "compress_model_weights", "add_outputs", "get_nodes_by_type",
    "get_node_by_name", "get_all_operation_nodes", "nx_type_infer", "CompressedModel", "compress_weights",
    "convert_output_key", "build_model_for_node", "models_union",
]

AnyModel = Union[CompressedModel, ov.Model]


def add_outputs(models: Union[AnyModel, Sequence[Dict[str, Any]]],
                node_names: Union[Mapping, Sequence[Hashable]]) -> Dict[str, List[ov.Output]]:
    """Make outputs of inner ops model outputs by adding ``Result`` ops, in place (as POT did).

    :param models: a ``CompressedModel``, an ``openvino.Model``, or POT's list of
        ``{'name': str, 'model': openvino.Model}`` (e.g. ``compressed_model.models``).
    :param node_names: POT's ``{model_friendly_name: {key: node}}`` (a member's name is accepted as the key,
        and the inner dict may be a list of nodes), or simply a list of nodes. A node is an op's friendly
        name (its output 0), ``(friendly_name, output_index)``, or a tensor name. With a plain list and
        several models, each node goes to the model that has it.
    :return: ``{model_friendly_name: [openvino.Output, ...]}``, the model outputs now carrying the nodes'
        values, in the order asked. An output that already fed a ``Result`` is not added twice. An output
        without a tensor name gets ``<op name>/sink_port_<index>`` so it can be looked up in inference
        results by name; the new ``Result`` has that friendly name too.
    """
    members = as_members(models)
    by_name = {}
    for member in members:
        by_name[member["model"].get_friendly_name()] = member["model"]
        by_name.setdefault(member["name"], member["model"])
    requests: List[tuple] = []
    if isinstance(node_names, Mapping):
        for key, nodes in node_names.items():
            if key not in by_name:
                raise KeyError(f"add_outputs: no model named '{key}'; models: {sorted(by_name)}")
            nodes = list(nodes.values()) if isinstance(nodes, Mapping) else list(nodes)
            requests.extend((by_name[key], node) for node in nodes)
    else:
        requests = [(_owner(members, node), node) for node in node_names]
    added: Dict[str, List[ov.Output]] = {m["model"].get_friendly_name(): [] for m in members}
    for model, node in requests:
        added[model.get_friendly_name()].append(_expose(model, _find_output(model, node)))
    return added


def get_nodes_by_type(model: AnyModel, types: Iterable[str], recursively: bool = True) -> List[ov.Node]:
    """All ops whose type name (``'Convolution'``, ``'FakeQuantize'``, ...) is in ``types``, in every model.

    :param recursively: also look inside the bodies of ``If``, ``Loop`` and ``TensorIterator`` ops.
    """
    if isinstance(types, str):
        types = [types]
    wanted = set(types)
    return [op for op in get_all_operation_nodes(model, recursively) if op.get_type_name() in wanted]


def get_node_by_name(model: AnyModel, name: str) -> Optional[ov.Node]:
    """The op with friendly name ``name`` (searched in every model and sub-graph body), or ``None``.

    :raises RuntimeError: several ops of the model (e.g. in two cascade members) have that name.
    """
    found = [op for op in get_all_operation_nodes(model) if op.get_friendly_name() == name]
    if len(found) > 1:
        raise RuntimeError(f"the model contains {len(found)} ops named '{name}'; look the op up in one "
                           "member with get_node_by_name(compressed_model.get_model(member_name), name)")
    return found[0] if found else None


def get_all_operation_nodes(model: AnyModel, recursively: bool = True) -> List[ov.Node]:
    """All ops (Parameters, Constants and Results included), model by model, in topological order.

    :param recursively: also list the ops inside the bodies of ``If``, ``Loop`` and ``TensorIterator`` ops
        (each body's ops follow the op that owns it).
    """
    nodes: List[ov.Node] = []
    for member in as_members(model):
        _collect_ops(member["model"], recursively, nodes)
    return nodes


def nx_type_infer(model: AnyModel) -> None:
    """Re-run shape and type inference on every model (after editing ops by hand)."""
    for member in as_members(model):
        member["model"].validate_nodes_and_infer_types()


def as_members(model: Any) -> List[Dict[str, Any]]:
    """The ``[{'name', 'model'}]`` members of a ``CompressedModel``, an ``openvino.Model`` or such a list.

    :raises TypeError: for anything else.
    """
    if isinstance(model, CompressedModel):
        return model.models
    if isinstance(model, ov.Model):
        return [{"name": model.get_friendly_name(), "model": model}]
    if isinstance(model, (list, tuple)) and model and all(
            isinstance(m, Mapping) and isinstance(m.get("model"), ov.Model) for m in model):
        return [{"name": m.get("name", m["model"].get_friendly_name()), "model": m["model"]} for m in model]
    raise TypeError(f"expected a CompressedModel, an openvino.Model or a list of {{'name', 'model': "
                    f"openvino.Model}}, got {type(model).__name__}")


def _collect_ops(model: ov.Model, recursively: bool, nodes: List[ov.Node]) -> None:
    for op in model.get_ordered_ops():
        nodes.append(op)
        if recursively:
            for body in _bodies(op):
                _collect_ops(body, recursively, nodes)


def _bodies(op: ov.Node) -> List[ov.Model]:
    kind = op.get_type_name()
    if kind == "If":
        return [op.get_then_body(), op.get_else_body()]
    if kind in ("Loop", "TensorIterator"):
        return [op.get_function()]
    return []


def _owner(members: List[Dict[str, Any]], node: Hashable) -> ov.Model:
    if len(members) == 1:
        return members[0]["model"]
    owners = [m["model"] for m in members if _lookup_output(m["model"], node) is not None]
    if len(owners) == 1:
        return owners[0]
    if not owners:
        raise KeyError(f"add_outputs: no model has a node {node!r}; models: {[m['name'] for m in members]}")
    raise ValueError(f"add_outputs: several models have a node {node!r}; pass node_names as "
                     "{model_name: [nodes]} to say which")


def _lookup_output(model: ov.Model, node: Hashable) -> Optional[ov.Output]:
    name, port = node if isinstance(node, tuple) else (node, 0)
    for op in model.get_ops():
        if op.get_friendly_name() == name and 0 <= port < op.get_output_size():
            return op.output(port)
    if not isinstance(node, tuple):
        for op in model.get_ops():
            for output in op.outputs():
                if name in output.get_names():
                    return output
    return None


def _find_output(model: ov.Model, node: Hashable) -> ov.Output:
    if not (isinstance(node, str) or (isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], str)
                                      and isinstance(node[1], int))):
        raise TypeError("add_outputs: a node is a friendly name or (friendly_name, output_index), "
                        f"got {node!r}")
    output = _lookup_output(model, node)
    if output is None:
        names = sorted(op.get_friendly_name() for op in model.get_ops()
                       if op.get_type_name() not in ("Constant", "Result"))
        shown = names if len(names) <= 30 else names[:30] + ["..."]
        raise KeyError(f"add_outputs: model '{model.get_friendly_name()}' has no node {node!r} (an op "
                       f"friendly name with an existing output index, or a tensor name); ops: {shown}")
    return output


def _expose(model: ov.Model, output: ov.Output) -> ov.Output:
    for target in output.get_target_inputs():
        if target.get_node().get_type_name() == "Result":
            return target.get_node().output(0)
    label = f"{output.get_node().get_friendly_name()}/sink_port_{output.get_index()}"
    if not output.get_names():
        output.get_tensor().add_names({label})
    result = opset.result(output)
    result.set_friendly_name(label)
    model.add_results([result])
    return result.output(0)
