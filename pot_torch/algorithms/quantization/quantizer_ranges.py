"""From a quantizer choice and measured ranges to FakeQuantize parameters, as POT computes them.

- ``choose_quantizer``: the hardware candidates filtered by the user's ``weights``/``activations`` settings,
  then picked by ``preset`` (performance: symmetric activations; mixed: asymmetric activations; accuracy:
  asymmetric weights and activations).
- ``levels_of``: the number of levels (8-bit symmetric weights: 255, i.e. -127..127; otherwise 256).
- ``activation_fq_range`` / ``weight_fq_range``: symmetric ranges are ``[-max, max]`` (weights), ``[0, max]``
  (non-negative activations) or ``[-max * L / (L - 2), max]`` (signed activations, so ``max`` is level 127);
  asymmetric ranges include 0 and are nudged so that 0 is exactly a level. Near-zero ranges are widened.
- ``saturation_fix_layers``: the layers whose weights use half the range (POT's ``saturation_fix``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import openvino as ov

from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

_SELECTING = ("bits", "mode", "granularity")
#: Ops whose weights POT's ``saturation_fix: all`` rescales.
WEIGHTED_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
                  "MatMul")
SATURATION_SCALE = 2.0


def choose_quantizer(options: List[Dict[str, Any]], preset: str, kind: str,
                     overrides: Optional[Mapping[str, Any]], where: str = "") -> Dict[str, Any]:
    """Pick one quantizer among the hardware ``options`` (ordered symmetric first).

    :param kind: ``'weights'`` or ``'activations'``.
    :param overrides: the user's ``weights``/``activations`` dict (``bits``, ``mode``, ``granularity``,
        ``level_low``, ``level_high``); a setting the hardware does not offer is used anyway, with a warning.
    """
    overrides = overrides or {}
    wanted = {k: overrides[k] for k in _SELECTING if overrides.get(k) is not None}
    matching = [o for o in options if all(o.get(k, 8) == v for k, v in wanted.items())]
    if not matching:
        logger.warning("%s: %s settings %s are not among the hardware's options %s; using them anyway",
                       where, kind, wanted, options)
        base = {k: v for k, v in options[0].items()
                if not ("bits" in wanted and k in ("level_low", "level_high"))}
        matching = [{**base, **wanted}]
    if kind == "weights":
        chosen = matching[-1] if preset == "accuracy" else matching[0]
    else:
        chosen = matching[0] if preset == "performance" else matching[-1]
    chosen = dict(chosen)
    chosen.setdefault("bits", 8)
    for key in ("level_low", "level_high"):
        if overrides.get(key) is not None:
            chosen[key] = overrides[key]
    return chosen


def levels_of(quantizer: Mapping[str, Any], is_weights: bool) -> int:
    """Number of FakeQuantize levels for ``quantizer`` (POT's rule)."""
    full = 2 ** int(quantizer.get("bits", 8))
    symmetric_weights = is_weights and quantizer["mode"] == "symmetric"
    low = quantizer.get("level_low", -full / 2 + 1 if symmetric_weights else -full / 2)
    high = quantizer.get("level_high", full / 2 - 1)
    return int(abs(high) + abs(low) + 1)


def _fix_zero_symmetric(max_value: np.ndarray, eps: float = 0.01) -> np.ndarray:
    floor = np.maximum(8e-5, eps * np.max(max_value))
    return np.maximum(floor, max_value)


def _fix_zero_asymmetric(min_value: np.ndarray, max_value: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    widen = np.where(max_value - min_value > 8e-4, 0.0, 8e-4)
    return min_value - widen, max_value + widen


def align_zero(low: np.ndarray, high: np.ndarray, bits: int) -> Tuple[np.ndarray, np.ndarray]:
    """Move one end of ``[low, high]`` (``low <= 0 <= high``) outwards so that 0 falls exactly on a level.

    Rounding the zero level up can only be met by lowering ``low``, rounding down only by raising ``high``;
    the end that moves outwards is the one moved, so the range never shrinks.
    """
    top = 2 ** bits - 1
    zero_level = np.round(-low * top / (high - low))
    with np.errstate(invalid="ignore", divide="ignore"):
        new_low = np.where(zero_level < top, zero_level / (zero_level - top) * high, low)
        new_high = np.where(zero_level > 0.0, (zero_level - top) / zero_level * low, high)
    move_low = (high - new_low) > (new_high - low)  # the move that widens the range is the one kept
    return np.where(move_low, new_low, low), np.where(move_low, high, new_high)


def _asymmetric(min_value: np.ndarray, max_value: np.ndarray, bits: int) -> Tuple[np.ndarray, np.ndarray]:
    min_value, max_value = _fix_zero_asymmetric(min_value, max_value)
    return align_zero(np.minimum(min_value, 0.0), np.maximum(max_value, 0.0), bits)


def _clip(low: np.ndarray, high: np.ndarray, estimator: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    low_clip = estimator.get("min", {}).get("clipping_value")
    high_clip = estimator.get("max", {}).get("clipping_value")
    if low_clip is not None:
        low = np.maximum(low, low_clip)
    if high_clip is not None:
        high = np.minimum(high, high_clip)
    return low, high


def activation_fq_range(quantizer: Mapping[str, Any], levels: int, min_value: Any, max_value: Any,
                        estimator: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of an activation FakeQuantize from the aggregated statistics."""
    min_value = np.asarray(min_value, dtype=np.float64)
    max_value = np.asarray(max_value, dtype=np.float64)
    if quantizer["mode"] == "symmetric":
        high = _fix_zero_symmetric(max_value)
        signed = quantizer.get("level_low", 0) < 0
        low = (np.zeros_like(high) if np.all(min_value >= 0) and not signed
               else -high * levels / (levels - 2))
    else:
        low, high = _asymmetric(min_value, max_value, int(quantizer["bits"]))
    low, high = np.broadcast_arrays(*_clip(low, high, estimator))
    return low.astype(np.float32), high.astype(np.float32)


def weight_fq_range(quantizer: Mapping[str, Any], stats: Mapping[str, np.ndarray],
                    estimator: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a weight FakeQuantize from ``weight_statistics`` (shapes kept)."""
    if quantizer["mode"] == "symmetric":
        high = _fix_zero_symmetric(np.asarray(stats["max"], dtype=np.float64))
        low = -high
    else:
        low, high = _asymmetric(np.asarray(stats["min"], dtype=np.float64),
                                np.asarray(stats["max"], dtype=np.float64), int(quantizer["bits"]))
    low, high = _clip(low, high, estimator)
    return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)


def per_channel_shape(values: np.ndarray, rank: int, channel_axis: int = 1) -> np.ndarray:
    """Reshape per-channel values ``[C]`` to broadcast over an activation of ``rank`` (``[1, C, 1, 1]``)."""
    values = np.asarray(values)
    if values.ndim == 0 or rank < 2:
        return values
    shape = [1] * rank
    shape[channel_axis % rank] = values.size
    return values.reshape(shape)


def saturation_fix_layers(model: ov.Model, mode: str) -> Set[str]:
    """Names of the layers whose weight FakeQuantize uses half the range (``saturation_fix``).

    ``first_layer``: the Convolutions first reached from the model inputs; ``all``: every layer with weights;
    ``no``: none. The caller checks that the target device and model call for it.
    """
    if mode == "no":
        return set()
    ordered = model.get_ordered_ops()
    if mode == "all":
        return {op.get_friendly_name() for op in ordered if op.get_type_name() in WEIGHTED_TYPES}
    found: Set[str] = set()
    frontier: Sequence[ov.Node] = list(model.get_parameters())
    seen: Set[str] = set()
    while frontier:
        following = []
        for node in frontier:
            name = node.get_friendly_name()
            if name in seen:
                continue
            seen.add(name)
            if node.get_type_name() == "Convolution":
                found.add(name)
                continue
            following.extend(target.get_node() for output in node.outputs() for target in output.get_target_inputs())
        frontier = following
    return found
