"""An OpenVINO CPU plugin bug that depends on the ranges, so it is worked around once they are known (bug 7 of
:mod:`~pot_torch.algorithms.quantization.cpu_workarounds`; docs/cpu-plugin-bugs.md).

Static or dynamic, an MVN that normalizes the variance reading a per-tensor INT8 input whose zero is level 0 or the
middle level (pot_torch's signed symmetric ranges, or ``[0, high]``), directly or through a Reshape, Transpose,
Squeeze, Unsqueeze or ReLU: the plugin runs the MVN on the integers and multiplies by the sign of the scale, so
its eps counts in integer units (``eps * step**2`` in real ones). Rows of std 0.01 with eps 1e-5 come out 23 dB
from the IR's own result (the nightly torch run: 1.0 dB where numpy on the same IR gives 30.1 dB). A zero point
keeps it right (zero at any other level: 143-145 dB), and so does a FakeQuantize-free MVN input only when the op
before it is not computed in INT8 (an INT8 MatMul with a per-tensor weight scale loses the eps the same way), so
:func:`mvn_eps_ranges` moves such a range by one level (the same data covered, zero at level 1 or one below the
middle) when the eps is large next to its step: ``eps > step**2 / sqrt(3)`` (inside the square root) or
``eps > step / sqrt(12)`` (outside), where the plugin's change exceeds the rounding noise of a row one step wide.
It depends on the ranges, so ``MinMaxQuantization`` calls it once they are known.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.quantization.sites import ActivationSite, Placement
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Ops the plugin moves a per-tensor dequantization scale through, into an MVN (measured: Reshape, Transpose, ReLU).
_SCALE_MOVERS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Relu")
Range = Tuple[np.ndarray, np.ndarray]


def _mvn_input_site(mvn: ov.Node, planned: Dict[Tuple[str, int], ActivationSite]) -> Optional[ActivationSite]:
    """The activation site whose FakeQuantize ``mvn`` reads, directly or through ``_SCALE_MOVERS``; else ``None``."""
    node = mvn
    while (node.get_friendly_name(), 0) not in planned:
        node = node.input_value(0).get_node()
        if node.get_type_name() not in _SCALE_MOVERS:
            return None
    return planned[(node.get_friendly_name(), 0)]


def _zero_level(low: np.ndarray, high: np.ndarray, levels: int) -> Optional[int]:
    """0 or ``levels // 2`` when a per-tensor range ``[low, high]`` puts zero there (no zero point); else ``None``."""
    if low.size != 1 or high.size != 1 or not float(high) > float(low):
        return None
    zero = -float(low) * (levels - 1) / float(high - low)
    return next((level for level in (0, levels // 2) if abs(zero - level) < 1e-3), None)


def _eps_lost(mvn: ov.Node, low: np.ndarray, high: np.ndarray, levels: int) -> bool:
    """Whether bug 7 changes ``mvn`` by more than the rounding noise of a row one step wide when it reads a
    FakeQuantize of range ``[low, high]``."""
    attributes = mvn.get_attributes()
    if not attributes["normalize_variance"] or _zero_level(low, high, levels) is None:
        return False
    step = float(high - low) / (levels - 1)
    inside = attributes["eps_mode"].lower() == "inside_sqrt"
    return float(attributes["eps"]) > (step * step / math.sqrt(3.0) if inside else step / math.sqrt(12.0))


def _with_zero_point(low: np.ndarray, high: np.ndarray, levels: int) -> Range:
    """``[low, high]`` moved by one level so that zero is neither level 0 nor the middle one, covering the data the
    statistics gave: ``[-high / (levels - 2), high]`` for ``[0, high]`` (zero at level 1, a step 0.4 % larger);
    ``[-high, -low]`` for pot_torch's signed symmetric range of an even number of levels (``high`` is the largest
    magnitude; zero one level below the middle, the same step); for a symmetric ``[-high, high]`` of an odd number
    of levels (whose mirror is itself) zero one level above the middle, the low end extended (measured: 255 levels,
    ``[-0.03, 0.03]``: 23.0 dB from numpy on the same IR, ``[-0.03 * 128 / 126, 0.03]``: 144.1 dB)."""
    zero = _zero_level(low, high, levels)
    if zero == 0:
        return (-high / (levels - 2)).astype(np.float32), high
    if levels % 2:
        return (-high * (zero + 1) / (levels - 2 - zero)).astype(np.float32), high
    return (-high).astype(np.float32), (-low).astype(np.float32)


def mvn_eps_ranges(model: ov.Model, placement: Placement, ranges: Mapping[str, Range],
                   levels: Mapping[str, int]) -> Dict[str, Range]:
    """``ranges`` (``{activation site: (low, high)}``) with those of bug 7's sites (see the module docstring) and their
    unified groups moved by one level (``_with_zero_point``), with a warning naming them."""
    planned, moved = placement.sites_by_input(), set()
    for node in model.get_ordered_ops():
        site = _mvn_input_site(node, planned) if node.get_type_name() == "MVN" else None
        if site is not None and _eps_lost(node, *ranges[site.name], levels[site.name]):
            moved |= next((set(group) for group in placement.unified if site.name in group), {site.name})
    if not moved:
        return dict(ranges)
    logger.warning("The OpenVINO CPU plugin computes an MVN of an INT8 input without a zero point with its eps in "
                   "integer units (eps times the squared quantization step), which changes the result when the eps "
                   "is large next to that step; ranges moved by one level to have a zero point: %s",
                   ", ".join(sorted(moved)))
    return {name: _with_zero_point(*value, levels[name]) if name in moved else value
            for name, value in ranges.items()}


def _mvn_readers(output: ov.Output) -> List[ov.Node]:
    """The MVNs reading ``output`` as their data, directly or through ``_SCALE_MOVERS``."""
    found: List[ov.Node] = []
    for target in output.get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "MVN" and target.get_index() == 0:
            found.append(node)
        elif node.get_type_name() in _SCALE_MOVERS:
            found += _mvn_readers(node.output(0))
    return found


def mvn_safe_range(fq: ov.Node, low: float, high: float) -> Optional[Range]:
    """The range ``[low, high]`` of activation FakeQuantize ``fq`` moved by one level (``_with_zero_point``) when an
    MVN reads ``fq`` (directly or through a Reshape, Transpose, ReLU...) and would lose its eps with that range (bug
    7); ``None`` when the range can stay as given. For the algorithms that set ranges after ``MinMaxQuantization``
    (RangeOptimization)."""
    levels = int(fq.get_attributes()["levels"])
    low_value, high_value = np.asarray(low, np.float32), np.asarray(high, np.float32)
    if any(_eps_lost(mvn, low_value, high_value, levels) for mvn in _mvn_readers(fq.output(0))):
        return _with_zero_point(low_value, high_value, levels)
    return None
