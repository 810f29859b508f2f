"""The graph rewrites that keep the OpenVINO CPU plugin computing a model with FakeQuantize ops right
(docs/cpu-plugin-bugs.md), each computing the same values as the model it rewrites:

- bug 9: an Add or Subtract of a constant with as many values as channels after a per-channel scale gets its constant
  broadcast over the channels (:mod:`pot_torch.graph.channel_sized_shift`);
- bug 7: a normalization (MVN, GroupNormalization, NormalizeL2) reading a dequantized INT8 value reads it plus 1e-30,
  which keeps it in floating point (:mod:`pot_torch.graph.norm_input_guard`).

:func:`rewrite_for_cpu` applies them to a model in place, with a warning naming the ops (MinMaxQuantization calls it
on the CPU once its FakeQuantize ops are in); :func:`cpu_safe_copy` applies them to a copy, for ``IEEngine`` running a
model quantized elsewhere (another tool, or pot_torch for another target device), which would otherwise give wrong
results without a word.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import openvino as ov

from pot_torch.graph.channel_sized_shift import broadcast_channel_sized_shifts, channel_sized_shifts
from pot_torch.graph.editor import fake_quantize_ops
from pot_torch.graph.norm_input_guard import guard_normalization_inputs, unguarded_normalizations
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class CpuRewrite:
    """One rewrite: how to find the ops the plugin computes wrongly, how to rewrite them (in place, returning their
    names), and what the warning says."""

    find: Callable[[ov.Model], Sequence]
    apply: Callable[[ov.Model], List[str]]
    wrong: str
    done: str


CPU_REWRITES = (
    CpuRewrite(channel_sized_shifts, broadcast_channel_sized_shifts,
               "an Add or Subtract of a constant of as many values as channels after a per-channel scale is added "
               "along the channel axis (bug 9)", "its constant is broadcast over the channels (the same values)"),
    CpuRewrite(unguarded_normalizations, guard_normalization_inputs,
               "a normalization (MVN, GroupNormalization, NormalizeL2) reading an INT8 value runs on its integers, "
               "so its eps counts in integer units (bug 7)",
               "it reads its input plus 1e-30 (the same values: float32 absorbs it above ~1e-23, a mean removes it)"),
)


def rewrite_for_cpu(model: ov.Model) -> Dict[str, List[str]]:
    """Apply every rewrite of :data:`CPU_REWRITES` to ``model`` (in place) when it has FakeQuantize ops, with a warning
    per rewrite naming the ops; returns ``{what was wrong: names}`` of the rewrites that changed something."""
    if not fake_quantize_ops(model):
        return {}
    done = {}
    for rewrite in CPU_REWRITES:
        names = rewrite.apply(model)
        if names:
            logger.warning("The OpenVINO CPU plugin computes a model with FakeQuantize ops wrongly where %s; so %s "
                           "for: %s", rewrite.wrong, rewrite.done, ", ".join(names))
            done[rewrite.wrong] = names
    return done


def cpu_safe_copy(model: ov.Model) -> ov.Model:
    """``model`` itself, or a copy with the rewrites of :data:`CPU_REWRITES` applied, for an engine to run on the CPU.
    A warning (once per model and ops) names those ops and says the model itself is still computed wrongly by the
    CPU plugin elsewhere."""
    if not fake_quantize_ops(model) or not any(rewrite.find(model) for rewrite in CPU_REWRITES):
        return model
    copy = model.clone()
    found = tuple((rewrite.wrong, tuple(rewrite.apply(copy))) for rewrite in CPU_REWRITES)
    _warn_engine_copy(model.get_friendly_name(), tuple((wrong, names) for wrong, names in found if names))
    return copy


@functools.lru_cache(maxsize=None)
def _warn_engine_copy(model_name: str, found: Tuple[Tuple[str, Tuple[str, ...]], ...]) -> None:
    """Say once per model (and ops) what :func:`cpu_safe_copy` did: an engine may set the same model many times."""
    what = "; ".join(f"{wrong}: {', '.join(names)}" for wrong, names in found)
    logger.warning("Model '%s' has FakeQuantize ops and ops the OpenVINO CPU plugin computes wrongly in such a model "
                   "(docs/cpu-plugin-bugs.md): %s. The engine runs a copy rewritten to compute the same values right; "
                   "the model itself still gives wrong results when compiled for the CPU elsewhere. Fix it before "
                   "saving with pot_torch.graph.cpu_rewrites.rewrite_for_cpu(model)", model_name, what)
