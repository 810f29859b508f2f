"""The recommendation: groups reverted cumulatively, estimated on the ranking sample, checked on all items when the
budget allows it.

The walk reverts groups in AccuracyAwareQuantization's order (the gain on the items INT8 gets wrong) and accepts
each step: on a few dozen items, whether one more group raises the drop is mostly noise (AccuracyAwareQuantization
decides it on all items). Each set is estimated on the ranking sample as a paired, stratified difference from a
model whose whole-set metric is known (INT8, FP, or a set already checked on all items: the one with the smallest
standard error; the first step reuses its group's ranking evaluation). The walk stops when the estimated drop is
within ``maximal_drop`` by ``CONFIDENCE_BEFORE_CHECK`` standard errors if a check on all items will follow, by
``CONFIDENCE_FINAL`` if the estimate is the final figure. Then the set is checked on all items: free when the
AccuracyAwareQuantization run that handed over its start measured that set, otherwise only if the budget
(``budget.py``) has room. A check that misses lets the walk go on, within what is left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, evaluate
from pot_torch.algorithms.quantization.layer_revert import MemberGroup, reverted
from pot_torch.api.engine import Engine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.report.budget import Budget
from pot_torch.report.data import CurvePoint, Report
from pot_torch.report.impact import RankingSample, evaluate_outputs
from pot_torch.utils.logger import progress_bar_enabled

#: Standard errors the estimated drop may exceed the allowed drop by when a check on all items will measure the
#: set (stop at the first set that plausibly meets it; a miss lets the walk go on).
CONFIDENCE_BEFORE_CHECK = -1.0
#: Standard errors the estimated drop must be within the allowed drop by when the estimate is the final figure.
CONFIDENCE_FINAL = 1.0


@dataclass(frozen=True)
class Anchor:
    """A model whose metric on all items is known (``value``), with its per-item ``values`` on the ranking sample:
    other models are estimated as paired differences from it."""

    value: float
    values: np.ndarray


@dataclass(frozen=True)
class WalkInputs:
    """What the walk reverts and evaluates.

    :ivar anchors: INT8 and FP as :class:`Anchor` s.
    :ivar alone: per group, its ranking evaluation's per-item values (the first step reuses them).
    :ivar known: metric on all ``indices`` of reverted sets a caller measured (AccuracyAwareQuantization's steps).
    """

    engine: Engine
    int8: CompressedModel
    groups: Sequence[MemberGroup]
    biases: Any
    spec: MetricSpec
    sample: RankingSample
    indices: Sequence[int]
    anchors: Sequence[Anchor]
    alone: Sequence[np.ndarray]
    known: Mapping[FrozenSet[MemberGroup], float]


def walk(report: Report, inputs: WalkInputs, order: Sequence[int], budget: Budget) -> Dict[str, Any]:
    """Revert groups in ``order`` until the drop is within ``report.maximal_drop`` (see the module), spending no
    more than ``budget`` allows. Fills ``report.curve``, the recommendation and its basis, the ``steps`` and
    ``check`` evaluations, and notes; returns the accepted models by label for timing."""
    state = _Walk(report, inputs, budget)
    pending = list(order)
    with tqdm(total=len(order), desc="Revert walk", disable=not progress_bar_enabled()) as progress:
        while True:
            while pending and not state.meets() and state.can_step():
                state.step(pending.pop(0))
                progress.update()
            if state.measured or not state.kept or not state.check():
                break
            if state.drop <= report.maximal_drop or not pending:
                break
    report.recommended = list(state.kept)
    report.recommended_metric = state.value
    report.recommended_basis = state.basis
    report.recommended_error = None if state.measured else state.error
    _notes(report, state, budget, len(pending))
    return state.models


def _notes(report: Report, state: "_Walk", budget: Budget, untried: int) -> None:
    """What the page must say about the recommendation's figure."""
    drop = report.recommended_drop
    if not state.measured:
        why = ("the check of an earlier set on all samples missed the allowed drop and the budget left no second one"
               if state.checks else f"a check on all {budget.items} samples would take more than half of the "
               f"evaluation budget ({budget.limit})")
        report.notes.append(
            f"The recommendation's {report.metric_name} {state.value:.6g} (drop {drop:.6g}) is an estimate from the "
            f"{budget.sample_size} ranking samples, {report.estimate_error_text}; it was not measured on all "
            f"{budget.items} samples: {why}. Measure it before relying on it.")
    if drop > report.maximal_drop:
        ran_out = (f" The evaluation budget ({budget.limit}) ran out with {untried} group(s) not tried."
                   if untried else "")
        report.notes.append(
            f"The recommendation does not meet the allowed drop {report.maximal_drop:.6g}: its drop is {drop:.6g} "
            f"({'measured on all samples' if state.measured else 'estimated'}).{ran_out} AccuracyAwareQuantization, "
            "which measures every step on all samples, may meet it.")


class _Walk:
    """The walk's state: the groups kept, the metric (measured or estimated), its standard error, the per-item
    values of the kept set on the ranking sample, the anchors, the accepted models."""

    def __init__(self, report: Report, inputs: WalkInputs, budget: Budget) -> None:
        self.report, self.inputs, self.budget = report, inputs, budget
        self.kept: List[int] = []
        self.value, self.error, self.measured, self.basis = report.int8_metric, 0.0, True, "measured"
        self.values: Optional[np.ndarray] = None
        self.model: Optional[CompressedModel] = None
        self.anchors: List[Anchor] = list(inputs.anchors)
        self.checks = 0
        self.models: Dict[str, Any] = {}

    @property
    def drop(self) -> float:
        """The drop of the kept set."""
        return self.report.drop(self.value)

    def _key(self) -> FrozenSet[MemberGroup]:
        return frozenset(self.inputs.groups[i] for i in self.kept)

    def _check_follows(self) -> bool:
        return self._key() in self.inputs.known or self.budget.affords(self.budget.items)

    def meets(self) -> bool:
        """Whether the kept set is within the allowed drop, with the confidence the next stage needs."""
        if self.measured:
            return self.drop <= self.report.maximal_drop
        confidence = CONFIDENCE_BEFORE_CHECK if self._check_follows() else CONFIDENCE_FINAL
        return self.drop + confidence * self.error <= self.report.maximal_drop

    def can_step(self) -> bool:
        """Whether the budget has room for one more step (keeping the planned check's items until it is done)."""
        reserve = self.budget.items if self.budget.check_planned and not self.checks else 0
        return not self.kept or self.budget.affords(self.budget.sample_size, reserve)

    def step(self, index: int) -> None:
        """Revert ``index`` too and estimate the set's metric on the ranking sample."""
        inputs = self.inputs
        first = not self.kept
        self.kept.append(index)
        self.model = reverted(inputs.int8, [inputs.groups[i] for i in self.kept], inputs.biases)
        if first:
            values = inputs.alone[index]
        else:
            values = evaluate_outputs(inputs.engine, self.model, inputs.spec, inputs.sample.indices).values
            self.budget.spend("steps", len(inputs.sample.indices))
        estimates = [(*inputs.sample.estimate_and_error(dict(zip(inputs.sample.indices, values - anchor.values))),
                      anchor.value) for anchor in self.anchors]
        change, self.error, base = min(estimates, key=lambda estimate: estimate[1])
        self.value, self.values, self.measured, self.basis = base + change, values, False, "estimate"
        self.report.curve.append(CurvePoint(list(self.kept), self.value, self.drop, samples=len(values),
                                            error=self.error))
        self.models[f"step {len(self.report.curve)}"] = self.model.get_model()

    def check(self) -> bool:
        """Measure the kept set on all items (free if a caller measured it); False if the budget has no room."""
        known = self.inputs.known.get(self._key())
        if known is not None:
            self.value, self.basis = known, "AccuracyAwareQuantization"
        elif self.budget.affords(self.budget.items):
            self.value = evaluate(self.inputs.engine, self.model, self.inputs.spec, self.inputs.indices)[0]
            self.budget.spend("check", self.budget.items)
            self.basis = "measured"
        else:
            return False
        self.checks += 1
        self.error, self.measured = 0.0, True
        self.anchors.append(Anchor(self.value, self.values))
        point = self.report.curve[-1]
        point.metric, point.drop, point.samples, point.error = self.value, self.drop, self.budget.items, None
        return True
