"""Per-batch reducers: turn one batch of an activation into a small statistic, keeping the batch axis.

A reducer is called on a batch output (numpy, batch axis 0) and returns ``float32`` values per sample:
shape ``[B]`` per tensor (every axis but 0 reduced) or ``[B, C]`` per channel (every axis but 0 and
``channel_axis`` reduced). Keeping the batch axis lets the values of all batches be concatenated per sample
and then combined by an aggregator (:mod:`pot_torch.statistics.aggregators`). Axis 0 is taken as the batch
only when its size equals the number of samples fed (:func:`is_per_sample`); otherwise (sequence-first
outputs such as ``[T, B, C]``) the whole batch output is one value, ``[1]`` / ``[1, C]``
(:func:`per_batch_value`).

Every reducer can also build the same reduction into the OpenVINO model (:meth:`Reducer.graph_reduce`);
``IEEngine`` does that when ``reducer.inplace`` is True. At ``f32`` inference precision the in-graph numbers
equal the numpy ones exactly for min, max, abs_max and the quantiles (``TopK`` + numpy's interpolation); the
mean differs by float32 rounding of the sum only (a few ulp). Quantiles in-graph need the reduced dimensions
to be static: check :meth:`Reducer.can_graph_reduce` before building.

Quantiles follow ``numpy.quantile`` (linear interpolation). POT configures them with ``outlier_prob``: the
``'min'`` side of a range estimator uses ``q = outlier_prob`` and the ``'max'`` side ``q = 1 - outlier_prob``.
:func:`make_reducer` takes either that pair (``outlier_prob=..., side='min'|'max'``) or the fraction itself
(``quantile=q``); :func:`pot_quantile` gives the rule on its own.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.statistics.graph_reduce import (
    output_label, quantile_output, reduce_output, static_rank, static_size)
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

__all__ = [
    "is_per_sample", "per_batch_value",
    "Reducer", "MinReducer", "MaxReducer", "AbsMaxReducer", "MeanReducer", "QuantileReducer",
    "AbsQuantileReducer", "REDUCER_TYPES", "make_reducer", "pot_quantile",
]


def is_per_sample(rows: int, samples: int, what: str = "activation") -> bool:
    """Whether axis 0 of an output holds the samples of the batch fed: only when its size ``rows`` equals
    ``samples``. Otherwise (axis 0 holds tokens, as in sequence-first attention ``[T, B, C]`` or ``[T, C]``)
    the whole output is one batch-level value; with ``samples`` > 1 that value mixes samples, which is logged
    once per output (feed batches of 1, ``stat_batch_size`` 1, to keep the samples apart).
    """
    if rows == samples:
        return True
    if samples > 1:
        _warn_mixed_samples(what, rows, samples)
    return False


@functools.lru_cache(maxsize=None)
def _warn_mixed_samples(what: str, rows: int, samples: int) -> None:
    logger.warning("statistics of %s: axis 0 has %d entries for a batch of %d samples, so it is not the "
                   "batch axis; the whole batch output is reduced as one value, mixing its samples. Use "
                   "stat_batch_size 1 to measure each sample on its own", what, rows, samples)


class Reducer:
    """Reduces one batch output (numpy, batch axis 0) keeping the batch axis: per-tensor -> ``[B]``,
    per-channel -> ``[B, C]``.

    :param per_channel: keep ``channel_axis`` as well as the batch axis.
    :param channel_axis: the channel axis of the activation (negative counts from the end, e.g. ``-1`` for
        transformer activations ``[B, T, C]``); it must not resolve to the batch axis 0.
    :param inplace: ask the engine to compute :meth:`graph_reduce` inside the model. Forced to False when
        the reducer has no in-graph form (:attr:`supports_inplace`).
    """

    #: POT's name of the statistic type (``'min'``, ``'abs_quantile'``...).
    stat_type: str = ""

    def __init__(self, per_channel: bool = False, channel_axis: int = 1, inplace: bool = False):
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: channel_axis must be an int (e.g. 1 for NCHW, -1 for "
                            f"[B, T, C]), got {channel_axis!r}")
        self.per_channel = bool(per_channel)
        self.channel_axis = int(channel_axis)
        self._inplace = False
        self.inplace = inplace

    # ----------------------------------------------------------------------------------------------- options
    @property
    def supports_inplace(self) -> bool:
        """Whether :meth:`graph_reduce` can compute this statistic in the OpenVINO graph."""
        return True

    @property
    def inplace(self) -> bool:
        """Compute the statistic in-graph (always False when :attr:`supports_inplace` is False)."""
        return self._inplace

    @inplace.setter
    def inplace(self, value: bool) -> None:
        self._inplace = bool(value) and self.supports_inplace

    def _params(self) -> Dict[str, Any]:
        return {"per_channel": self.per_channel, "channel_axis": self.channel_axis, "inplace": self.inplace}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params() == other._params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._params().items())))

    # ------------------------------------------------------------------------------------------------- axes
    def resolved_channel_axis(self, rank: int) -> Optional[int]:
        """The non-negative channel axis for an activation of ``rank`` (rank 0 counts as 1), ``None`` per
        tensor.

        :raises ValueError: per channel, when ``channel_axis`` is not an axis other than the batch axis.
        """
        if not self.per_channel:
            return None
        rank = max(rank, 1)
        channel = self.channel_axis + rank if self.channel_axis < 0 else self.channel_axis
        if not 1 <= channel < rank:
            valid = f"1..{rank - 1} or -{rank - 1}..-1" if rank > 1 else "none: it has only the batch axis"
            raise ValueError(
                f"{self!r}: channel_axis {self.channel_axis} does not fit an activation of rank {rank}; "
                f"valid channel axes (axis 0 is the batch) are {valid}. Pass the right channel_axis or use "
                f"per_channel=False")
        return channel

    def reduction_axes(self, rank: int) -> Tuple[int, ...]:
        """Axes reduced for an activation of ``rank`` (rank 0 counts as 1): all but 0 per tensor, all but 0
        and the channel axis per channel."""
        channel = self.resolved_channel_axis(rank)
        return tuple(axis for axis in range(1, max(rank, 1)) if axis != channel)

    # ---------------------------------------------------------------------------------------------- compute
    def __call__(self, x: np.ndarray, samples: Optional[int] = None, what: str = "activation") -> np.ndarray:
        """Reduce one batch output; returns ``float32`` ``[B]`` (per tensor) or ``[B, C]`` (per channel).

        :param samples: the number of samples in the batch fed. When given and axis 0 of ``x`` has another
            size (axis 0 holds tokens, as in sequence-first attention ``[T, B, C]``), the whole output is one
            batch-level value ``[1]`` / ``[1, C]`` (see :func:`is_per_sample`).
        :param what: names the output in the warning :func:`is_per_sample` logs.
        """
        x = np.asarray(x)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.ndim == 0:
            x = x.reshape(1)
        try:
            axes = self.reduction_axes(x.ndim)
        except ValueError as error:
            raise ValueError(f"{error} (activation shape {x.shape})") from None
        if samples is not None and not is_per_sample(x.shape[0], samples, what):
            x, axes = x[np.newaxis], (1, *(axis + 1 for axis in axes))  # axis 0 joins the reduced axes
        return np.asarray(self._reduce(x, axes), dtype=np.float32)

    def merge_rows(self, rows: np.ndarray) -> np.ndarray:
        """Combine the in-graph values of every row of axis 0 (``[R]`` / ``[R, C]``, each row reduced over the
        same number of elements) into the value of the whole output, ``[1]`` / ``[1, C]``: used when axis 0 is
        not the batch (see :func:`is_per_sample`).

        :raises ValueError: the statistic cannot be combined from per-row values (quantiles).
        """
        return self._merge_rows(np.asarray(rows, dtype=np.float32))

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define how rows combine")

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define its reduction")

    def graph_reduce(self, output: ov.Output, name: Optional[str] = None) -> ov.Output:
        """Build the same reduction into the OpenVINO graph on ``output``; returns the ``f32`` result.

        :param output: the activation to measure (its rank must be static).
        :param name: friendly name of the result op (default: derived from ``output`` and the reducer).
        :raises NotImplementedError: when the reducer has no in-graph form.
        :raises ValueError: when the shape of ``output`` does not allow it (see :meth:`can_graph_reduce`).
        """
        if not self.supports_inplace:
            raise NotImplementedError(f"{self!r} has no in-graph form; call it on the numpy activation "
                                      f"instead")
        rank = static_rank(output, what=repr(self))
        return self._build_graph(output, rank, name or f"{output_label(output)}/{self._graph_tag()}")

    def can_graph_reduce(self, output: ov.Output) -> bool:
        """Whether :meth:`graph_reduce` can be built on ``output`` (static rank, a valid channel axis)."""
        shape = output.get_partial_shape()
        if not self.supports_inplace or shape.rank.is_dynamic:
            return False
        try:
            self.reduction_axes(shape.rank.get_length())
        except ValueError:
            return False
        return True

    def _build_graph(self, output: ov.Output, rank: int, name: str) -> ov.Output:
        return reduce_output(output, self.stat_type, self.reduction_axes(rank), name)

    def _graph_tag(self) -> str:
        granularity = f"channel{self.channel_axis}" if self.per_channel else "tensor"
        return f"stat_{self.stat_type}_{granularity}"


class MinReducer(Reducer):
    """Minimum per sample (per tensor) or per sample and channel."""

    stat_type = "min"

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        return np.min(x, axis=axes) if axes else x

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.min(rows, axis=0, keepdims=True)


class MaxReducer(Reducer):
    """Maximum per sample (per tensor) or per sample and channel."""

    stat_type = "max"

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        return np.max(x, axis=axes) if axes else x

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.max(rows, axis=0, keepdims=True)


class AbsMaxReducer(Reducer):
    """Maximum of ``|x|`` per sample (per tensor) or per sample and channel."""

    stat_type = "abs_max"

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        if not axes:
            return np.abs(x)
        # max(|x|) == max(max(x), -min(x)) exactly, without an |x| copy of the activation
        return np.maximum(np.max(x, axis=axes), -np.min(x, axis=axes))

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.max(rows, axis=0, keepdims=True)

    def extreme_partners(self, output: ov.Output) -> Optional[Tuple[MinReducer, MaxReducer]]:
        """The in-graph min and max over the same axes that give this statistic on ``output`` exactly
        (``graph_reduce.abs_max_from_extremes``); ``None`` when it is not built in-graph there or reduces nothing."""
        if not self.can_graph_reduce(output) or not self.reduction_axes(output.get_partial_shape().rank.get_length()):
            return None
        axes = {"per_channel": self.per_channel, "channel_axis": self.channel_axis, "inplace": True}
        return MinReducer(**axes), MaxReducer(**axes)


class MeanReducer(Reducer):
    """Mean per sample (per tensor) or per sample and channel (summed in float64, returned as float32)."""

    stat_type = "mean"

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        return np.mean(x, axis=axes, dtype=np.float64) if axes else x

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.mean(rows, axis=0, dtype=np.float64, keepdims=True).astype(np.float32)


def _check_quantile(owner: str, q: Any) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)) or not 0.0 <= q <= 1.0:
        raise ValueError(f"{owner}: q must be a number in [0, 1] (e.g. 1e-4 or 0.9999), got {q!r}")
    return float(q)


class QuantileReducer(Reducer):
    """The ``q`` quantile (``numpy.quantile``, linear interpolation) per sample or per sample and channel.

    :param q: the quantile, a fraction in ``[0, 1]``.
    """

    stat_type = "quantile"

    def __init__(self, q: float, per_channel: bool = False, channel_axis: int = 1, inplace: bool = False):
        self.q = _check_quantile(type(self).__name__, q)
        super().__init__(per_channel=per_channel, channel_axis=channel_axis, inplace=inplace)

    def _params(self) -> Dict[str, Any]:
        return {"q": self.q, **super()._params()}

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return x

    def can_graph_reduce(self, output: ov.Output) -> bool:
        """Also needs the reduced dimensions to be static (the ``TopK`` size depends on them)."""
        if not super().can_graph_reduce(output):
            return False
        rank = output.get_partial_shape().rank.get_length()
        return static_size(output, self.reduction_axes(rank)) is not None

    def _build_graph(self, output: ov.Output, rank: int, name: str) -> ov.Output:
        absolute = self.stat_type == "abs_quantile"
        return quantile_output(output, self.q, self.resolved_channel_axis(rank), absolute, name)

    def _graph_tag(self) -> str:
        return f"{super()._graph_tag()}_q{self.q!r}"

    def _reduce(self, x: np.ndarray, axes: Tuple[int, ...]) -> np.ndarray:
        x = self._prepare(x)
        return np.quantile(x, self.q, axis=axes) if axes else x

    def _merge_rows(self, rows: np.ndarray) -> np.ndarray:
        raise ValueError(f"{self!r}: the in-graph quantile was taken per row of axis 0, which is not the "
                         f"batch here ({rows.shape[0]} rows), and quantiles of rows do not combine into the "
                         "quantile of the whole output; collect it in numpy (inplace_statistics=False)")


class AbsQuantileReducer(QuantileReducer):
    """The ``q`` quantile of ``|x|`` per sample or per sample and channel."""

    stat_type = "abs_quantile"

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return np.abs(x)


#: POT's statistic type names and the reducer class for each.
REDUCER_TYPES = {"min": MinReducer, "max": MaxReducer, "abs_max": AbsMaxReducer, "mean": MeanReducer,
                 "quantile": QuantileReducer, "abs_quantile": AbsQuantileReducer}

_SIDES = ("min", "max")


def pot_quantile(side: str, outlier_prob: float) -> float:
    """POT's quantile for a range-estimator side: ``outlier_prob`` for ``'min'``, ``1 - outlier_prob`` for
    ``'max'``."""
    if side not in _SIDES:
        raise ValueError(f"side must be one of {', '.join(_SIDES)} (the range-estimator side), got {side!r}")
    outlier_prob = _check_quantile("outlier_prob", outlier_prob)
    return outlier_prob if side == "min" else 1.0 - outlier_prob


def make_reducer(stat_type: str, per_channel: bool, channel_axis: int = 1, inplace: bool = False,
                 outlier_prob: Optional[float] = None, *, side: Optional[str] = None,
                 quantile: Optional[float] = None) -> Reducer:
    """Build the reducer for one of POT's statistic types.

    :param stat_type: ``'min'``, ``'max'``, ``'abs_max'``, ``'mean'``, ``'quantile'`` or ``'abs_quantile'``.
    :param per_channel: per channel (``[B, C]``) instead of per tensor (``[B]``).
    :param channel_axis: the channel axis when ``per_channel``.
    :param inplace: compute in-graph (see :meth:`Reducer.graph_reduce`).
    :param outlier_prob: POT's range-estimator parameter for the quantile types; needs ``side``.
    :param side: ``'min'`` (``q = outlier_prob``) or ``'max'`` (``q = 1 - outlier_prob``).
    :param quantile: the quantile fraction itself, instead of ``outlier_prob`` and ``side``.
    :raises ValueError: unknown ``stat_type``, or a quantile type without exactly one way to get ``q``.
    """
    if stat_type not in REDUCER_TYPES:
        raise ValueError(f"unknown statistic type {stat_type!r}; valid types are "
                         f"{', '.join(sorted(REDUCER_TYPES))}")
    cls = REDUCER_TYPES[stat_type]
    if not issubclass(cls, QuantileReducer):
        return cls(per_channel=per_channel, channel_axis=channel_axis, inplace=inplace)
    if quantile is not None and outlier_prob is not None:
        raise ValueError(f"statistic type {stat_type!r}: pass either quantile=q or outlier_prob=p with "
                         f"side='min'|'max', not both")
    if quantile is None:
        if outlier_prob is None or side is None:
            raise ValueError(f"statistic type {stat_type!r} needs its quantile: pass quantile=q, or POT's "
                             f"outlier_prob=p with side='min' (q = p) or side='max' (q = 1 - p)")
        quantile = pot_quantile(side, outlier_prob)
    return cls(quantile, per_channel=per_channel, channel_axis=channel_axis, inplace=inplace)


def per_batch_value(fn: Any, value: np.ndarray, samples: int, in_graph: bool,
                    what: str = "activation") -> Any:
    """One batch's value of the statistic ``fn`` from the statistics model's output ``value``.

    A reducer gets the number of ``samples`` fed, so that an output whose axis 0 is not the batch is reduced
    as one value (:func:`is_per_sample`); its in-graph result then has one row per entry of axis 0, combined
    by :meth:`Reducer.merge_rows`. Other statistic functions get the batch output as it is.

    :param fn: the statistic function of the layout.
    :param value: the compiled model's output: the raw activation, or the in-graph reducer's result.
    :param samples: the number of samples in the batch fed.
    :param in_graph: ``value`` is ``fn``'s in-graph result (a copy is returned) rather than the activation.
    :param what: names the output in warnings and errors.
    """
    finish = getattr(fn, "after_graph", None)  # a statistic whose in-graph part is followed by numpy (padding.py)
    if in_graph and callable(finish):
        return finish(np.array(value), samples, what)
    if in_graph:
        rows = np.array(value)
        if callable(getattr(fn, "merge_rows", None)) and not is_per_sample(rows.shape[0] if rows.ndim else 1,
                                                                            samples, what):
            return fn.merge_rows(rows)
        return rows
    if isinstance(fn, Reducer):
        return fn(value, samples=samples, what=what)
    return fn(value)
