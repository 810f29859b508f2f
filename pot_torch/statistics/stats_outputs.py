"""The statistics-output builder: a clone of a model with the outputs a statistics layout reads added.

A node's raw activation is one output for all its ordinary statistic functions; each in-graph reducer adds its
``graph_reduce`` result instead (one per distinct reducer, see :func:`reducer_cache_key`; an abs_max is derived
from the min and max over the same axes when that min is measured too, ``AbsMaxReducer.extreme_partners``). With
``stack=True`` the in-graph results that can be (``f32``, static shape after axis 0) are flattened and concatenated
into one output instead, read once per request and split by views (:class:`StatsStack`).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.node_key import node_key_label, split_node_key
from pot_torch.statistics.graph_reduce import abs_max_from_extremes, named
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


def in_graph_value(fn: Any, output: ov.Output, model: ov.Model) -> ov.Output:
    """The in-graph value of the in-graph statistic ``fn`` on ``output`` of the statistics model ``model`` being
    built: ``fn.graph_reduce_in(model, output)`` for a statistic that reads other inputs of the model too (the
    padding mask, ``statistics.padding``), else ``fn.graph_reduce(output)``."""
    build = getattr(fn, "graph_reduce_in", None)
    return build(model, output) if callable(build) else fn.graph_reduce(output)


class DerivedAbsMax(NamedTuple):
    """An abs_max to derive from the in-graph ``maximum`` and ``minimum`` over the same axes,
    ``|max(maximum, -minimum)|`` (``graph_reduce.abs_max_from_extremes``): built on its own (:meth:`build`), or
    in the stacked output together with all the others, one elementwise op each for all (:func:`_stack_results`)."""

    maximum: ov.Output
    minimum: ov.Output

    def build(self) -> ov.Output:
        """The abs_max as its own output."""
        name = f"{self.maximum.get_node().get_friendly_name()}/abs_max"
        return abs_max_from_extremes(self.maximum, self.minimum, name)


#: The in-graph value of a statistic: an output, or an abs_max still to derive.
InGraph = Union[ov.Output, DerivedAbsMax]


class _InGraphValues:
    """The in-graph values of the statistics of one op ``output`` of the statistics ``model`` being built, each kind
    built once. An abs_max whose min over the same axes is measured too (``extreme_partners``: its min and max
    reducers) is a :class:`DerivedAbsMax` of that min and the max: the same numbers, without a pass writing ``|x|``
    (or a masked copy of it) over the activation.

    :param fns: ``(fn, stat_kind(fn))`` of the output's statistics.
    """

    def __init__(self, output: ov.Output, model: ov.Model, fns: List[Tuple[Any, Hashable]]) -> None:
        self.output, self.model = output, model
        self._fn_of = {kind: fn for fn, kind in reversed(fns) if kind is not None}  # the first fn of each kind
        self._built: Dict[Hashable, InGraph] = {}

    def get(self, kind: Hashable, fn: Any = None) -> InGraph:
        """The in-graph value of the statistics of ``kind`` (those of the output's, else ``fn``'s: a partner)."""
        if kind not in self._built:
            fn = self._fn_of.get(kind, fn)
            partners = extreme_partners_of(fn, self.output)
            if partners is not None and stat_kind(partners[0]) in self._fn_of:
                minimum, maximum = (self.get(stat_kind(partner), partner) for partner in partners)
                self._built[kind] = DerivedAbsMax(maximum, minimum)  # type: ignore[arg-type]
            else:
                self._built[kind] = in_graph_value(fn, self.output, self.model)
        return self._built[kind]


def extreme_partners_of(fn: Any, output: ov.Output) -> Optional[Tuple[Any, Any]]:
    """The in-graph min and max statistics an abs_max statistic ``fn`` can be derived from on ``output``
    (its ``extreme_partners``), else ``None``."""
    partners = getattr(fn, "extreme_partners", None)
    return partners(output) if callable(partners) else None


def stat_kind(fn: Any) -> Hashable:
    """Which output a statistic function reads: ``None`` (raw activation) or its reducer's cache key."""
    return reducer_cache_key(fn) if is_inplace_reducer(fn) else None


#: A source of statistics: ``(node_key, stat_kind(fn))``.
Slot = Tuple[Hashable, Hashable]


@dataclass(frozen=True)
class StackedPiece:
    """One in-graph result inside the stacked output: its shape is ``(rows, *shape)``."""

    shape: Tuple[int, ...]  # static, after axis 0
    rows: Optional[int]  # static size of axis 0, or None: read from the stack's rows output

    @property
    def size(self) -> int:
        """The number of values of one row."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class StatsStack:
    """In-graph results flattened and concatenated into one ``f32`` output, in ``pieces`` order (each piece
    ``rows * size`` values, row-major); ``rows_output`` holds the axis-0 sizes of the pieces whose axis 0 is
    dynamic (``i64``, in their order), ``None`` when every piece's is static."""

    output: int
    rows_output: Optional[int]
    pieces: List[StackedPiece] = field(default_factory=list)


@dataclass
class StatsOutputs:
    """A model with statistics outputs added, and where each source of statistics is among its outputs.

    ``index[(node_key, stat_kind(fn))]`` is the output index of the raw activation of ``node_key`` for an
    ordinary function, or of an in-graph reducer's result; an in-graph result that went into the stacked output
    is ``stack.pieces[piece_of[slot]]`` instead.
    """

    model: ov.Model
    index: Dict[Slot, int] = field(default_factory=dict)
    reducers: List[Any] = field(default_factory=list)  # keeps id-keyed reducers alive while cached
    stack: Optional[StatsStack] = None
    piece_of: Dict[Slot, int] = field(default_factory=dict)

    def source(self, node_key: Hashable, kind: Hashable) -> int:
        """The output index of ``node_key``'s value of ``kind`` (see :func:`stat_kind`; the stacked output's for
        a stacked piece)."""
        slot = (node_key, kind)
        if slot in self.piece_of:
            return self.stack.output  # type: ignore[union-attr]
        return self.index[slot]

    def piece(self, node_key: Hashable, kind: Hashable) -> Optional[int]:
        """The position in ``stack.pieces`` of ``node_key``'s value of ``kind``, or ``None`` (its own output)."""
        return self.piece_of.get((node_key, kind))


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


def add_stats_outputs(model: ov.Model, stats_layout: Mapping[Hashable, Mapping[str, Callable]],
                      stack: bool = False) -> StatsOutputs:
    """Clone ``model`` and add the outputs ``stats_layout`` needs after its own outputs.

    A node's raw activation is added once, for all its ordinary statistic functions; each in-graph reducer
    (:func:`is_inplace_reducer`) adds its ``graph_reduce`` result instead (an abs_max next to a min over the same
    axes: derived from that min and the max, see :class:`_InGraphValues`). ``model`` is not modified.

    :param stack: put the in-graph results that are ``f32`` with a static shape after axis 0 into one
        stacked output (:class:`StatsStack`) instead of one output each; the others keep their own.
    :raises ValueError: a node key names no op (the message lists close names) or a missing output.
    """
    kinds = [(node_key, [(fn, stat_kind(fn)) for fn in stats.values()]) for node_key, stats in stats_layout.items()]
    clone = model.clone()
    by_name = ops_by_name(clone)
    plan = StatsOutputs(clone)
    results: List[ov.Node] = []
    stacked: List[ov.Output] = []
    derived: Dict[Slot, DerivedAbsMax] = {}  # stacked after ``stacked``, all at once
    for node_key, fns in kinds:
        output = _find_output(by_name, node_key, model.get_friendly_name())
        label = str(node_key_label(node_key))
        in_graph = _InGraphValues(output, clone, fns)
        for fn, kind in fns:
            slot = (node_key, kind)
            if slot in plan.index or slot in plan.piece_of or slot in derived:
                continue
            inplace = kind is not None
            value = in_graph.get(kind) if inplace else output
            if inplace:
                plan.reducers.append(fn)
            if inplace and stack and isinstance(value, DerivedAbsMax) and _stackable(value.maximum):
                derived[slot] = value
                continue
            if isinstance(value, DerivedAbsMax):
                value = value.build()
            if inplace and stack and _stackable(value):
                plan.piece_of[slot] = len(stacked)
                stacked.append(value)
                continue
            result = ops.result(value)
            result.set_friendly_name(f"{label}/stat_result_{len(results)}")
            plan.index[slot] = len(model.outputs) + len(results)
            results.append(result)
    plan.piece_of.update({slot: len(stacked) + position for position, slot in enumerate(derived)})
    if stacked or derived:
        plan.stack, stack_results = _stack_results(stacked, list(derived.values()), len(model.outputs) + len(results))
        results.extend(stack_results)
    if results:
        clone.add_results(results)
    return plan


def _stackable(value: ov.Output) -> bool:
    """Whether an in-graph result can go into the stacked output: ``f32``, rank >= 1, static after axis 0."""
    shape = value.get_partial_shape()
    return (value.get_element_type() == ov.Type.f32 and shape.rank.is_static and shape.rank.get_length() >= 1
            and all(dim.is_static for dim in list(shape)[1:]))


def _stack_results(values: List[ov.Output], derived: List[DerivedAbsMax], first_index: int
                   ) -> Tuple[StatsStack, List[ov.Node]]:
    """The stacked output of ``values`` and then ``derived`` (and the rows output when an axis 0 is dynamic), as
    Results numbered from ``first_index``. The abs_max values of ``derived`` are computed all at once, from their
    maxima and minima concatenated: one small elementwise op each instead of one per statistic (each of which the
    CPU plugin would compile as a snippets kernel of its own)."""
    flat_shape = ops.constant(np.array([-1], np.int64))
    flat_shape.set_friendly_name("stat_stack/flat_shape")
    first = ops.constant(np.array([0], np.int64))
    first.set_friendly_name("stat_stack/first")
    axis = ops.constant(np.array(0, np.int64))
    axis.set_friendly_name("stat_stack/axis")
    stack = StatsStack(first_index, None)
    flats = [_flat(value, flat_shape, f"stat_stack/{position}") for position, value in enumerate(values)]
    if derived:
        maxima, minima = ([_flat(getattr(value, side), flat_shape, f"stat_stack/derived/{position}/{side}")
                           for position, value in enumerate(derived)] for side in ("maximum", "minimum"))
        flats.append(abs_max_from_extremes(_joined(maxima, "stat_stack/derived/maximum"),
                                           _joined(minima, "stat_stack/derived/minimum"), "stat_stack/derived/abs_max"))
    dynamic_rows = []
    for position, value in enumerate(values + [value.maximum for value in derived]):
        dims = list(value.get_partial_shape())
        shape = tuple(dim.get_length() for dim in dims[1:])
        if dims[0].is_static:
            stack.pieces.append(StackedPiece(shape, dims[0].get_length()))
            continue
        stack.pieces.append(StackedPiece(shape, None))
        rows = ops.gather(ops.shape_of(value, ov.Type.i64), first, axis)
        rows.set_friendly_name(f"stat_stack/{position}/rows")
        dynamic_rows.append(rows.output(0))
    results = [_named_result(flats, "stat_stack")]
    if dynamic_rows:
        stack.rows_output = first_index + 1
        results.append(_named_result(dynamic_rows, "stat_stack/rows"))
    return stack, results


def _flat(value: ov.Output, flat_shape: ov.Node, name: str) -> ov.Output:
    """``value`` as one axis: itself when it has one (a per-tensor result), else reshaped to ``flat_shape``
    (``[-1]``) by ``{name}/flat``."""
    if value.get_partial_shape().rank.get_length() == 1:
        return value
    return named(ops.reshape(value, flat_shape, special_zero=False), f"{name}/flat")


def _joined(values: List[ov.Output], name: str) -> ov.Output:
    """``values`` concatenated on axis 0 (``{name}/concat``), or the one value itself."""
    return values[0] if len(values) == 1 else named(ops.concat(values, 0), f"{name}/concat")


def _named_result(values: List[ov.Output], name: str) -> ov.Node:
    """A Result named ``name`` of ``values`` concatenated on axis 0."""
    joined = ops.concat(values, 0)
    joined.set_friendly_name(f"{name}/concat")
    result = ops.result(joined)
    result.set_friendly_name(name)
    return result
