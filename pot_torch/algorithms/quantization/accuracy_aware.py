"""``AccuracyAwareQuantization``: INT8 within a promised accuracy drop, reverting the most harmful layers."""
from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization.accuracy_evaluation import (MetricSpec, check_annotations, choose_metric,
                                                                    evaluate, evaluate_each, hardest_samples)
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.algorithms.quantization.layer_revert import (LayerKey, MemberGroup, biases_before_correction,
                                                            recorded_biases, reverted)
from pot_torch.algorithms.quantization.quantizer_groups import quantizer_groups
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.hardware.config import load_hardware_config
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger, progress_bar_enabled

logger = get_logger(__name__)

#: A bias-correction ``threshold`` no shift is below: DefaultQuantization with it corrects no bias.
NO_BIAS_CORRECTION = sys.float_info.min


class AccuracyDropNotMetWarning(UserWarning):
    """AccuracyAwareQuantization could not bring the accuracy drop within ``maximal_drop``."""


@dataclass
class Candidate:
    """A quantized model the search holds: its metric ``value``, its ``drop`` from the reference, the quantizer
    groups reverted so far and the DefaultQuantization overrides it was made with."""

    model: CompressedModel
    drop: float
    value: float
    reverted: List[MemberGroup] = field(default_factory=list)
    #: the DefaultQuantization parameters the model was quantized with, beyond the algorithm's own
    overrides: Dict[str, Any] = field(default_factory=dict)


@dataclass
class StartingPoint:
    """What a quantization run measured before reverting anything, for the report to reuse
    (``pot_torch.report.build_report``'s ``start``) instead of measuring it again.

    :ivar int8: the DefaultQuantization model (with ``int8.overrides``), its ``value`` on the evaluation indices.
    :ivar biases: its layers' biases before bias correction (``None``: not known yet).
    :ivar fp_value: the FP model's metric on the evaluation indices (``None``: not measured).
    :ivar fp_values: per-sample values of the FP model and ``int8_values`` of ``int8.model`` on them.
    :ivar measured: the metric on the evaluation indices of each set of groups the run reverted from ``int8``.
    """

    int8: Candidate
    biases: Optional[Dict[LayerKey, np.ndarray]] = None
    fp_value: Optional[float] = None
    fp_values: Optional[np.ndarray] = None
    int8_values: Optional[np.ndarray] = None
    measured: Dict[FrozenSet[MemberGroup], float] = field(default_factory=dict)


@COMPRESSION_ALGORITHMS.register("AccuracyAwareQuantization")
class AccuracyAwareQuantization(Algorithm):
    """DefaultQuantization, then layers returned to floating point, most harmful first, until the metric drop
    is within ``maximal_drop``.

    The steps: evaluate the FP model and the default INT8 model on the validation data (per sample); if the
    drop is too large, optionally try the mixed preset (``convert_to_mixed_preset``); rank the quantizer
    groups once by the metric each one's removal gives on the ``ranking_subset_size`` samples the INT8 model
    got most wrong; then revert groups in that order, evaluating each step, keeping a step only if it does
    not increase the drop (``use_prev_if_drop_increase``), until the drop is met, nothing is left to revert,
    or ``max_iter_num`` steps were taken. A reverted layer is the floating-point layer again: its FakeQuantize
    ops go and its bias goes back to its value before bias correction (``layer_revert``). When the target
    cannot be met it warns (``AccuracyDropNotMetWarning``) and returns the best model found.
    """

    def __init__(self, config: Any, engine: Any, calibration_engine: Any = None) -> None:
        """:param calibration_engine: an engine over separate calibration data for the statistics of
        DefaultQuantization (default: ``engine``, whose data then serves both, as in POT)."""
        super().__init__(resolve_params("AccuracyAwareQuantization", config), engine)
        self._calibration_engine = calibration_engine or engine
        #: Layers left in floating point by the last ``run`` (op friendly names, in revert order).
        self.reverted_layers: List[str] = []
        #: Metric drop of the model returned by the last ``run``.
        self.final_drop: Optional[float] = None
        #: Metric of the FP model and of the returned model in the last ``run``.
        self.fp_metric: Optional[float] = None
        self.final_metric: Optional[float] = None
        #: Name of the metric optimised in the last ``run``.
        self.metric_name: Optional[str] = None
        #: What the last ``run`` measured before reverting (its report reuses it).
        self.starting_point: Optional[StartingPoint] = None
        self._input_model: Optional[CompressedModel] = None

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Quantize ``model`` (left unchanged) within the accuracy budget; return the new model."""
        config = self.config
        if config.report_path:  # fail before the work, not after it
            from pot_torch.report import report_paths  # (pot_torch.report builds on this module)

            report_paths(config.report_path)
        self._input_model = model
        spec = choose_metric(self.engine, config.metrics)
        check_annotations(self.engine)
        indices = self.evaluation_indices(spec)
        fp_value, fp_per_sample = evaluate(self.engine, model, spec, indices, per_sample=True)
        reference = spec.baseline_value if spec.baseline_value is not None else fp_value
        self.fp_metric, self.metric_name = fp_value, spec.name
        allowed = config.maximal_drop * (abs(reference) if config.drop_type == "relative" else 1.0)
        logger.info("Baseline %s: %.6g (FP model %.6g); allowed drop %.6g", spec.name, reference, fp_value, allowed)

        best, per_sample = self._quantize(model, spec, reference, indices, {})
        logger.info("Default INT8 model: %s = %.6g, drop %.6g", spec.name, best.value, best.drop)
        for label, overrides in self._alternatives():
            if best.drop <= allowed:
                break
            candidate, candidate_per_sample = self._quantize(model, spec, reference, indices, overrides)
            logger.info("%s: %s = %.6g, drop %.6g", label, spec.name, candidate.value, candidate.drop)
            if candidate.drop < best.drop:
                best, per_sample = candidate, candidate_per_sample
        self.starting_point = StartingPoint(best, None, fp_value, fp_per_sample, per_sample)
        if best.drop <= allowed:
            return self._finish(best)
        biases = self.biases_before_correction(model, best)
        self.starting_point.biases = biases
        ranking = self._rank_groups(best.model, biases, spec, hardest_samples(
            spec, fp_per_sample, per_sample, indices, config.ranking_subset_size or min(len(indices), 300)))
        result = self._revert_until_met(best, ranking, biases, spec, reference, indices, allowed)
        if result.drop > allowed:
            message = (f"AccuracyAwareQuantization could not achieve the required accuracy drop: best drop "
                       f"{result.drop:.6g} > allowed {allowed:.6g} ({len(result.reverted)} layer groups "
                       f"reverted); returning the best model found")
            logger.warning(message)
            warnings.warn(message, AccuracyDropNotMetWarning)
        return self._finish(result)

    def _finish(self, result: Candidate) -> CompressedModel:
        self.reverted_layers = [layer for _, group in result.reverted for layer in group.layers]
        logger.info("%d layer(s) left in floating point%s; %s = %.6g, drop %.6g", len(self.reverted_layers),
                    f" ({', '.join(self.reverted_layers)})" if self.reverted_layers else "", self.metric_name,
                    result.value, result.drop)
        self.final_drop = result.drop
        self.final_metric = result.value
        if self.config.report_path:
            from pot_torch.report import build_report, write_report

            # with the settings the returned model was made with (e.g. the mixed preset), from what this run measured
            report = build_report(self._input_model, self.engine, {**self.config, **result.overrides},
                                  self._calibration_engine, start=self.starting_point)
            logger.info("Wrote the quantization report to %s", write_report(report, self.config.report_path)[0])
        return result.model

    def evaluation_indices(self, spec: MetricSpec) -> Sequence[int]:
        """The data set indices the metric is evaluated on: all, or with a ``baseline_value`` a seeded
        ``metric_subset_ratio`` of them."""
        size = len(self.engine.data_loader)
        if spec.baseline_value is None:
            return range(size)
        count = max(1, int(size * self.config.metric_subset_ratio))
        rng = np.random.default_rng(int(self.config.seed))
        return sorted(int(i) for i in rng.choice(size, size=count, replace=False))

    def _alternatives(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Whole-model settings tried before reverting layers: the mixed preset (``convert_to_mixed_preset``,
        from the performance preset) and, with ``tune_hyperparams``, the quantile range estimator and the
        other saturation-fix choices (a small grid, as POT's hyperparameter search). The user's own
        ``range_estimator`` entries are kept; the grid changes only its ``preset``."""
        config = self.config
        user_estimator = dict(config.range_estimator or {})
        user_preset = user_estimator.get("preset") or "default"
        mixed = config.convert_to_mixed_preset and config.preset == "performance"
        alternatives: List[Tuple[str, Dict[str, Any]]] = [("Mixed preset", {"preset": "mixed"})] if mixed else []
        if config.tune_hyperparams:
            presets = [config.preset] + (["mixed"] if config.preset == "performance" else [])
            for preset in presets:
                for estimator in ("default", "quantile"):
                    for saturation in ("first_layer", "no"):
                        overrides = {"preset": preset, "range_estimator": {**user_estimator, "preset": estimator},
                                     "saturation_fix": saturation}
                        if (preset, estimator, saturation) != (config.preset, user_preset, config.saturation_fix):
                            alternatives.append((f"Hyperparameters {overrides}", overrides))
        return alternatives

    def default_quantization(self, model: CompressedModel, overrides: Dict[str, Any]) -> CompressedModel:
        """DefaultQuantization of a copy of ``model`` with this algorithm's parameters and ``overrides``."""
        params = sub_params(self.config, "DefaultQuantization")
        params.update(overrides)
        return DefaultQuantization(params, self._calibration_engine).run(copy.deepcopy(model))

    def _quantize(self, model: CompressedModel, spec: MetricSpec, reference: float, indices: Sequence[int],
                  overrides: Dict[str, Any]) -> Tuple[Candidate, np.ndarray]:
        quantized = self.default_quantization(model, overrides)
        value, per_sample = evaluate(self.engine, quantized, spec, indices, per_sample=True)
        return Candidate(quantized, spec.drop(reference, value), value, overrides=overrides), per_sample

    def biases_before_correction(self, model: CompressedModel, start: Candidate) -> Dict[LayerKey, np.ndarray]:
        """The biases of ``start``'s layers before bias correction (reverting a layer puts its bias back): as bias
        correction recorded them, else from the same quantization of ``model`` run again without it."""
        biases = recorded_biases(start.model)
        if biases is None:
            uncorrected = self.default_quantization(model, {**start.overrides, "threshold": NO_BIAS_CORRECTION})
            biases = biases_before_correction(start.model, uncorrected)
        logger.info("%d layer(s) have a corrected bias, put back if the layer is reverted", len(biases))
        return biases

    def _rank_groups(self, model: CompressedModel, biases: Dict[LayerKey, np.ndarray], spec: MetricSpec,
                     ranking_subset: Sequence[int]) -> List[MemberGroup]:
        agnostic = load_hardware_config(self.config.target_device).quantize_agnostic
        groups: List[MemberGroup] = [
            (member["name"] if model.is_cascade else None, group)
            for member in model.models for group in quantizer_groups(member["model"], agnostic)
        ]
        logger.info("Ranking %d quantizer groups on %d samples", len(groups), len(ranking_subset))
        scores = []
        candidates = (reverted(model, [member_group], biases) for member_group in groups)
        values = evaluate_each(self.engine, candidates, spec, ranking_subset)  # in parallel on RayEngine
        show = progress_bar_enabled()
        for position, value in enumerate(tqdm(values, total=len(groups), desc="Ranking layers", disable=not show)):
            gain = value if spec.higher_better else -value
            scores.append((-gain, position))
        return [groups[position] for _, position in sorted(scores)]

    def _revert_until_met(self, start: Candidate, ranking: List[MemberGroup], biases: Dict[LayerKey, np.ndarray],
                          spec: MetricSpec, reference: float, indices: Sequence[int], allowed: float) -> Candidate:
        """Revert groups in ranking order until the drop is met.

        First pass: a revert that raises the drop is undone (``use_prev_if_drop_increase``). If the drop is
        still not met, a second pass reverts the groups the first pass kept, accepting every step: reverts
        that do not help one at a time can together, and reverting everything gives back the FP model.
        """
        current = best = start
        limit = self.config.max_iter_num
        total = 2 * len(ranking) if limit is None else min(limit, 2 * len(ranking))
        step = 0
        pending, kept = list(ranking), []
        for second_pass in (False, True):
            for number, member_group in enumerate(pending, start=1):
                step += 1
                label = f"{'Retry' if second_pass else 'Step'} {number}/{len(pending)}"
                if step > total:
                    logger.info("Reached max_iter_num = %d", limit)
                    return best
                model = reverted(current.model, [member_group], biases)
                value, _ = evaluate(self.engine, model, spec, indices)
                candidate = Candidate(model, spec.drop(reference, value), value,
                                       current.reverted + [member_group], current.overrides)
                self.starting_point.measured[frozenset(candidate.reverted)] = value  # the report reuses it
                layers = ", ".join(member_group[1].layers)
                if not second_pass and candidate.drop > current.drop and self.config.use_prev_if_drop_increase:
                    logger.info("%s: reverting [%s] raised the drop to %.6g; kept quantized for now", label,
                                layers, candidate.drop)
                    kept.append(member_group)
                    continue
                logger.info("%s: reverted [%s] to floating point: %s = %.6g, drop %.6g", label, layers,
                            spec.name, value, candidate.drop)
                current = candidate
                if current.drop < best.drop:
                    best = current
                if current.drop <= allowed:
                    return current
            pending = kept
        return best
