"""MinMax statistics of smoothed activations computed from the per-channel statistics taken before smoothing.

SmoothQuant multiplies an activation ``X`` by a positive per-channel constant ``k`` (``1 / s``). For ``k > 0``
floating-point rounding is monotonic, so ``min(X[..., c]) * k[c] == min(X[..., c] * k[c])`` exactly, and
likewise for ``max`` and ``|x|``. With each sample's per-channel ``min`` and ``max`` of ``X`` measured in the
pass SmoothQuant makes anyway, the per-sample ``min``, ``max`` and ``abs_max`` of the smoothed activation
(per tensor, or per channel along the smoothing axis) follow without running the smoothed model, and any
aggregator over samples gives what a second pass would have measured. Quantile and mean reducers do not
follow (:func:`derive` leaves them out and the caller measures those in a second pass).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence

import numpy as np
import openvino as ov

from pot_torch.algorithms.quantization.smooth_quant import SmoothGroup, multiply_name
from pot_torch.graph.editor import ops_by_name
from pot_torch.statistics.channel_affine import from_channel_extremes
from pot_torch.statistics.collector import Statistics
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec

#: Names of the per-sample, per-channel statistics of the activation before smoothing.
CHANNEL_MIN, CHANNEL_MAX = "smoothed_channel_min", "smoothed_channel_max"
_DERIVABLE = ("min", "max", "abs_max")


def channel_range_specs(groups: Sequence[SmoothGroup], inplace: bool) -> List[StatisticSpec]:
    """Per-sample, per-channel ``min`` and ``max`` of every activation SmoothQuant may smooth (kept per batch)."""
    return [StatisticSpec(group.stat_key, name, make_reducer(kind, per_channel=True, channel_axis=group.channel_axis,
                                                             inplace=inplace))
            for group in groups for name, kind in ((CHANNEL_MIN, "min"), (CHANNEL_MAX, "max"))]


@dataclass(frozen=True)
class SmoothedActivation:
    """A smoothing Multiply of the smoothed model: its input's statistics key and per-channel factor."""

    source_key: Hashable
    factor: np.ndarray  # [C] float32, positive
    channel_axis: int
    rank: int


def smoothed_activations(model: ov.Model, groups: Sequence[SmoothGroup]) -> Dict[Hashable, SmoothedActivation]:
    """``{Multiply name: SmoothedActivation}`` for the groups SmoothQuant smoothed in ``model``."""
    by_name = ops_by_name(model)
    found = {}
    for group in groups:
        multiply = by_name.get(multiply_name(group.producer, group.port))
        if multiply is not None:
            factor = np.asarray(multiply.input_value(1).get_node().get_data(), np.float32).reshape(-1)
            found[multiply.get_friendly_name()] = SmoothedActivation(group.stat_key, factor, group.channel_axis,
                                                                     group.rank)
    return found


def derive(specs: Sequence[StatisticSpec], smoothed: Mapping[Hashable, SmoothedActivation],
           channel_stats: Statistics) -> Statistics:
    """The collected values of the ``specs`` (MinMax's, on the smoothed model) that follow from ``channel_stats``.

    A statistic is derived when its node is a smoothing Multiply and its reducer is a ``min``, ``max`` or
    ``abs_max`` reducer, per tensor or per channel along the smoothing axis; it is aggregated as
    ``collect_statistics`` aggregates measured ones (``StatisticSpec.aggregate_computed``).
    """
    derived: Statistics = {}
    for spec in specs:
        source = smoothed.get(spec.node)
        if source is None:
            continue
        lows = channel_stats.get(source.source_key, {}).get(CHANNEL_MIN)
        highs = channel_stats.get(source.source_key, {}).get(CHANNEL_MAX)
        if not lows or not highs:
            continue
        batches = _derived_batches(spec.reducer, source, lows, highs)
        if batches is not None:
            derived.setdefault(spec.node, {})[spec.name] = spec.aggregate_computed(batches)
    return derived


def _derived_batches(fn: Any, source: SmoothedActivation, lows: List[np.ndarray],
                     highs: List[np.ndarray]) -> Optional[List[np.ndarray]]:
    kind = getattr(fn, "stat_type", None)
    if kind not in _DERIVABLE:
        return None
    if fn.per_channel and fn.channel_axis % source.rank != source.channel_axis % source.rank:
        return None
    # factor > 0: exact images of the smoothed channel extremes
    return [from_channel_extremes(kind, fn.per_channel, np.asarray(low) * source.factor,
                                  np.asarray(high) * source.factor) for low, high in zip(lows, highs)]


def missing_specs(specs: Sequence[StatisticSpec], *have: Statistics) -> List[StatisticSpec]:
    """The ``specs`` none of ``have`` holds."""
    return [spec for spec in specs if not any(spec.name in source.get(spec.node, {}) for source in have)]
