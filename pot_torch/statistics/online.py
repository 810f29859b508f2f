"""Online aggregation: fold per-batch reducer values into a running result as batches arrive.

``Engine.predict`` returns ``{node: {stat: [value per batch]}}``; kept per batch, that list grows with the
calibration set. For the aggregators that can be computed exactly from a running value (``'min'``, ``'max'``,
``'mean'`` as sum and count) ``collect_statistics`` hands the engine each such statistic's reducer marked with
:func:`stream_into` (derived from its ``StatisticSpec``), and ``IEEngine`` keeps one :class:`OnlineAccumulator` per
statistic instead of the list. The engine then returns a one-element list, ``[accumulator.result()]``, one row
(``[1]`` or ``[1, C]``) that the same aggregator passes through unchanged: ``min([x]) == x``, ``mean([x]) == x``.

The results equal the list-then-aggregate ones exactly for ``'min'`` and ``'max'``; for ``'mean'`` the sum
is kept in float64 in data set order (deterministic), so it differs at most by float64 rounding before the
final float32 cast. Engines that return per-batch lists (custom ``Engine`` subclasses) still work: the
collector aggregates whatever list it gets.

A batch is folded row by row (:func:`fold_rows`: one elementwise operation per sample, the sum starting from
0.0 like ``numpy.sum``), so a statistic's aggregate does not depend on how its values are laid out:
:class:`GroupAccumulator` folds many statistics side by side, one numpy operation per batch for all of them,
and gives each one's aggregate bit for bit as its own :class:`OnlineAccumulator` would.
"""
from __future__ import annotations

import copy
import functools
import types
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["ONLINE_AGGREGATORS", "OnlineAccumulator", "GroupAccumulator", "stream_into", "online_aggregator_of",
           "engine_values", "fold_rows"]

#: Aggregators with an exact online form.
ONLINE_AGGREGATORS = ("min", "max", "mean")
#: The attribute of a statistic function naming the aggregator it may be streamed into.
ONLINE_ATTRIBUTE = "online_aggregate"


def stream_into(fn: Any, aggregator: Optional[str]) -> Any:
    """``fn`` (a statistic function) marked as aggregated by ``aggregator``: a copy carrying the mark, or ``fn``
    itself when ``aggregator`` is not one of :data:`ONLINE_AGGREGATORS` (its values are kept per batch)."""
    if aggregator not in ONLINE_AGGREGATORS:
        return fn
    if isinstance(fn, types.FunctionType):
        marked: Any = functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **kwargs))
    else:
        marked = copy.copy(fn)
    setattr(marked, ONLINE_ATTRIBUTE, aggregator)
    return marked


def online_aggregator_of(fn: Any) -> Optional[str]:
    """The aggregator ``fn`` was marked with by :func:`stream_into`, or ``None``."""
    name = getattr(fn, ONLINE_ATTRIBUTE, None)
    return name if name in ONLINE_AGGREGATORS else None


def engine_values(aggregator: Optional[str], batches: List[Any]) -> List[Any]:
    """What ``IEEngine`` returns for a statistic aggregated by ``aggregator`` whose per-batch values are
    ``batches``: the list itself, or for an aggregator of :data:`ONLINE_AGGREGATORS` the one-row list
    ``[accumulator.result()]`` (used where values are computed rather than measured, e.g. derived from statistics
    taken before a model change)."""
    if aggregator not in ONLINE_AGGREGATORS:
        return list(batches)
    accumulator = OnlineAccumulator(aggregator)
    for batch in batches:
        accumulator.add(batch)
    return [accumulator.result()]


class OnlineAccumulator:
    """The running ``'min'``, ``'max'`` or ``'mean'`` of per-batch values ``[B]`` or ``[B, C]``.

    :param aggregator: one of :data:`ONLINE_AGGREGATORS`.
    :param what: names the statistic in errors.
    """

    def __init__(self, aggregator: str, what: str = "statistic") -> None:
        if aggregator not in ONLINE_AGGREGATORS:
            raise ValueError(f"{what}: aggregator {aggregator!r} has no online form; online aggregators are "
                             f"{', '.join(ONLINE_AGGREGATORS)}")
        self.aggregator = aggregator
        self.what = what
        self._value: Optional[np.ndarray] = None
        self._dtype: Any = None
        self.count = 0

    def add(self, value: Any) -> None:
        """Fold one batch's values (axis 0 = samples) in.

        :raises ValueError: the shape after the batch axis differs from earlier batches.
        """
        rows = np.atleast_1d(np.asarray(value))
        if self._value is not None and rows.shape[1:] != self._value.shape[1:]:
            raise ValueError(f"{self.what}: per-batch statistics must share their shape after the batch axis to "
                             f"be aggregated, got {rows.shape} after batches of shape (B, "
                             f"{', '.join(map(str, self._value.shape[1:]))}); mixing per-tensor and per-channel "
                             "values (or different channel counts) is not allowed")
        if rows.shape[0] == 0:
            return
        part = fold_rows(self.aggregator, rows)[np.newaxis]
        self._value = part if self._value is None else _COMBINE[self.aggregator](self._value, part)
        if self._dtype is None:
            self._dtype = _result_dtype(self.aggregator, rows.dtype)
        self.count += rows.shape[0]

    def merge(self, other: "OnlineAccumulator") -> None:
        """Fold in the aggregate of another part of the data set (a distributed engine's partial result):
        exact for ``'min'`` and ``'max'``; for ``'mean'`` the float64 sums and the counts add.

        :raises ValueError: ``other`` aggregates differently, or its rows have another shape.
        """
        if other.aggregator != self.aggregator:
            raise ValueError(f"{self.what}: cannot merge a running {other.aggregator!r} into a running "
                             f"{self.aggregator!r}; both parts must aggregate the same way")
        if other._value is None:
            return
        if self._value is None:
            self._value, self._dtype, self.count = other._value.copy(), other._dtype, other.count
            return
        if other._value.shape != self._value.shape:
            raise ValueError(f"{self.what}: partial aggregates of shapes {self._value.shape} and "
                             f"{other._value.shape} cannot be merged; every part must measure the same output")
        self._value = _COMBINE[self.aggregator](self._value, other._value)
        self.count += other.count

    @property
    def empty(self) -> bool:
        """True until a non-empty batch was added."""
        return self._value is None

    def result(self) -> np.ndarray:
        """One row, ``[1]`` or ``[1, C]``: the aggregate of every sample added so far.

        :raises ValueError: nothing was added.
        """
        if self._value is None:
            raise ValueError(f"{self.what}: cannot aggregate an empty list of statistics: no batch was measured")
        return _final(self.aggregator, self._value, self.count, self._dtype)

    @classmethod
    def restored(cls, aggregator: str, what: str, value: np.ndarray, dtype: Any, count: int) -> "OnlineAccumulator":
        """An accumulator holding a running ``value`` (one row, ``[1, ...]``: float64 sum for ``'mean'``) of
        ``count`` samples whose values had ``dtype`` (empty when ``count`` is 0), as :meth:`add` would leave it."""
        accumulator = cls(aggregator, what)
        if count:
            accumulator._value, accumulator._dtype, accumulator.count = value, dtype, int(count)
        return accumulator


#: How two running values (or a running value and a batch's fold) combine, per aggregator.
_COMBINE = {"min": np.minimum, "max": np.maximum, "mean": np.add}


def fold_rows(aggregator: str, rows: np.ndarray) -> np.ndarray:
    """The ``'min'``, ``'max'`` or ``'mean'`` fold of a batch's rows (axis 0, at least one row): the minimum or
    maximum in ``rows``' dtype, or the float64 sum (not yet divided). Rows are folded one after the other
    (the sum from 0.0, as ``numpy.sum`` starts), so each element's result depends on its own column only, not
    on what else ``rows`` holds."""
    if aggregator == "mean":
        total = np.zeros(rows.shape[1:], dtype=np.float64)
        for row in rows:
            total += row
        return total
    total = np.array(rows[0])
    for row in rows[1:]:
        _COMBINE[aggregator](total, row, out=total)
    return total


def _result_dtype(aggregator: str, dtype: np.dtype) -> Any:
    """The dtype of an aggregate of values of ``dtype``: the values' own, a mean of integers in float64."""
    if aggregator == "mean" and not np.issubdtype(dtype, np.floating):
        return np.float64
    return dtype


def _final(aggregator: str, value: np.ndarray, count: int, dtype: Any) -> np.ndarray:
    """The aggregate of a running ``value`` over ``count`` samples (a copy)."""
    if aggregator == "mean":
        return np.asarray(value / count, dtype=dtype)
    return value.copy()


class GroupAccumulator:
    """The running ``'min'``, ``'max'`` or ``'mean'`` of several statistics at once, laid side by side.

    Statistic ``i`` takes ``sizes[i]`` columns of a row (its per-sample value, flattened); a batch of all of them,
    ``[B, sum(sizes)]``, is folded in with one numpy operation (:meth:`add_rows`), or one statistic's batch on its
    own (:meth:`add_to`). :meth:`accumulator` gives statistic ``i``'s aggregate as the :class:`OnlineAccumulator`
    that had been given its batches: the same value, bit for bit.

    :param aggregator: one of :data:`ONLINE_AGGREGATORS`.
    :param sizes: the number of values of each statistic's row.
    """

    def __init__(self, aggregator: str, sizes: Sequence[int]) -> None:
        if aggregator not in ONLINE_AGGREGATORS:
            raise ValueError(f"aggregator {aggregator!r} has no online form; online aggregators are "
                             f"{', '.join(ONLINE_AGGREGATORS)}")
        self.aggregator = aggregator
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.counts = np.zeros(len(sizes), dtype=np.int64)
        self._value: Optional[np.ndarray] = None
        self._dtype: Any = None
        self._seen = np.zeros(int(self.bounds[-1]), dtype=bool)  # columns holding a running value

    def add_rows(self, rows: np.ndarray) -> None:
        """Fold in one batch of every statistic: ``rows`` is ``[B, sum(sizes)]``."""
        if rows.shape[0]:
            self._fold(fold_rows(self.aggregator, rows), slice(None), rows.dtype)
            self.counts += rows.shape[0]

    def add_to(self, position: int, rows: np.ndarray) -> None:
        """Fold in one batch of statistic ``position`` alone: ``rows`` is ``[B, ...]`` with ``sizes[position]``
        values per row."""
        if rows.shape[0]:
            columns = slice(int(self.bounds[position]), int(self.bounds[position + 1]))
            self._fold(fold_rows(self.aggregator, rows).reshape(-1), columns, rows.dtype)
            self.counts[position] += rows.shape[0]

    def _fold(self, part: np.ndarray, columns: slice, dtype: np.dtype) -> None:
        if self._value is None:
            self._value = np.empty(self._seen.shape, dtype=part.dtype)
            self._dtype = _result_dtype(self.aggregator, dtype)
        target, seen = self._value[columns], self._seen[columns]
        if seen.all():
            _COMBINE[self.aggregator](target, part, out=target)
            return
        _COMBINE[self.aggregator](target, part, out=target, where=seen)
        np.copyto(target, part, where=~seen)
        seen[...] = True

    def accumulator(self, position: int, shape: Tuple[int, ...], what: str = "statistic") -> OnlineAccumulator:
        """Statistic ``position``'s aggregate as an :class:`OnlineAccumulator` (empty if it saw no batch); its
        rows have ``shape`` (``prod(shape) == sizes[position]``)."""
        count = int(self.counts[position])
        if not count:
            return OnlineAccumulator(self.aggregator, what)
        value = self._value[int(self.bounds[position]):int(self.bounds[position + 1])]  # type: ignore[index]
        return OnlineAccumulator.restored(self.aggregator, what, value.reshape((1, *shape)).copy(), self._dtype,
                                          count)
