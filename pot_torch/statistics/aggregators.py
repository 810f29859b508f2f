"""Aggregators: combine the per-batch values of a reducer over the whole calibration set.

Every aggregator takes the list of per-batch reducer outputs (each ``[B]`` or ``[B, C]``), concatenates them
along axis 0 so there is one row per sample, and reduces axis 0: the result is a scalar (0-d array) for per
tensor values and ``[C]`` for per channel values (``'batch_mean'`` keeps a leading axis of 1). The names and
rules are POT's:

- ``'min'``, ``'max'``, ``'mean'``, ``'median'``: over all samples. (POT's ``'mean'`` averages batch means;
  that is the same unless the last batch is smaller, where this per-sample mean is the unbiased one.)
- ``'mean_no_outliers'``, ``'median_no_outliers'``: per channel, drop the samples outside the ``[1%, 99%]``
  quantiles (``numpy.quantile``, linear) of that channel, then mean / median of the rest. If nothing is left
  (possible only with 2 samples) all samples are used.
- ``'hl_estimator'``: Hodges-Lehmann estimator, half the median of the pairwise sums ``x_i + x_j``,
  ``i < j``, per channel (one sample: that sample).
- ``'batch_mean'``: the mean over samples keeping the leading axis (``[1]`` or ``[1, C]``).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence

import numpy as np

from pot_torch.statistics.reducers import Reducer

__all__ = ["AGGREGATORS", "aggregate", "reduce_and_aggregate", "OUTLIER_ALPHA"]

#: Fraction cut from each tail by the ``*_no_outliers`` aggregators (POT's value).
OUTLIER_ALPHA = 0.01
#: Most pairwise sums the Hodges-Lehmann estimator holds at once (channels are processed in blocks).
_HL_MAX_PAIRS = 1 << 22


def _stack(values: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate per-batch values along axis 0 (one row per sample)."""
    if isinstance(values, np.ndarray):
        values = [values]
    if len(values) == 0:
        raise ValueError("cannot aggregate an empty list of statistics: no batch was measured (is the data "
                         "set or the statistics subset empty?)")
    arrays = [np.atleast_1d(np.asarray(value)) for value in values]
    tails = {array.shape[1:] for array in arrays}
    if len(tails) != 1:
        shapes = [array.shape for array in arrays]
        raise ValueError(f"per-batch statistics must share their shape after the batch axis to be "
                         f"aggregated, got shapes {shapes}; mixing per-tensor and per-channel values (or "
                         f"different channel counts) is not allowed")
    return np.concatenate(arrays, axis=0)


def _as_input_dtype(result: np.ndarray, samples: np.ndarray) -> np.ndarray:
    dtype = samples.dtype if np.issubdtype(samples.dtype, np.floating) else np.float64
    return np.asarray(result, dtype=dtype)


def aggregate_min(values: List[np.ndarray]) -> np.ndarray:
    """Minimum over all samples."""
    samples = _stack(values)
    return np.asarray(np.min(samples, axis=0))


def aggregate_max(values: List[np.ndarray]) -> np.ndarray:
    """Maximum over all samples."""
    samples = _stack(values)
    return np.asarray(np.max(samples, axis=0))


def aggregate_mean(values: List[np.ndarray]) -> np.ndarray:
    """Mean over all samples (accumulated in float64)."""
    samples = _stack(values)
    return _as_input_dtype(np.mean(samples, axis=0, dtype=np.float64), samples)


def aggregate_median(values: List[np.ndarray]) -> np.ndarray:
    """Median over all samples."""
    samples = _stack(values)
    return _as_input_dtype(np.median(samples, axis=0), samples)


def aggregate_batch_mean(values: List[np.ndarray]) -> np.ndarray:
    """Mean over all samples, keeping a leading axis of length 1."""
    samples = _stack(values)
    return _as_input_dtype(np.mean(samples, axis=0, dtype=np.float64, keepdims=True), samples)


def _inlier_mask(samples: np.ndarray) -> np.ndarray:
    """Per channel, True for samples within the channel's ``[alpha, 1 - alpha]`` quantiles (all True where
    that keeps nothing)."""
    low = np.quantile(samples, OUTLIER_ALPHA, axis=0)
    high = np.quantile(samples, 1.0 - OUTLIER_ALPHA, axis=0)
    mask = (samples >= low) & (samples <= high)
    mask[:, ~mask.any(axis=0)] = True
    return mask


def aggregate_mean_no_outliers(values: List[np.ndarray]) -> np.ndarray:
    """Per channel mean of the samples within the 1%..99% quantiles."""
    samples = _stack(values)
    mask = _inlier_mask(samples)
    total = np.sum(samples, axis=0, where=mask, dtype=np.float64)
    return _as_input_dtype(total / np.count_nonzero(mask, axis=0), samples)


def aggregate_median_no_outliers(values: List[np.ndarray]) -> np.ndarray:
    """Per channel median of the samples within the 1%..99% quantiles."""
    samples = _stack(values)
    mask = _inlier_mask(samples)
    # the inliers of a channel are a contiguous run of its sorted samples: take the middle of that run
    order = np.argsort(samples, axis=0, kind="stable")
    ordered = np.take_along_axis(samples, order, axis=0)
    ordered_mask = np.take_along_axis(mask, order, axis=0)
    first = np.argmax(ordered_mask, axis=0)
    count = np.count_nonzero(ordered_mask, axis=0)
    lower = np.take_along_axis(ordered, ((first + (count - 1) // 2))[None], axis=0)[0]
    upper = np.take_along_axis(ordered, ((first + count // 2))[None], axis=0)[0]
    return _as_input_dtype(np.mean(np.stack([lower, upper]), axis=0), samples)


def aggregate_hl_estimator(values: List[np.ndarray]) -> np.ndarray:
    """Hodges-Lehmann estimator per channel: half the median of ``x_i + x_j`` over sample pairs ``i < j``."""
    samples = _stack(values)
    count = samples.shape[0]
    if count == 1:
        return samples[0].copy()
    flat = samples.reshape(count, -1)
    rows, cols = np.tril_indices(count, -1)
    block = max(1, _HL_MAX_PAIRS // len(rows))
    result = np.empty(flat.shape[1], dtype=samples.dtype)
    for start in range(0, flat.shape[1], block):
        part = flat[:, start:start + block]
        result[start:start + block] = np.median(part[rows] + part[cols], axis=0) * 0.5
    return result.reshape(samples.shape[1:])


#: POT's aggregator names and the functions; each takes the list of per-batch values.
AGGREGATORS: Dict[str, Callable[[List[np.ndarray]], np.ndarray]] = {
    "min": aggregate_min,
    "max": aggregate_max,
    "mean": aggregate_mean,
    "median": aggregate_median,
    "mean_no_outliers": aggregate_mean_no_outliers,
    "median_no_outliers": aggregate_median_no_outliers,
    "hl_estimator": aggregate_hl_estimator,
    "batch_mean": aggregate_batch_mean,
}


def get_aggregator(name: str) -> Callable[[List[np.ndarray]], np.ndarray]:
    """The aggregator called ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in AGGREGATORS:
        valid = ", ".join(sorted(AGGREGATORS))
        raise ValueError(f"unknown aggregator {name!r}; valid aggregators are {valid}")
    return AGGREGATORS[name]


def aggregate(name: str, values: List[np.ndarray]) -> np.ndarray:
    """Aggregate the per-batch values ``values`` with the aggregator called ``name``."""
    return get_aggregator(name)(values)


def reduce_and_aggregate(reducer: Reducer, name: str, batches: Iterable[np.ndarray]) -> np.ndarray:
    """Stream ``batches`` through ``reducer`` (keeping only the reduced values) and aggregate with ``name``.

    Because reducers work per sample, the result does not depend on how the samples are split into batches:
    it equals ``aggregate(name, [reducer(np.concatenate(batches))])``.
    """
    aggregator = get_aggregator(name)
    return aggregator([reducer(batch) for batch in batches])
