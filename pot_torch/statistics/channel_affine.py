"""Statistics of a per-channel affine image ``y = (x - shift) / scale`` (``scale > 0``) derived from ``x``'s.

ActivationChannelAlignment rewrites a convolution pair so the activation between them becomes such an image of
the one before alignment. With each sample's per-channel ``min``, ``max`` and ``mean`` of ``x`` measured in the
pass taken anyway, the per-sample ``min``, ``max``, ``abs_max`` and ``mean`` of ``y`` (per tensor, or per channel
along the same axis) follow without running the changed model: for ``scale > 0`` the map is increasing, so it
sends each channel's extremes to the extremes of the image, and it commutes with the mean. Quantiles reduce over
the whole tensor across channels and do not follow (:func:`derive` leaves them out, for a second pass).

The derived values are exact in real arithmetic; the changed model computes ``y`` with rescaled float32 weights,
so what a second pass would measure differs by float32 rounding (relative ~1e-7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec

#: Names of the per-sample, per-channel statistics of ``x`` (kept per batch).
CHANNEL_STATS = {"min": "affine_channel_min", "max": "affine_channel_max", "mean": "affine_channel_mean"}
DERIVABLE = ("min", "max", "abs_max", "mean")


@dataclass(frozen=True)
class ChannelAffine:
    """``y = (x - shift) / scale`` along ``channel_axis`` of a tensor of ``rank`` (``shift``, ``scale``: ``[C]``,
    ``scale > 0``)."""

    shift: np.ndarray
    scale: np.ndarray
    rank: int
    channel_axis: int = 1

    def image(self, values: np.ndarray) -> np.ndarray:
        """The image of per-channel values ``[B, C]`` (float64)."""
        return (np.asarray(values, np.float64) - self.shift) / self.scale


def channel_specs(keys: Iterable[Hashable], inplace: bool, channel_axis: int = 1) -> List[StatisticSpec]:
    """The per-sample, per-channel ``min``, ``max`` and ``mean`` of each output of ``keys`` (kept per batch)."""
    return [StatisticSpec(key, name, make_reducer(kind, per_channel=True, channel_axis=channel_axis, inplace=inplace))
            for key in keys for kind, name in CHANNEL_STATS.items()]


def derive(specs: Sequence[StatisticSpec], affines: Mapping[Hashable, ChannelAffine],
           channel_stats: Mapping[Hashable, Mapping[str, List[Any]]]) -> Dict[Hashable, Dict[str, Any]]:
    """The collected values of the ``specs`` on the outputs of ``affines`` that follow from ``channel_stats``
    (measured by :func:`channel_specs` before the change), ``{node: {name: value}}`` as ``collect_statistics``
    gives them."""
    derived: Dict[Hashable, Dict[str, Any]] = {}
    for spec in specs:
        affine, measured = affines.get(spec.node), channel_stats.get(spec.node, {})
        if affine is None or not all(measured.get(name) for name in CHANNEL_STATS.values()):
            continue
        batches = _per_batch(spec.reducer, affine, measured)
        if batches is not None:
            derived.setdefault(spec.node, {})[spec.name] = spec.aggregate_computed(batches)
    return derived


def _per_batch(fn: Any, affine: ChannelAffine, measured: Mapping[str, List[Any]]) -> Optional[List[np.ndarray]]:
    """Per batch, the ``[B]`` or ``[B, C]`` values of reducer ``fn`` on the image, or ``None``."""
    kind = getattr(fn, "stat_type", None)
    if kind not in DERIVABLE:
        return None
    if fn.per_channel and fn.resolved_channel_axis(affine.rank) != affine.channel_axis % affine.rank:
        return None
    lows, highs, means = (measured[CHANNEL_STATS[name]] for name in ("min", "max", "mean"))
    return [_reduced(kind, fn.per_channel, affine, low, high, mean) for low, high, mean in zip(lows, highs, means)]


def _reduced(kind: str, per_channel: bool, affine: ChannelAffine, low: Any, high: Any, mean: Any) -> np.ndarray:
    if kind == "mean":
        values = affine.image(mean)
        return np.asarray(values if per_channel else values.mean(axis=1), np.float32)
    # scale > 0: the channel extremes' images
    return np.asarray(from_channel_extremes(kind, per_channel, affine.image(low), affine.image(high)), np.float32)


def from_channel_extremes(kind: str, per_channel: bool, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The ``[B]`` or ``[B, C]`` value of a ``min``, ``max`` or ``abs_max`` reducer (per tensor, or per channel)
    from each sample's per-channel minima ``low`` and maxima ``high`` (``[B, C]``)."""
    values = {"min": low, "max": high, "abs_max": np.maximum(np.abs(low), np.abs(high))}[kind]
    return values if per_channel else (np.min if kind == "min" else np.max)(values, axis=1)
