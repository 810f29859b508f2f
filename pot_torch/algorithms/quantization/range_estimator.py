"""POT's range estimators: which statistic and aggregator give each side (``min``/``max``) of a range.

``estimator_config`` returns POT's preset for a tensor kind, granularity and mode with the user's
``range_estimator`` overrides applied; ``activation_specs`` turns it into the statistics of one quantized output
(reducer and aggregator of each side) and ``activation_range`` reads their collected values; ``weight_statistics``
measures a weight constant directly.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from pot_torch.statistics.reducers import make_reducer, pot_quantile
from pot_torch.statistics.spec import StatisticSpec

_SIDES = ("min", "max")
_OUTLIER_PROB = 1e-4


def _activation_presets(low: Dict[str, Any], high: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "perchannel": {
            "symmetric": {"min": {"aggregator": "min", "type": "min", "granularity": "pertensor"},
                          "max": {"aggregator": "max", **high["abs"]}},
            "asymmetric": {"min": {"aggregator": "min", **low["plain"]}, "max": {"aggregator": "max", **high["plain"]}},
        },
        "pertensor": {
            "symmetric": {"min": {"aggregator": "min", "type": "min"}, "max": {"aggregator": "mean", **high["abs"]}},
            "asymmetric": {"min": {"aggregator": "mean", **low["plain"]},
                           "max": {"aggregator": "mean", **high["plain"]}},
        },
    }


_MINMAX = {"plain": {"type": "min"}}, {"plain": {"type": "max"}, "abs": {"type": "abs_max"}}
_QUANTILE = ({"plain": {"type": "quantile", "outlier_prob": _OUTLIER_PROB}},
             {"plain": {"type": "quantile", "outlier_prob": _OUTLIER_PROB},
              "abs": {"type": "abs_quantile", "outlier_prob": _OUTLIER_PROB}})

#: POT's estimator presets: ``PRESETS[preset]['activations'][granularity][mode]`` and
#: ``PRESETS[preset]['weights'][mode]``.
PRESETS: Dict[str, Dict[str, Any]] = {
    "default": {
        "activations": _activation_presets(*_MINMAX),
        "weights": {"symmetric": {"max": {"type": "abs_max"}},
                    "asymmetric": {"min": {"type": "min"}, "max": {"type": "max"}}},
    },
    "quantile": {
        "activations": _activation_presets(*_QUANTILE),
        "weights": {"symmetric": {"max": {"type": "abs_quantile", "outlier_prob": _OUTLIER_PROB}},
                    "asymmetric": {"min": {"type": "quantile", "outlier_prob": _OUTLIER_PROB},
                                   "max": {"type": "quantile", "outlier_prob": _OUTLIER_PROB}}},
    },
}


def estimator_config(config: Mapping[str, Any], kind: str, granularity: str, mode: str) -> Dict[str, Any]:
    """The range estimator of a ``kind`` (``'weights'`` or ``'activations'``) quantizer, as POT builds it.

    ``config['<kind>']['range_estimator']`` wins over the global ``config['range_estimator']``; its ``preset``
    picks the base, its ``min``/``max`` entries override fields of each side.
    """
    overrides = (config.get(kind) or {}).get("range_estimator") or config.get("range_estimator") or {}
    preset = PRESETS[overrides.get("preset") or "default"][kind]
    result = copy.deepcopy(preset[granularity][mode] if kind == "activations" else preset[mode])
    for side in _SIDES:
        if side in overrides:
            result.setdefault(side, {}).update(overrides[side])
    for side_config in result.values():
        side_config.setdefault("granularity", granularity)
    return result


def stat_name(side_config: Mapping[str, Any], side: str) -> str:
    """POT's statistic name of one side, e.g. ``'max_abs_max'`` or ``'min_quantile_0.0001'``."""
    parts = [side, side_config["type"]]
    if side_config["type"] in ("quantile", "abs_quantile"):
        parts.append(str(side_config["outlier_prob"]))
    return "_".join(parts)


def activation_specs(node: Hashable, estimator: Mapping[str, Any], inplace: bool,
                     channel_axis: int = 1) -> List[StatisticSpec]:
    """The statistics measuring ``estimator``'s sides on the activation ``node``, each with its side's aggregator."""
    specs = []
    for side in _SIDES:
        if side in estimator:
            side_config = estimator[side]
            reducer = make_reducer(
                side_config["type"], side_config["granularity"] == "perchannel", channel_axis=channel_axis,
                inplace=inplace, outlier_prob=side_config.get("outlier_prob"), side=side)
            specs.append(StatisticSpec(node, stat_name(side_config, side), reducer, side_config["aggregator"]))
    return specs


def activation_range(estimator: Mapping[str, Any], stats: Mapping[str, Any],
                     what: str, member: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The collected (aggregated) values of both sides, ``(min, max)``.

    :param what: the quantized output, for the errors.
    :param member: the cascade member that holds it (``None`` for a single model), for the errors.
    :raises KeyError: the engine did not return a statistic of the layout.
    :raises ValueError: the engine returned a statistic without values: the op never ran on calibration data.
    """
    values = {}
    for side in _SIDES:
        name = stat_name(estimator[side], side)
        if name not in stats:
            raise KeyError(f"statistic '{name}' of {what} was not collected (collected: {sorted(stats)}); the "
                           "engine's predict must return every statistic of the layout it was given")
        if stats[name] is None:
            raise ValueError(_no_values_message(what, member))
        values[side] = stats[name]
    return values["min"], values["max"]


def _no_values_message(what: str, member: Optional[str]) -> str:
    where = f"op output {what}" + (f" of cascade member '{member}'" if member is not None else "")
    reach = f"model member '{member}'" if member is not None else "that op"
    skip = (f", or leave the member in floating point with ignored: {{'{member}': {{'skip_model': True}}}}"
            if member is not None else "")
    return (f"{where} produced no values during calibration: the engine ran it on none of the calibration "
            f"samples (e.g. a cascade stage that no crop reached), so its quantization range is unknown. Make "
            f"sure the calibration data reaches {reach} (more or other samples, or the engine's thresholds "
            f"before it){skip}, or keep the ops that read it in floating point by naming them in ignored "
            f"'scope'")


def _reduce_weight(weights: np.ndarray, side_config: Mapping[str, Any], side: str,
                   axes: Optional[Tuple[int, ...]]) -> np.ndarray:
    kind = side_config["type"]
    data = np.abs(weights) if kind.startswith("abs_") else weights
    if kind in ("quantile", "abs_quantile"):
        return np.quantile(data, pot_quantile(side, side_config["outlier_prob"]), axis=axes, keepdims=True)
    reduce = np.min if kind == "min" else np.max
    return reduce(data, axis=axes, keepdims=True)


def weight_statistics(estimator: Mapping[str, Any], weights: np.ndarray,
                      channel_axes: Sequence[int]) -> Dict[str, np.ndarray]:
    """``{'min': ..., 'max': ...}`` of a weight constant (shape kept for broadcasting; a missing side is absent).

    Per channel, every axis but ``channel_axes`` is reduced; per tensor, all of them.
    """
    weights = np.asarray(weights, dtype=np.float32)
    result = {}
    for side in _SIDES:
        if side in estimator:
            per_channel = estimator[side]["granularity"] == "perchannel" and len(channel_axes) > 0
            axes = tuple(a for a in range(weights.ndim) if a not in channel_axes) if per_channel else None
            result[side] = _reduce_weight(weights, estimator[side], side, axes)
    return result
