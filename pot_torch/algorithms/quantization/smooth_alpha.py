"""``smooth_quant_alpha: 'auto'``: SmoothQuant's migration strength chosen per smoothing group on real activations.

SmoothQuant's statistics also keep, for :data:`SEARCH_SAMPLES` calibration samples spread over the subset
(:func:`search_indices`), at most :data:`ROWS_PER_SAMPLE` evenly spaced rows (tokens) of every activation it may
smooth (:class:`ActivationRows`). Those samples are not the subset's first ones on purpose: a request for the
first samples rides on the main pass, which would then copy the rows out of every sample.
For each group and each alpha of :data:`ALPHA_GRID`, :func:`choose_alpha` smooths those rows with the scale the
group would get (:func:`~pot_torch.algorithms.quantization.smooth_quant.group_scale`), fake-quantizes them per
tensor as ``MinMaxQuantization`` would (8 bits, the mean over samples of each sample's minimum and maximum,
asymmetric unless the preset is ``performance``) and multiplies them by every member's smoothed weight,
fake-quantized per output channel (8-bit symmetric, 255 levels). The alpha with the smallest output error,
relative to the floating-point product and summed over the group's MatMuls, wins (the smaller alpha on a tie).

A group with no kept rows (e.g. a member of a cascade the samples do not reach) keeps :data:`FALLBACK_ALPHA`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

#: The candidate alphas (NNCF's MatMul default 0.95 is the largest).
ALPHA_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
#: The alpha of a group with no kept activations (NNCF's MatMul default).
FALLBACK_ALPHA = 0.95
#: Calibration samples whose activations the search keeps, and rows (tokens) kept per sample.
SEARCH_SAMPLES, ROWS_PER_SAMPLE = 8, 32
AUTO = "auto"


def search_indices(indices: Sequence[int]) -> List[int]:
    """:data:`SEARCH_SAMPLES` of the calibration ``indices``, evenly spaced (all of them when there are fewer)."""
    step = max(1, len(indices) // SEARCH_SAMPLES)
    return list(indices[::step][:SEARCH_SAMPLES])


class ActivationRows:
    """Statistic function (computed in Python, never in-graph): at most ``rows`` evenly spaced rows of a batch
    output, as a ``[rows, C]`` float32 array with ``C`` its ``channel_axis``."""

    stat_type = "activation_rows"
    inplace = False
    per_channel = True

    def __init__(self, channel_axis: int, rows: int = ROWS_PER_SAMPLE) -> None:
        self.channel_axis, self.rows = int(channel_axis), int(rows)

    def __call__(self, output: np.ndarray) -> np.ndarray:
        output = np.asarray(output, dtype=np.float32)
        flat = np.moveaxis(output, self.channel_axis, -1).reshape(-1, output.shape[self.channel_axis])
        keep = np.unique(np.linspace(0, flat.shape[0] - 1, min(self.rows, flat.shape[0])).astype(np.int64))
        return np.ascontiguousarray(flat[keep])


def _fake_quantize_inplace(values: np.ndarray, low: np.ndarray, high: np.ndarray, levels: int) -> np.ndarray:
    """Fake-quantize ``values`` (float32) to ``levels`` levels over ``[low, high]`` in place; returns them."""
    step = np.maximum((high - low) / (levels - 1), np.finfo(np.float32).tiny)
    np.subtract(values, low, out=values)
    np.divide(values, step, out=values)
    np.round(values, out=values)
    np.clip(values, 0, levels - 1, out=values)
    np.multiply(values, step, out=values)
    np.add(values, low, out=values)
    return values


def _activation_range(samples: Sequence[np.ndarray], symmetric: bool) -> Tuple[float, float]:
    """The per-tensor range of the default estimator: mean of per-sample minima and maxima (symmetric: of the
    absolute maxima; unsigned when no sample goes below zero); zero is always inside."""
    if symmetric:
        high = float(np.mean([np.abs(x).max() for x in samples]))
        return (0.0 if min(float(x.min()) for x in samples) >= 0 else -high), high
    return (min(float(np.mean([x.min() for x in samples])), 0.0),
            max(float(np.mean([x.max() for x in samples])), 0.0))


class _Search:
    """What every alpha of one group's search reuses: the activation rows ``X``, where each sample's rows end, and
    per weight ``W`` its ``|W|``, the floating-point product ``X @ W^T`` (``references``: computed when not
    given) and that product's squared norm."""

    def __init__(self, samples: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                 references: Optional[Sequence[np.ndarray]] = None) -> None:
        self.rows = np.concatenate(samples)
        self.ends = np.cumsum([len(x) for x in samples])[:-1]
        self.weights = list(weights)
        self.abs_weights = [np.abs(weight) for weight in weights]
        self.references = [self.rows @ weight.T for weight in weights] if references is None else list(references)
        self.norms = [max(float(np.sum(reference ** 2)), np.finfo(np.float32).tiny) for reference in self.references]

    def error(self, scale: np.ndarray, symmetric: bool) -> float:
        """:func:`quantized_output_error` for the smoothing scale ``scale``."""
        smoothed = self.rows / scale
        low, high = _activation_range(np.split(smoothed, self.ends), symmetric)
        quantized = _fake_quantize_inplace(smoothed, np.float32(low), np.float32(high), 256)
        error = 0.0
        for weight, abs_weight, reference, norm in zip(self.weights, self.abs_weights, self.references, self.norms):
            # |W * s| is |W| * s exactly (s > 0): the per-output-channel bound without another pass over W * s
            bound = np.maximum((abs_weight * scale).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
            product = quantized @ _fake_quantize_inplace(weight * scale, -bound, bound, 255).T
            product -= reference
            np.square(product, out=product)
            error += float(np.sum(product) / norm)
        return error


def quantized_output_error(samples: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                           references: Sequence[np.ndarray], scale: np.ndarray, symmetric: bool) -> float:
    """Relative squared error of ``sum over weights W`` of ``Q(X / s) @ Q(W * s)^T`` against ``X @ W^T``.

    :param samples: per sample, activation rows ``[rows, C]``.
    :param weights: the group's weights as ``[O, C]`` (input channel last).
    :param references: per weight, ``X @ W^T`` of the concatenated rows.
    :param scale: the smoothing scale ``s`` ``[C]``.
    """
    return _Search(samples, weights, references).error(scale, symmetric)


def choose_alpha(samples: List[np.ndarray], weights: Sequence[np.ndarray], scale_for, symmetric: bool) -> float:
    """The alpha of :data:`ALPHA_GRID` with the smallest :func:`quantized_output_error`.

    The rows, ``|W|``, the floating-point products and their norms are computed once for all alphas; each alpha
    then fake-quantizes the smoothed rows and each smoothed weight in place and takes one product per weight
    (float32 throughout, the same numbers as computing every alpha afresh).

    :param scale_for: ``alpha -> smoothing scale [C]`` of the group.
    """
    if not samples:
        return FALLBACK_ALPHA
    search = _Search(samples, weights)
    errors = [search.error(scale_for(alpha), symmetric) for alpha in ALPHA_GRID]
    return ALPHA_GRID[int(np.argmin(errors))]
