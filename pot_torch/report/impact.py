"""What returning one quantizer group to floating point does to the metric, from one evaluation per group.

Each group is evaluated, reverted alone, on a sample of as many validation items as AccuracyAwareQuantization
ranks on (its cost): half drawn from the items INT8 gets most wrong (AccuracyAwareQuantization's
``hardest_samples``), half from the others. The first half gives the gain on the items INT8 gets wrong
(AccuracyAwareQuantization's ranking, which finds the groups that matter together); both halves, weighted by the
sizes of the sets they were drawn from, estimate the change over the whole validation set, which a revert can
also make worse (a partly quantized model makes errors of its own): on benchmarks/bench_report.py's models this
estimate ranks the groups like their measured whole-set effect, the hardest items alone do not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, evaluate, hardest_samples
from pot_torch.algorithms.quantization.layer_revert import MemberGroup, reverted
from pot_torch.api.engine import Engine
from pot_torch.utils.logger import progress_bar_enabled


@dataclass(frozen=True)
class RankingSample:
    """The items each group is evaluated on: ``hard`` drawn from the ``hard_total`` items INT8 gets most wrong,
    ``rest`` from the ``rest_total`` others."""

    hard: List[int]
    rest: List[int]
    hard_total: int
    rest_total: int

    @property
    def indices(self) -> List[int]:
        """All items, sorted."""
        return sorted(self.hard + self.rest)


@dataclass(frozen=True)
class GroupImpact:
    """Metric gained by reverting one group alone (positive = better, the metric's units).

    :ivar hard_gain: on the sampled items INT8 gets most wrong.
    :ivar estimate: over the whole validation set (stratified estimate).
    """

    hard_gain: float
    estimate: float


def ranking_sample(spec: MetricSpec, reference: np.ndarray, quantized: np.ndarray, indices: Sequence[int],
                   count: int, seed: int) -> RankingSample:
    """Draw the :class:`RankingSample` (``seed``): as many items as ``hardest_samples(..., count)`` gives, half
    from those, half from the other ``indices``."""
    hardest = hardest_samples(spec, reference, quantized, indices, count)
    chosen = set(hardest)
    others = [int(i) for i in indices if int(i) not in chosen]
    rng = np.random.default_rng(seed)
    hard_count = len(hardest) - min(len(hardest) // 2, len(others))
    hard = sorted(int(i) for i in rng.choice(hardest, size=hard_count, replace=False))
    rest = sorted(int(i) for i in rng.choice(others, size=len(hardest) - hard_count, replace=False)) if others else []
    return RankingSample(hard, rest, len(hardest), len(others))


def group_impacts(engine: Engine, int8: Any, groups: Sequence[MemberGroup], biases: Mapping, spec: MetricSpec,
                  sample: RankingSample, int8_values: Mapping[int, float]) -> List[GroupImpact]:
    """Evaluate each group reverted alone on ``sample`` (one evaluation each, progress bar) against the INT8
    model's per-item values ``int8_values`` (``{index: value}``)."""
    indices = sample.indices
    base = np.array([int8_values[i] for i in indices])
    sign = 1.0 if spec.higher_better else -1.0
    impacts = []
    for group in tqdm(groups, desc="Reverting each group", disable=not progress_bar_enabled()):
        _, values = evaluate(engine, reverted(int8, [group], biases), spec, indices, per_sample=True)
        impacts.append(impact_of(dict(zip(indices, sign * (values - base))), sample))
    return impacts


def impact_of(gain: Mapping[int, float], sample: RankingSample) -> GroupImpact:
    """The :class:`GroupImpact` of per-item gains ``{index: gain}`` (at least the items of ``sample``)."""
    def mean(items: Sequence[int]) -> float:
        return float(np.nanmean([gain[i] for i in items])) if items else 0.0

    total = sample.hard_total + sample.rest_total
    estimate = (sample.hard_total * mean(sample.hard) + sample.rest_total * mean(sample.rest)) / total
    return GroupImpact(mean(sample.hard), estimate)
