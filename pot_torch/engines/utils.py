"""Helpers for inference engines, under the names POT's ``engines/utils.py`` gave custom engines.

Statistics are accumulated as ``{node_key: {stat_name: [(order, value), ...]}}`` by ``append_stats`` and
turned into ``{node_key: {stat_name: [value, ...]}}`` (sorted by ``order``) by ``process_accumulated_stats``.
``add_stats_outputs`` adds the outputs a statistics layout needs to a clone of a model.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.statistics.online import ONLINE_ATTRIBUTE

_SINK_PORT = re.compile(r"/sink_port_\d+")


def get_clean_name(name: str) -> str:
    """``name`` without the ``/sink_port_N`` suffixes Model Optimizer gave Result and Parameter names."""
    return _SINK_PORT.sub("", name)


def convert_output_key(key: Hashable) -> Hashable:
    """A node key as a text name: ``'name'`` stays, ``('name', port)`` becomes ``'name.port'``."""
    if not isinstance(key, tuple):
        return key
    if len(key) != 2:
        raise ValueError(f"a statistics node key is a name or a (name, output_index) pair, got {key!r}")
    return f"{key[0]}.{key[1]}"


def split_node_key(key: Hashable) -> Tuple[str, int]:
    """``(friendly_name, output_index)`` of a node key (a friendly name means output 0)."""
    if isinstance(key, str):
        return key, 0
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], int):
        return key[0], key[1]
    raise ValueError(f"a statistics node key is an op friendly name or (friendly_name, output_index), got {key!r}")


def is_inplace_reducer(fn: Any) -> bool:
    """Whether ``fn`` is computed inside the graph: ``inplace = True`` and a ``graph_reduce`` method."""
    return getattr(fn, "inplace", False) is True and callable(getattr(fn, "graph_reduce", None))


def output_names(outputs: Sequence[Any]) -> List[str]:
    """Names of model outputs for ``postprocess_output``: as POT named them where the model allows.

    POT used the Result's friendly name without ``/sink_port_N``, which was also the output's tensor name. A
    model whose Result names are not tensor names (``Result_123``) gets its outputs' (first sorted) tensor
    name instead; an output without tensor names keeps the cleaned Result name. Names are unique.
    """
    names = []
    for output in outputs:
        result_name = get_clean_name(output.get_node().get_friendly_name())
        tensor_names = sorted(output.get_names())
        names.append(result_name if result_name in tensor_names or not tensor_names else tensor_names[0])
    if len(set(names)) != len(names):
        names = [output.get_node().get_friendly_name() for output in outputs]
    return names


def process_raw_output(raw_output: Mapping[Any, Any]) -> Dict[str, Any]:
    """Key raw inference results by clean name: each tensor name of an output key, or a text key as is."""
    result: Dict[str, Any] = {}
    for key, value in raw_output.items():
        if isinstance(key, str):
            result[get_clean_name(key)] = value
            continue
        for name in key.get_names():
            result[get_clean_name(name)] = value
    return result


def append_stats(accumulated_layer_stats: Dict[Hashable, Dict[str, list]], stats_layout: Mapping[Hashable, Mapping],
                 value: Mapping[Any, Any], dataset_index: Any) -> None:
    """Apply the layout's functions to raw outputs and append ``(dataset_index, result)`` per statistic.

    :param accumulated_layer_stats: ``{node_key: {stat_name: [(order, value)]}}``, updated in place.
    :param stats_layout: ``{node_key: {stat_name: fn}}``.
    :param value: inference results keyed by output (tensor names are used) or by text name; a node key
        ``('name', i)`` is looked up as ``'name.i'``.
    :param dataset_index: the order key of these values (``process_accumulated_stats`` sorts by it).
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"append_stats takes inference results as a mapping {{output: array}}, got "
                        f"{type(value).__name__}; POT's sequential (list) results are not supported, append "
                        "each result separately")
    outputs = process_raw_output(value)
    for node_key, stats in stats_layout.items():
        layer_stats = accumulated_layer_stats.setdefault(node_key, {name: [] for name in stats})
        name = convert_output_key(node_key)
        if name not in outputs:
            continue
        for stat_name, fn in stats.items():
            layer_stats.setdefault(stat_name, []).append((dataset_index, fn(outputs[name])))


def process_accumulated_stats(accumulated_stats: Dict[Hashable, Dict[str, list]],
                              stat_names_aliases: Optional[Mapping[Hashable, Hashable]] = None
                              ) -> Dict[Hashable, Dict[str, list]]:
    """Sort ``(order, value)`` pairs by order (stably), keep the values, rename keys by ``stat_names_aliases``."""
    processed = {
        node_key: {stat: [v for _, v in sorted(pairs, key=lambda pair: pair[0])] for stat, pairs in stats.items()}
        for node_key, stats in accumulated_stats.items()
    }
    if stat_names_aliases is not None:
        processed = {stat_names_aliases.get(key, key): stats for key, stats in processed.items()}
    return processed


def update_stats(stats_layout: Dict[Hashable, Any], stat_aliases: Dict[str, Dict[Hashable, Any]], old_key: Hashable,
                 new_key: Hashable) -> None:
    """Rename ``old_key`` to ``new_key`` in a layout and in every algorithm's entry of ``stat_aliases``."""
    stats_layout[new_key] = stats_layout.pop(old_key)
    for aliases in stat_aliases.values():
        if old_key in aliases:
            aliases[new_key] = aliases.pop(old_key)


def restore_original_node_names(node2result: Mapping[Hashable, Hashable], accumulated_stats: Dict[Hashable, Any],
                                stats_layout: Dict[Hashable, Any], stat_aliases: Dict[str, Dict[Hashable, Any]]) -> None:
    """Rename statistics collected under output names back to the node names they were asked for."""
    if not node2result or not stats_layout:
        return
    for node_name, result_name in node2result.items():
        accumulated_stats[node_name] = accumulated_stats.pop(result_name)
        update_stats(stats_layout, stat_aliases, result_name, node_name)


def align_stat_names_with_results(result_names: Sequence[str], nodes_name: Iterable[Hashable],
                                  node2result: Dict[Hashable, Hashable], stats_layout: Dict[Hashable, Any],
                                  stat_aliases: Dict[str, Dict[Hashable, Any]]) -> None:
    """Where a node name is not an output name but ``'<name>.0'`` is, collect its statistics under the latter.

    Records the renaming in ``node2result`` so ``restore_original_node_names`` can undo it.
    """
    if not node2result:
        return
    for name in nodes_name:
        if isinstance(name, str) and name not in result_names and (name, 0) not in stats_layout:
            with_port = f"{name}.0"
            if with_port not in result_names:
                raise KeyError(f"neither '{name}' nor '{with_port}' is an output name; outputs: {list(result_names)}")
            update_stats(stats_layout, stat_aliases, name, with_port)
            node2result[name] = with_port


def add_tensor_names(outputs: Sequence[Any], names: Iterable[Hashable]) -> None:
    """Give each output the tensor name of its node key (``'name'`` or ``'name.port'``)."""
    for output, name in zip(outputs, names):
        output.get_tensor().add_names({str(convert_output_key(name))})


def cast_friendly_names(outputs: Sequence[Any]) -> None:
    """Add each output's node friendly name to its tensor names."""
    for output in outputs:
        output.get_tensor().add_names({output.get_node().get_friendly_name()})


def collect_model_outputs(model: ov.Model) -> List[str]:
    """All tensor names of ``model``'s outputs."""
    return [name for output in model.outputs for name in sorted(output.get_names())]


def reducer_cache_key(fn: Any) -> Hashable:
    """A key equal for in-graph reducers that build the same subgraph (same class and attributes; the online
    aggregator mark of ``pot_torch.statistics.online`` does not change the subgraph)."""
    try:
        attributes = {name: value for name, value in vars(fn).items() if name != ONLINE_ATTRIBUTE}
        key = (type(fn).__module__, type(fn).__qualname__, tuple(sorted(attributes.items())))
        hash(key)
        return key
    except TypeError:
        return ("id", id(fn))


def stat_kind(fn: Any) -> Hashable:
    """Which output a statistic function reads: ``None`` (raw activation) or its reducer's cache key."""
    return reducer_cache_key(fn) if is_inplace_reducer(fn) else None


@dataclass
class StatsOutputs:
    """A model with statistics outputs added, and where each source of statistics is among its outputs.

    ``index[(node_key, stat_kind(fn))]`` is the output index of the raw activation of ``node_key`` for an
    ordinary function, or of an in-graph reducer's result.
    """

    model: ov.Model
    index: Dict[Tuple[Hashable, Hashable], int] = field(default_factory=dict)
    reducers: List[Any] = field(default_factory=list)  # keeps id-keyed reducers alive while cached

    def source(self, node_key: Hashable, kind: Hashable) -> int:
        """The output index of ``node_key``'s value of ``kind`` (see :func:`stat_kind`)."""
        return self.index[(node_key, kind)]


def _find_output(ops_by_name: Dict[str, ov.Node], node_key: Hashable, model_name: str) -> ov.Output:
    name, port = split_node_key(node_key)
    if name not in ops_by_name:
        close = difflib.get_close_matches(name, list(ops_by_name), n=5)
        raise ValueError(f"statistics asked for node '{name}', which is not an op of model '{model_name}'; "
                         f"closest op names: {close}")
    node = ops_by_name[name]
    if not 0 <= port < node.get_output_size():
        raise ValueError(f"statistics asked for output {port} of '{name}', which has {node.get_output_size()} "
                         "output(s)")
    return node.output(port)


def add_stats_outputs(model: ov.Model, stats_layout: Mapping[Hashable, Mapping[str, Callable]]) -> StatsOutputs:
    """Clone ``model`` and add the outputs ``stats_layout`` needs after its own outputs.

    A node's raw activation is added once, for all its ordinary statistic functions; each in-graph reducer
    (:func:`is_inplace_reducer`) adds its ``graph_reduce`` result instead. ``model`` is not modified.

    :raises ValueError: a node key names no op (the message lists close names) or a missing output.
    """
    kinds = [(node_key, [(fn, stat_kind(fn)) for fn in stats.values()]) for node_key, stats in stats_layout.items()]
    clone = model.clone()
    ops_by_name = {op.get_friendly_name(): op for op in clone.get_ops()}
    plan = StatsOutputs(clone)
    results = []
    for node_key, fns in kinds:
        output = _find_output(ops_by_name, node_key, model.get_friendly_name())
        label = str(convert_output_key(node_key))
        for fn, kind in fns:
            slot = (node_key, kind)
            if slot in plan.index:
                continue
            inplace = kind is not None
            value = fn.graph_reduce(output) if inplace else output
            result = ops.result(value)
            result.set_friendly_name(f"{label}/stat_result_{len(results)}")
            plan.index[slot] = len(model.outputs) + len(results)
            results.append(result)
            if inplace:
                plan.reducers.append(fn)
    if results:
        clone.add_results(results)
    return plan


def copy_if_shared(value: Any, buffer: np.ndarray) -> Any:
    """``value`` itself, or a copy when it is an array sharing memory with ``buffer`` (a reused output)."""
    if isinstance(value, np.ndarray) and np.may_share_memory(value, buffer):
        return value.copy()
    return value
