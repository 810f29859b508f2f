"""``build_report``: which quantizer group costs accuracy, and what it buys in speed, measured on real inference.

The accuracy side is AccuracyAwareQuantization's machinery (``accuracy_aware``): the same DefaultQuantization,
the same quantizer groups and revert (FakeQuantize ops removed, bias before correction put back), one evaluation
per group on as many samples as AccuracyAwareQuantization ranks on (``impact.py``: half from the samples INT8
gets most wrong, half from the others). The recommendation walks the groups in AccuracyAwareQuantization's order
(gain on the samples INT8 gets wrong) as its first pass does (a revert that raises the drop is undone) until the
drop is within ``maximal_drop``. Around it: SQNR of each group's output against FP and the activation range
shape (statistics passes, no metric), per-group time from OpenVINO's performance counters, and the latency of
each model on the walk.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import openvino as ov
from tqdm import tqdm

from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization, Candidate
from pot_torch.algorithms.quantization.accuracy_evaluation import (MetricSpec, check_annotations, choose_metric,
                                                                   evaluate)
from pot_torch.algorithms.quantization.layer_revert import MemberGroup, reverted
from pot_torch.algorithms.quantization.quantizer_groups import quantizer_groups
from pot_torch.api.engine import Engine
from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.hardware.config import load_hardware_config
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.report.data import CurvePoint, GroupRow, Report
from pot_torch.report.impact import GroupImpact, group_impacts, ranking_sample
from pot_torch.report.measure import range_shapes, sqnr_db
from pot_torch.report.profile import group_times, node_times, owned_names
from pot_torch.utils.latency import example_inputs, measure_latency, median_ms
from pot_torch.utils.logger import get_logger, progress_bar_enabled

logger = get_logger(__name__)

#: Statistics samples for SQNR and activation ranges at most (the first ones of the calibration data).
STATISTICS_SAMPLES = 300


def build_report(model: CompressedModel, engine: Engine, params: Optional[Mapping[str, Any]] = None,
                 calibration_engine: Optional[Engine] = None, *, latency_threads: Optional[int] = 1,
                 latency_rounds: int = 5) -> Report:
    """Quantize ``model`` with DefaultQuantization and report, per quantizer group, what it costs and buys.

    :param model: the floating-point model (left unchanged).
    :param engine: an engine over annotated validation data with a metric (as for AccuracyAwareQuantization).
    :param params: AccuracyAwareQuantization's parameters (DefaultQuantization's, ``maximal_drop``,
        ``drop_type``, ``ranking_subset_size``, ``metrics`` ...; POT's defaults otherwise).
    :param calibration_engine: an engine over calibration data (default: ``engine``).
    :param latency_threads: inference threads when timing (``None``: all cores); timing uses the CPU's default
        precision (bf16 where the CPU has it) and the LATENCY hint.
    :param latency_rounds: interleaved rounds of :func:`pot_torch.utils.latency.measure_latency`.
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
    int8 = search.default_quantization(model, {})
    biases = search.biases_before_correction(model, Candidate(int8, 0.0, 0.0))
    groups = _groups(search, int8)
    if not groups:
        raise ValueError(f"DefaultQuantization put no FakeQuantize op in '{model.name}': nothing to report on "
                         "(check 'ignored' and the target_device's quantizable ops)")
    ranking_size = min(config.ranking_subset_size or min(len(indices), 300), len(indices))
    logger.info("The report evaluates the metric on at most %d samples: FP and INT8 on %d each, %d quantizer "
                "groups on at most %d ranking samples, at most %d revert steps on %d",
                2 * len(indices) + len(groups) * ranking_size + len(groups) * len(indices), len(indices),
                len(groups), ranking_size, len(groups), len(indices))
    fp_value, fp_per_sample = evaluate(engine, model, spec, indices, per_sample=True)
    reference = spec.baseline_value if spec.baseline_value is not None else fp_value
    int8_value, int8_per_sample = evaluate(engine, int8, spec, indices, per_sample=True)
    sample = ranking_sample(spec, fp_per_sample, int8_per_sample, indices, ranking_size, int(config.seed))
    impacts = group_impacts(engine, int8, groups, biases, spec, sample, dict(zip(indices, int8_per_sample)))
    allowed = config.maximal_drop * (abs(reference) if config.drop_type == "relative" else 1.0)
    report = Report(model.name, spec.name, spec.higher_better, fp_value, int8_value, allowed, len(indices),
                    len(sample.indices), 0, _precision())
    report.evaluations = {"fp": len(indices), "int8": len(indices), "ranking": len(groups) * len(sample.indices)}
    report.groups = _rows(int8.get_model(), groups, impacts)
    # AccuracyAwareQuantization's order: the gain on the items INT8 gets wrong finds the groups that matter together
    order = sorted(range(len(groups)), key=lambda i: (-impacts[i].hard_gain, -impacts[i].estimate, i))
    curve_models = _walk(report, engine, int8, order, groups, biases, spec, reference, indices)
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


def _groups(search: AccuracyAwareQuantization, int8: CompressedModel) -> List[MemberGroup]:
    agnostic = load_hardware_config(search.config.target_device).quantize_agnostic
    return [(None, group) for group in quantizer_groups(int8.get_model(), agnostic)]


def _precision() -> str:
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def _rows(int8_model: Any, groups: Sequence[MemberGroup], impacts: Sequence[GroupImpact]) -> List[GroupRow]:
    ops = ops_by_name(int8_model)
    return [GroupRow(index, list(group.layers), [ops[name].get_type_name() for name in group.layers],
                     list(group.fq_names), impact=impact.estimate, hard_gain=impact.hard_gain)
            for index, ((_, group), impact) in enumerate(zip(groups, impacts))]


def _walk(report: Report, engine: Engine, int8: CompressedModel, order: Sequence[int],
          groups: Sequence[MemberGroup], biases: Any, spec: MetricSpec, reference: float,
          indices: Sequence[int]) -> Dict[str, Any]:
    """Revert groups in ``order`` (a step that raises the drop is undone) until the drop is within
    ``report.maximal_drop``; fills ``report.curve``, ``recommended`` and ``recommended_metric``. Returns the
    accepted models by label for timing."""
    kept: List[int] = []
    current_drop = spec.drop(reference, report.int8_metric)
    report.recommended_metric = report.int8_metric
    models: Dict[str, Any] = {}
    steps = 0
    show = progress_bar_enabled()
    for index in tqdm(order, desc="Revert walk", disable=not show):
        if current_drop <= report.maximal_drop:
            break
        candidate = reverted(int8, [groups[i] for i in kept + [index]], biases)
        value, _ = evaluate(engine, candidate, spec, indices)
        steps += 1
        drop = spec.drop(reference, value)
        accepted = drop <= current_drop
        report.curve.append(CurvePoint(kept + [index], value, drop, accepted=accepted))
        if accepted:
            kept.append(index)
            current_drop = drop
            report.recommended_metric = value
            models[f"step {len(report.curve)}"] = candidate.get_model()
    report.recommended = kept
    report.evaluations["steps"] = steps * len(indices)
    if current_drop > report.maximal_drop:
        report.notes.append(f"Reverting the groups one by one in ranking order did not bring the drop within "
                            f"{report.maximal_drop:.6g} (best {current_drop:.6g}); AccuracyAwareQuantization's "
                            "second pass (accepting every step) may.")
    return models


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
