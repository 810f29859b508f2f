"""The recommendation: groups reverted cumulatively, measured on the ranking sample, checked once on all items.

The walk follows AccuracyAwareQuantization's first pass (its order, a revert that raises the drop undone, stop
when the drop is within ``maximal_drop``), but measures each step on the ranking sample only, as a paired,
stratified estimate of the whole-set metric (INT8's whole-set value plus the estimated change; it stops when the
estimate plus ``CONFIDENCE`` standard errors is within the allowed drop), and the first step reuses the ranking
evaluation of its group. Only the final set is evaluated on every item: the recommendation's
metric and drop on the page are measured, not estimated.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, evaluate
from pot_torch.algorithms.quantization.layer_revert import MemberGroup, reverted
from pot_torch.api.engine import Engine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.report.data import CurvePoint, Report
from pot_torch.report.impact import GroupImpact, RankingSample, evaluate_outputs
from pot_torch.utils.logger import progress_bar_enabled

#: The walk stops when the estimated drop plus this many standard errors of the estimate is within the allowed
#: drop (one-sided 84%), so that the final set, measured on all items, meets it more often than not.
CONFIDENCE = 1.0


def walk(report: Report, engine: Engine, int8: CompressedModel, order: Sequence[int], groups: Sequence[MemberGroup],
         biases: Any, spec: MetricSpec, sample: RankingSample, int8_values: np.ndarray,
         impacts: Sequence[GroupImpact], indices: Sequence[int]) -> Dict[str, Any]:
    """Revert groups in ``order`` until the estimated drop is within ``report.maximal_drop``, then measure the
    set on ``indices``; while that misses the drop, go on with the next groups measured on ``indices``. Fills
    ``report.curve``, ``recommended``, ``recommended_metric`` and the ``steps`` and ``check`` evaluations.
    Returns the accepted models by label for timing.

    :param int8_values: the INT8 model's per-item values on ``sample.indices``.
    """
    state = _Walk(report, int8, groups, biases)
    pending = list(order)
    with tqdm(total=len(order), desc="Revert walk", disable=not progress_bar_enabled()) as progress:
        while pending and state.drop + CONFIDENCE * state.error > report.maximal_drop:
            index = pending.pop(0)
            candidate = state.candidate(index)
            if state.kept:
                values = evaluate_outputs(engine, candidate, spec, sample.indices).values  # as the ranking
                report.evaluations["steps"] += len(sample.indices)
            else:
                values = impacts[index].values
            change, error = sample.estimate_and_error(dict(zip(sample.indices, values - int8_values)))
            state.step(index, candidate, report.int8_metric + change, error, len(sample.indices))
            progress.update()
        estimated = state.drop
        if state.kept:
            state.measure(evaluate(engine, state.candidate(None), spec, indices)[0], len(indices))
        while pending and state.drop > report.maximal_drop:
            index = pending.pop(0)
            candidate = state.candidate(index)
            state.step(index, candidate, evaluate(engine, candidate, spec, indices)[0], 0.0, len(indices))
            report.evaluations["check"] += len(indices)
            progress.update()
    report.recommended = state.kept
    report.recommended_metric = state.value
    if report.recommended_drop > report.maximal_drop:
        report.notes.append(
            f"The recommendation does not meet the allowed drop {report.maximal_drop:.6g}: measured on all "
            f"{len(indices)} items its drop is {report.recommended_drop:.6g} (the walk, on {len(sample.indices)} "
            f"items, estimated {estimated:.6g}). AccuracyAwareQuantization, which has a second pass, may meet it.")
    return state.models


class _Walk:
    """The walk's state: the groups kept, the metric, drop and standard error of that set, the accepted models."""

    def __init__(self, report: Report, int8: CompressedModel, groups: Sequence[MemberGroup], biases: Any) -> None:
        self.report, self.int8, self.groups, self.biases = report, int8, groups, biases
        self.kept: List[int] = []
        self.value, self.error = report.int8_metric, 0.0
        self.models: Dict[str, Any] = {}
        report.evaluations.update(steps=0, check=0)

    @property
    def drop(self) -> float:
        """The drop of the kept set."""
        return self.report.drop(self.value)

    def candidate(self, index: Optional[int]) -> CompressedModel:
        """INT8 with the kept groups and ``index`` (if not None) reverted."""
        chosen = self.kept + ([] if index is None else [index])
        return reverted(self.int8, [self.groups[i] for i in chosen], self.biases)

    def step(self, index: int, candidate: CompressedModel, value: float, error: float, samples: int) -> None:
        """Record reverting ``index`` too (metric ``value`` on ``samples`` items); keep it unless the drop rose."""
        drop = self.report.drop(value)
        accepted = drop <= self.drop
        self.report.curve.append(CurvePoint(self.kept + [index], value, drop, accepted=accepted, samples=samples))
        if accepted:
            self.kept.append(index)
            self.value, self.error = value, error
            self.models[f"step {len(self.report.curve)}"] = candidate.get_model()

    def measure(self, value: float, samples: int) -> None:
        """The kept set measured on all ``samples`` items: its metric from now on."""
        self.value, self.error = value, 0.0
        self.report.evaluations["check"] += samples
