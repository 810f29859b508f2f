"""Online aggregation: fold per-batch reducer values into a running result as batches arrive.

``Engine.predict`` returns ``{node: {stat: [value per batch]}}`` and the algorithms aggregate afterwards; kept
per batch, that list grows with the calibration set. For the aggregators that can be computed exactly from
a running value (``'min'``, ``'max'``, ``'mean'`` as sum and count) an algorithm marks its reducer with
:func:`stream_into` and ``IEEngine`` keeps one :class:`OnlineAccumulator` per statistic instead of the list.
The engine then returns a one-element list, ``[accumulator.result()]``, one row (``[1]`` or ``[1, C]``) that
the same aggregator passes through unchanged: ``min([x]) == x``, ``mean([x]) == x``.

The results equal the list-then-aggregate ones exactly for ``'min'`` and ``'max'``; for ``'mean'`` the sum
is kept in float64 in data set order (deterministic), so it differs at most by float64 rounding before the
final float32 cast. Engines that return per-batch lists (custom ``Engine`` subclasses) still work: the
algorithms aggregate whatever list they get.
"""
from __future__ import annotations

import copy
import functools
import types
from typing import Any, List, Optional

import numpy as np

__all__ = ["ONLINE_AGGREGATORS", "OnlineAccumulator", "stream_into", "online_aggregator_of", "kept_per_batch",
           "engine_values"]

#: Aggregators with an exact online form.
ONLINE_AGGREGATORS = ("min", "max", "mean")
#: The attribute of a statistic function naming the aggregator it may be streamed into.
ONLINE_ATTRIBUTE = "online_aggregate"


def stream_into(fn: Any, aggregator: str) -> Any:
    """Mark the statistic function ``fn`` (a reducer) as aggregated by ``aggregator``; returns ``fn``.

    Only aggregators of :data:`ONLINE_AGGREGATORS` are marked; others leave ``fn`` unmarked (per-batch lists).
    """
    if aggregator in ONLINE_AGGREGATORS:
        setattr(fn, ONLINE_ATTRIBUTE, aggregator)
    return fn


def kept_per_batch(fn: Any) -> Any:
    """``fn`` itself if it is not marked by :func:`stream_into`, else a copy of it without the mark (its values
    are then returned per batch, e.g. to be cut to a prefix of the samples)."""
    if online_aggregator_of(fn) is None:
        return fn
    if isinstance(fn, types.FunctionType):
        copied: Any = functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **kwargs))
    else:
        copied = copy.copy(fn)
    copied.__dict__.pop(ONLINE_ATTRIBUTE, None)
    return copied


def online_aggregator_of(fn: Any) -> Optional[str]:
    """The aggregator ``fn`` was marked with by :func:`stream_into`, or ``None``."""
    name = getattr(fn, ONLINE_ATTRIBUTE, None)
    return name if name in ONLINE_AGGREGATORS else None


def engine_values(fn: Any, batches: List[Any]) -> List[Any]:
    """What ``IEEngine`` returns for statistic ``fn`` whose per-batch values are ``batches``: the list itself, or
    for a function marked by :func:`stream_into` the one-row list ``[accumulator.result()]`` (used where values
    are computed rather than measured, e.g. derived from statistics taken before a model change)."""
    aggregator = online_aggregator_of(fn)
    if aggregator is None:
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
        if self.aggregator == "mean":
            part = np.sum(rows, axis=0, dtype=np.float64, keepdims=True)
            self._value = part if self._value is None else self._value + part
            if self._dtype is None:
                self._dtype = rows.dtype if np.issubdtype(rows.dtype, np.floating) else np.float64
        else:
            reduce, combine = (np.min, np.minimum) if self.aggregator == "min" else (np.max, np.maximum)
            part = reduce(rows, axis=0, keepdims=True)
            self._value = part if self._value is None else combine(self._value, part)
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
        if self.aggregator == "mean":
            self._value = self._value + other._value
        else:
            self._value = (np.minimum if self.aggregator == "min" else np.maximum)(self._value, other._value)
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
        if self.aggregator == "mean":
            return np.asarray(self._value / self.count, dtype=self._dtype)
        return self._value.copy()
