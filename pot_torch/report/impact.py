"""What returning one quantizer group to floating point does, from one evaluation per group on a few samples.

Each group is evaluated, reverted alone, on the ranking sample (its size is the report's budget plan, ``budget.py``):
half drawn from the items INT8 gets most wrong (AccuracyAwareQuantization's ``hardest_samples``), half from the
others. Every measure is a paired difference against the INT8 model on the same items (what
reverting the group changes, not what the items are like), and an estimate for the whole validation set weights
each stratum's mean by the size of the set it was drawn from:

- ``closeness``: the change in the per-item cosine similarity of the model's outputs to the FP model's outputs
  (the ranking statistic: continuous, so a handful of items rank the groups; on benchmarks/bench_report.py's
  graded model it ranks them like their measured whole-set top-1 effect far more steadily than the 0/1 metric of
  the same items);
- ``estimate``: the change in the task metric (whole set), ``hard_gain``: on the hard items alone
  (AccuracyAwareQuantization's ranking measure; the revert walk follows it).

Evaluations on the ranking sample read the outputs, so they run at the engine's statistics precision (f32 unless
``stat_inference_precision`` says otherwise), the whole-set ones at its evaluation precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Mapping, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, values_by_sample
from pot_torch.algorithms.quantization.layer_revert import MemberGroup, reverted
from pot_torch.api.engine import Engine
from pot_torch.graph.node_key import output_key
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.utils.logger import progress_bar_enabled

#: Output elements per item compared with the FP model's (evenly spaced ones of a larger output), so that the
#: outputs of a segmentation or detection model stay small in memory.
OUTPUT_ELEMENTS = 4096


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

    def estimate(self, values: Mapping[int, float]) -> float:
        """The whole-set mean of per-item ``values`` (``{index: value}``, at least this sample's items): each
        stratum's sampled mean weighted by its size."""
        return self.estimate_and_error(values)[0]

    def estimate_and_error(self, values: Mapping[int, float]) -> Tuple[float, float]:
        """:meth:`estimate` and its standard error (stratified sampling without replacement)."""
        total = self.hard_total + self.rest_total
        mean, variance = 0.0, 0.0
        for items, size in ((self.hard, self.hard_total), (self.rest, self.rest_total)):
            if not items:
                continue
            stratum = np.asarray([values[i] for i in items], dtype=np.float64)
            weight = size / total
            mean += weight * float(np.nanmean(stratum))
            if len(items) > 1:
                variance += weight ** 2 * (1 - len(items) / size) * float(np.nanvar(stratum, ddof=1)) / len(items)
        return mean, float(np.sqrt(variance))


@dataclass(frozen=True)
class Outputs:
    """One model's per-item metric ``values`` and ``outputs`` (``[items, elements]``) on a ranking sample."""

    values: np.ndarray
    outputs: np.ndarray


@dataclass(frozen=True)
class GroupImpact:
    """What reverting one group alone changes against INT8 (positive = better).

    :ivar closeness: output cosine similarity to FP, whole-set estimate (the ranking statistic).
    :ivar estimate: the metric, whole-set estimate (the metric's units).
    :ivar hard_gain: the metric on the sampled items INT8 gets most wrong.
    :ivar values: the reverted model's per-item metric values on the sample (the walk's first step reuses them).
    """

    closeness: float
    estimate: float
    hard_gain: float
    values: np.ndarray


def ranking_sample(hardest: Sequence[int], indices: Sequence[int], size: int, seed: int) -> RankingSample:
    """Draw the :class:`RankingSample` (``seed``) of ``size`` items: half from ``hardest`` (the items
    AccuracyAwareQuantization ranks on, ``hardest_samples``), half from the other ``indices`` (all from one
    stratum when the other is too small)."""
    chosen = set(int(i) for i in hardest)
    others = [int(i) for i in indices if int(i) not in chosen]
    size = min(size, len(chosen) + len(others))
    hard_count = min(len(chosen), size - min(size // 2, len(others)))
    rng = np.random.default_rng(seed)
    hard = sorted(int(i) for i in rng.choice(sorted(chosen), size=hard_count, replace=False)) if hard_count else []
    rest = sorted(int(i) for i in rng.choice(others, size=size - hard_count, replace=False)) if others else []
    return RankingSample(hard, rest, len(chosen), len(others))


def _flat_output(batch: np.ndarray) -> np.ndarray:
    """A batch output as ``[items, at most OUTPUT_ELEMENTS]`` float64 (evenly spaced elements of a larger one)."""
    flat = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1)
    if flat.shape[1] > OUTPUT_ELEMENTS:
        flat = flat[:, np.linspace(0, flat.shape[1] - 1, OUTPUT_ELEMENTS).astype(np.int64)]
    return flat


def evaluate_outputs(engine: Engine, model: Any, spec: MetricSpec, indices: Sequence[int]) -> Outputs:
    """One evaluation of ``model`` (a ``CompressedModel``) on ``indices`` (sorted): per-item metric values and
    the outputs of all its results, concatenated per item. The engine reads outputs at its statistics precision
    (``stat_inference_precision``, f32 by default), so every evaluation on a ranking sample runs at it: quieter
    than bf16, and the same for the paired models."""
    keys: List[Hashable] = [output_key(result.input_value(0)) for result in model.get_model().get_results()]
    layout: Dict[Hashable, Dict[str, Callable]] = {key: {"output": _flat_output} for key in keys}
    engine.set_model(model)
    metrics, stats = engine.predict(layout, BatchSampler(engine.data_loader, subset_indices=list(indices)),
                                    metric_per_sample=True)
    if metrics is None:
        raise ValueError("the engine returned no metric values: check that the data loader gives annotations")
    outputs = np.concatenate([np.concatenate(stats[key]["output"], axis=0) for key in keys], axis=1)
    return Outputs(values_by_sample(metrics[0], spec, len(indices)), outputs)


def cosine(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of ``outputs`` to ``reference`` (1 where both rows are zero)."""
    dot = np.sum(outputs * reference, axis=1)
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
    with np.errstate(all="ignore"):
        return np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0),
                        np.where(np.linalg.norm(outputs - reference, axis=1) == 0, 1.0, 0.0))


def group_impacts(engine: Engine, int8: Any, groups: Sequence[MemberGroup], biases: Mapping, spec: MetricSpec,
                  sample: RankingSample, fp: Outputs, quantized: Outputs) -> List[GroupImpact]:
    """Evaluate each group reverted alone on ``sample`` (one evaluation each, progress bar) against the INT8
    model's ``quantized`` values and outputs, the FP model's ``fp`` outputs on the same items."""
    indices = sample.indices
    sign = 1.0 if spec.higher_better else -1.0
    base_closeness = cosine(quantized.outputs, fp.outputs)
    hard = RankingSample(sample.hard, [], len(sample.hard), 0)
    impacts = []
    for group in tqdm(groups, desc="Reverting each group", disable=not progress_bar_enabled()):
        result = evaluate_outputs(engine, reverted(int8, [group], biases), spec, indices)
        gain = dict(zip(indices, sign * (result.values - quantized.values)))
        closer = dict(zip(indices, cosine(result.outputs, fp.outputs) - base_closeness))
        impacts.append(GroupImpact(sample.estimate(closer), sample.estimate(gain), hard.estimate(gain),
                                   result.values))
    return impacts


def paired_outputs(engine: Engine, fp_model: Any, int8: Any, spec: MetricSpec,
                   sample: RankingSample) -> Tuple[Outputs, Outputs]:
    """The FP and INT8 models' :class:`Outputs` on ``sample`` (two evaluations)."""
    return (evaluate_outputs(engine, fp_model, spec, sample.indices),
            evaluate_outputs(engine, int8, spec, sample.indices))
