"""The statistics-output builder: a clone of a model with the outputs a statistics layout reads added.

A node's raw activation is one output for all its ordinary statistic functions; each in-graph reducer adds its
``graph_reduce`` result instead (one per distinct reducer, see :func:`reducer_cache_key`).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Mapping, Tuple

import openvino as ov
import openvino.opset13 as ops

from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.node_key import node_key_label, split_node_key
from pot_torch.statistics.online import ONLINE_ATTRIBUTE


def is_inplace_reducer(fn: Any) -> bool:
    """Whether ``fn`` is computed inside the graph: ``inplace = True`` and a ``graph_reduce`` method."""
    return getattr(fn, "inplace", False) is True and callable(getattr(fn, "graph_reduce", None))


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


def _find_output(by_name: Dict[str, ov.Node], node_key: Hashable, model_name: str) -> ov.Output:
    name, port = split_node_key(node_key)
    if name not in by_name:
        close = difflib.get_close_matches(name, list(by_name), n=5)
        raise ValueError(f"statistics asked for node '{name}', which is not an op of model '{model_name}'; "
                         f"closest op names: {close}")
    node = by_name[name]
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
    by_name = ops_by_name(clone)
    plan = StatsOutputs(clone)
    results = []
    for node_key, fns in kinds:
        output = _find_output(by_name, node_key, model.get_friendly_name())
        label = str(node_key_label(node_key))
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
