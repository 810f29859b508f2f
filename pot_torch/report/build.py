"""``build_report``: which quantizer group costs accuracy, and what it buys in speed, measured on real inference.

The accuracy side is AccuracyAwareQuantization's machinery (``accuracy_aware``): the same DefaultQuantization,
the same quantizer groups and revert (FakeQuantize ops removed, bias before correction put back), reused from the
caller when it has them (``start``). Its cost is bounded by one AccuracyAwareQuantization ranking step, planned up
front (``budget.py``): each group is evaluated once on a ranking sample (``impact.py``: paired, stratified
estimates; the groups are ranked by how much closer to FP their revert brings the outputs), the recommendation
walks on the same items (``walk.py``) and its set is checked on all items when the budget has room for it (or
the caller measured that set).
Around it: SQNR of each group's output against FP and the activation range shape (statistics passes, no metric),
per-group time from OpenVINO's performance counters, and the latency of each model on the walk.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization, Candidate, StartingPoint
from pot_torch.algorithms.quantization.accuracy_evaluation import (MetricSpec, check_annotations, choose_metric,
                                                                   evaluate, hardest_samples)
from pot_torch.algorithms.quantization.layer_revert import MemberGroup
from pot_torch.algorithms.quantization.quantizer_groups import quantizer_groups
from pot_torch.api.engine import Engine
from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.hardware.config import load_hardware_config
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.report.budget import Budget
from pot_torch.report.data import GroupRow, Report
from pot_torch.report.impact import GroupImpact, group_impacts, paired_outputs, ranking_sample
from pot_torch.report.measure import range_shapes, sqnr_db
from pot_torch.report.profile import group_times, node_times, owned_names
from pot_torch.report.walk import Anchor, WalkInputs, walk
from pot_torch.utils.latency import example_inputs, measure_latency, median_ms
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Statistics samples for SQNR and activation ranges at most (the first ones of the calibration data).
STATISTICS_SAMPLES = 300


def build_report(model: CompressedModel, engine: Engine, params: Optional[Mapping[str, Any]] = None,
                 calibration_engine: Optional[Engine] = None, *, latency_threads: Optional[int] = 1,
                 latency_rounds: int = 5, start: Optional[StartingPoint] = None) -> Report:
    """Quantize ``model`` with DefaultQuantization and report, per quantizer group, what it costs and buys.

    :param model: the floating-point model (left unchanged).
    :param engine: an engine over annotated validation data with a metric (as for AccuracyAwareQuantization).
    :param params: AccuracyAwareQuantization's parameters (DefaultQuantization's, ``maximal_drop``,
        ``drop_type``, ``ranking_subset_size``, ``metrics`` ...; POT's defaults otherwise).
    :param calibration_engine: an engine over calibration data (default: ``engine``).
    :param latency_threads: inference threads when timing (``None``: all cores); timing uses the CPU's default
        precision (bf16 where the CPU has it) and the LATENCY hint.
    :param latency_rounds: interleaved rounds of :func:`pot_torch.utils.latency.measure_latency`.
    :param start: what the caller already measured with the same ``params`` and data (its DefaultQuantization
        model, biases before correction, FP and INT8 values on the evaluation indices): reused, not measured
        again (AccuracyAwareQuantization's ``starting_point``; ``QuantizationResult.report`` passes its model).
    :raises ValueError: a cascade, an engine without metric or annotations, a model without quantizable layers.
    """
    if model.is_cascade:
        raise ValueError(f"the report covers one model; got the cascade {model.member_names}: report on each "
                         "member as a CompressedModel of its own")
    search = AccuracyAwareQuantization(params, engine, calibration_engine)
    config = search.config
    spec = choose_metric(engine, config.metrics)
    check_annotations(engine)
    indices = search.evaluation_indices(spec)
    start = start or StartingPoint(Candidate(search.default_quantization(model, {}), 0.0, 0.0))
    int8 = start.int8.model
    biases = start.biases if start.biases is not None else search.biases_before_correction(model, start.int8)
    groups = _groups(search, int8)
    if not groups:
        raise ValueError(f"DefaultQuantization put no FakeQuantize op in '{model.name}': nothing to report on "
                         "(check 'ignored' and the target_device's quantizable ops)")
    ranking_size = min(config.ranking_subset_size or min(len(indices), 300), len(indices))
    measured = [what for what, known in (("FP", start.fp_values), ("INT8", start.int8_values)) if known is None]
    logger.info("The report's evaluation budget is one AccuracyAwareQuantization ranking step: %d quantizer groups x "
                "the samples INT8 gets wrong (at most %d), so at most %d samples through the metric%s",
                len(groups), ranking_size, len(groups) * ranking_size,
                f"; besides, {' and '.join(measured)} on all {len(indices)} samples" if measured else "")
    fp_value, fp_values = _measured(engine, model, spec, indices, start.fp_value, start.fp_values)
    int8_value, int8_values = _measured(engine, int8, spec, indices, start.int8.value, start.int8_values)
    reference = spec.baseline_value if spec.baseline_value is not None else fp_value
    hardest = hardest_samples(spec, fp_values, int8_values, indices, ranking_size)
    budget = Budget.plan(len(groups), len(hardest), len(indices))
    over_budget = _announce(budget)
    sample = ranking_sample(hardest, indices, budget.sample_size, int(config.seed))
    fp_outputs, int8_outputs = paired_outputs(engine, model, int8, spec, sample)
    budget.spend("outputs", 2 * len(sample.indices))
    impacts = group_impacts(engine, int8, groups, biases, spec, sample, fp_outputs, int8_outputs)
    budget.spend("ranking", len(groups) * len(sample.indices))
    allowed = config.maximal_drop * (abs(reference) if config.drop_type == "relative" else 1.0)
    report = Report(model.name, spec.name, spec.higher_better, fp_value, int8_value, reference, allowed,
                    len(indices), len(sample.indices), 0, _precision(engine))
    report.aaq_ranking_evaluations, report.check_planned = budget.limit, budget.check_planned
    report.notes.extend([over_budget] if over_budget else [])
    report.groups = _rows(int8.get_model(), groups, impacts)
    # AccuracyAwareQuantization's order: the gain on the items INT8 gets wrong finds the groups that matter together
    order = sorted(range(len(groups)), key=lambda i: (-impacts[i].hard_gain, -impacts[i].closeness, i))
    inputs = WalkInputs(engine, int8, groups, biases, spec, sample, indices,
                        [Anchor(int8_value, int8_outputs.values), Anchor(fp_value, fp_outputs.values)],
                        [impact.values for impact in impacts], start.measured)
    curve_models = walk(report, inputs, order, budget)
    report.evaluations = {"fp": 0 if start.fp_values is not None else len(indices),
                          "int8": 0 if start.int8_values is not None else len(indices), **budget.spent}
    logger.info("The report put %d samples through the metric of its budget of %d (%s)", budget.total, budget.limit,
                ", ".join(f"{what} {count}" for what, count in budget.spent.items()))
    stat_indices = calibration_indices(config, len(search._calibration_engine.data_loader),
                                       min(config.stat_subset_size or STATISTICS_SAMPLES, STATISTICS_SAMPLES))
    report.statistics_samples = len(stat_indices)
    _measure_noise_and_ranges(report, search._calibration_engine, model, int8, groups, stat_indices)
    problem = _timing_problem(model.get_model())
    if problem is None:
        try:
            _measure_time(report, model, int8, groups, curve_models, latency_threads, latency_rounds)
        except RuntimeError as error:
            problem = f"the models did not run on random inputs ({' '.join(str(error).split())[:300]})"
    if problem is not None:
        message = (f"Timing skipped: {problem}. Reshape the model to static input shapes (model.reshape(...)) "
                   "to get per-layer times and latency.")
        logger.warning(message)
        report.notes.append(message)
    return report


def _announce(budget: Budget) -> Optional[str]:
    """State the budget's plan before spending it; the warning when not even its smallest sample fits."""
    n, groups = budget.sample_size, budget.groups
    check = (f"and one check of the recommendation on all {budget.items} samples" if budget.check_planned else
             f"and no check on all {budget.items} samples (it would take more than half of the budget): the "
             "recommendation's figure will be an estimate unless it is a set the caller measured")
    logger.info("Evaluation budget %d = %d groups x %d samples (one AccuracyAwareQuantization ranking step): FP and "
                "INT8 outputs on %d ranking samples (%d), the %d groups on them (%d), at most %d revert steps on them "
                "(%d), %s", budget.limit, groups, budget.limit // groups, n, 2 * n, groups, groups * n, groups - 1,
                (groups - 1) * n, check)
    if not budget.over_budget:
        return None
    message = (f"The evaluation budget {budget.limit} is smaller than ranking {groups} groups on one sample needs "
               f"({(groups + 2) * n}: INT8 gets almost no sample wrong): the report ranks on one sample and exceeds "
               "its budget")
    logger.warning(message)
    return message


def _measured(engine: Engine, model: CompressedModel, spec: MetricSpec, indices: Sequence[int],
              value: Optional[float], values: Optional[np.ndarray]) -> Tuple[float, np.ndarray]:
    """``(value, per-sample values)`` of ``model`` on ``indices``: the known ones, else evaluated."""
    if values is not None and value is not None:
        return value, values
    return evaluate(engine, model, spec, indices, per_sample=True)


def _groups(search: AccuracyAwareQuantization, int8: CompressedModel) -> List[MemberGroup]:
    agnostic = load_hardware_config(search.config.target_device).quantize_agnostic
    return [(None, group) for group in quantizer_groups(int8.get_model(), agnostic)]


def _precision(engine: Engine) -> str:
    """The precision of the metric (the engine's ``inference_precision``, else the CPU default) and of the latency
    (the CPU default), named once when they are the same."""
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    chosen = engine.config.get("inference_precision") if isinstance(getattr(engine, "config", None), Mapping) else None
    return default if not chosen or chosen == default else f"metric {chosen}, latency {default}"


def _rows(int8_model: Any, groups: Sequence[MemberGroup], impacts: Sequence[GroupImpact]) -> List[GroupRow]:
    ops = ops_by_name(int8_model)
    return [GroupRow(index, list(group.layers), [ops[name].get_type_name() for name in group.layers],
                     list(group.fq_names), closeness=impact.closeness, impact=impact.estimate,
                     hard_gain=impact.hard_gain)
            for index, ((_, group), impact) in enumerate(zip(groups, impacts))]


def _measure_noise_and_ranges(report: Report, engine: Engine, model: CompressedModel, int8: CompressedModel,
                              groups: Sequence[MemberGroup], indices: Sequence[int]) -> None:
    plain = [group for _, group in groups]
    for row, figure in zip(report.groups, sqnr_db(engine, model.get_model(), int8.get_model(), plain, indices)):
        row.sqnr_db = figure
    for row, (ratio, spread, channel) in zip(report.groups, range_shapes(engine, model.get_model(),
                                                                         int8.get_model(), plain, indices)):
        row.outlier_ratio, row.channel_spread, row.outlier_channel = ratio, spread, channel


def _timing_problem(model: ov.Model) -> Optional[str]:
    """Why the model cannot be timed on example inputs (an input with a dynamic axis besides the batch: its
    size would be a guess), or None."""
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or any(dim.is_dynamic for dim in list(shape)[1:]):
            return f"input '{port.get_any_name()}' has the dynamic shape {shape}, so its size for timing is unknown"
    return None


def _measure_time(report: Report, model: CompressedModel, int8: CompressedModel, groups: Sequence[MemberGroup],
                  curve_models: Mapping[str, Any], threads: Optional[int], rounds: int) -> None:
    """Per-group node times (PERF_COUNT) and the latency of the FP, INT8 and walk models."""
    fp_model, int8_model = model.get_model(), int8.get_model()
    inputs = example_inputs(fp_model)
    owned = owned_names(int8_model, [(group.layers, group.fq_names) for _, group in groups])
    int8_times, int8_total = group_times(node_times(int8_model, inputs, threads=threads), owned, len(groups))
    fp_times, _ = group_times(node_times(fp_model, inputs, threads=threads), owned, len(groups))
    for row, int8_us, fp_us in zip(report.groups, int8_times, fp_times):
        row.int8_us, row.fp_us, row.saved_us = int8_us, fp_us, fp_us - int8_us
        row.latency_share = int8_us / int8_total if int8_total else None
    timed = measure_latency({"FP": fp_model, "INT8": int8_model, **curve_models}, inputs, rounds=rounds,
                            threads=threads)
    report.fp_latency_ms, report.int8_latency_ms = median_ms(timed["FP"]), median_ms(timed["INT8"])
    report.recommended_latency_ms = report.int8_latency_ms
    for position, point in enumerate(report.curve, start=1):
        label = f"step {position}"
        if label in timed:
            point.latency_ms = median_ms(timed[label])
            report.recommended_latency_ms = point.latency_ms
