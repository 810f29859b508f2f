"""``MinMaxQuantization``: FakeQuantize ops placed by the hardware description, ranges from min/max statistics.

Run on its own, ``run(model)`` inserts the FakeQuantize ops into the ``openvino.Model`` of ``model`` in place
(``Pipeline.run`` hands it a copy, so the caller's model is unchanged there).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import calibration_indices, ignored_for_member, resolve_params
from pot_torch.algorithms.quantization.quantizer_ranges import (SATURATION_SCALE, activation_fq_range,
                                                             per_channel_shape, saturation_fix_layers, weight_fq_range)
from pot_torch.algorithms.quantization.plan import MemberPlan, PlanCache, plan_member
from pot_torch.algorithms.quantization.range_estimator import activation_range, activation_specs, weight_statistics
from pot_torch.algorithms.quantization.sites import ActivationSite, WeightSite
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.cpu_rewrites import rewrite_for_cpu
from pot_torch.graph.editor import (constant_value, insert_fake_quantize, ops_by_name, replace_constant,
                                    weight_source_output)
from pot_torch.graph.hardware.config import HardwareConfig, load_hardware_config
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


@COMPRESSION_ALGORITHMS.register("MinMaxQuantization")
class MinMaxQuantization(Algorithm):
    """Insert FakeQuantize ops where the target device runs INT8 and set their ranges from statistics.

    Parameters (POT's, see ``pot_torch.algorithms.params``): ``preset``, ``target_device``, ``model_type``,
    ``ignored``, ``weights``/``activations``/``range_estimator`` overrides, ``saturation_fix``,
    ``inplace_statistics``, ``stat_subset_size``, ``stat_batch_size``, ``shuffle_data``, ``seed``; and
    ``padding_aware_statistics`` (ranges over real tokens only, ``statistics.padding``).
    """

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params("MinMaxQuantization", config), engine)
        self._hardware: HardwareConfig = load_hardware_config(self.config.target_device)
        self._plans: PlanCache[List[MemberPlan]] = PlanCache()

    # ------------------------------------------------------------------------------------------- planning
    def plan(self, model: Any) -> List[MemberPlan]:
        """The FakeQuantize sites, quantizers and estimators for every member of ``model`` (nothing changes).

        Computed once per model: ``statistics_requests`` and ``run`` on the same model share it.
        """
        return self._plans.get(model, lambda: [
            plan_member(entry["model"], self._hardware, self.config, self._ignored_for(model, member), member,
                        self._cpu_plugin())
            for entry in model.models for member in [entry["name"] if model.is_cascade else None]])

    def _ignored_for(self, model: Any, member: Optional[str]) -> Optional[Mapping[str, Any]]:
        return ignored_for_member(self.config.ignored, member, model.member_names)

    def _cpu_plugin(self) -> bool:
        """Whether the CPU plugin's workarounds apply: the target device's description says so, or the engine
        (which runs the quantized model during quantization) infers on the CPU."""
        config = getattr(self.engine, "config", None) or {}
        device = str(config.get("device", "CPU") or "CPU")
        return self._hardware.cpu_plugin_workarounds or "CPU" in device.upper()

    # ----------------------------------------------------------------------------------------- statistics
    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """One request: the activation statistics of every activation FakeQuantize site."""
        specs = [spec for plan in self.plan(model) for planned in plan.activations
                 for spec in activation_specs(planned.site.stat_key, planned.estimator,
                                              bool(self.config.inplace_statistics), planned.site.channel_axis)]
        data_loader = self.engine.data_loader if self.engine is not None else None
        if data_loader is None:
            raise ValueError(f"{self.name} needs an engine with a data_loader to collect activation statistics")
        indices = calibration_indices(self.config, len(data_loader))
        return [StatisticsRequest(specs, list(indices), int(self.config.stat_batch_size), tag=self.name,
                                  real_tokens=bool(self.config.padding_aware_statistics))]

    # ---------------------------------------------------------------------------------------------- apply
    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Insert and fill the FakeQuantize ops of every member of ``model`` (edited in place) and return it.

        The plan is the one ``statistics_requests`` used for this model; on the CPU it leaves out the FakeQuantize
        ops the CPU plugin cannot compile or computes wrongly (see
        :mod:`~pot_torch.algorithms.quantization.cpu_workarounds`) and rewrites what it would compute wrongly once
        the FakeQuantize ops are in (:mod:`~pot_torch.graph.cpu_rewrites`).
        """
        if statistics is None:
            statistics = self.collect_own_statistics(model)
        collected = statistics[0] if statistics else {}
        for plan in self.plan(model):
            _report_compressed_weights(plan)
            _report_float_readers(plan, model.get_model(plan.member))
            ov_model = model.get_model(plan.member)
            self._apply(ov_model, plan, collected)
            ov_model.validate_nodes_and_infer_types()
        return model

    def _activation_ranges(self, plan: MemberPlan, collected: Statistics) -> Dict[str, Tuple[np.ndarray, ...]]:
        ranges: Dict[str, Tuple[np.ndarray, ...]] = {}
        for planned in plan.activations:
            site: ActivationSite = planned.site
            stats = collected.get(site.stat_key)
            if stats is None:
                raise KeyError(f"no statistics were collected for {site.stat_key!r} (the input of "
                               f"FakeQuantize '{site.name}'); the engine's predict must return every node of "
                               "the stats_layout it was given")
            low, high = activation_range(planned.estimator, stats, repr(site.stat_key), plan.member)
            low, high = activation_fq_range(planned.quantizer, planned.levels, low, high, planned.estimator)
            if planned.quantizer["granularity"] == "perchannel":
                low = per_channel_shape(low, site.rank, site.channel_axis)
                high = per_channel_shape(high, site.rank, site.channel_axis)
            ranges[site.name] = (low, high)
        for group in plan.placement.unified:
            low = np.min([ranges[name][0] for name in group])
            high = np.max([ranges[name][1] for name in group])
            for name in group:
                ranges[name] = (np.asarray(low, np.float32), np.asarray(high, np.float32))
        return ranges

    def _apply(self, ov_model: ov.Model, plan: MemberPlan, collected: Statistics) -> None:
        ranges = self._activation_ranges(plan, collected)
        rescaled = set()
        if (self._hardware.saturation_fix_applies and
                any(op.get_type_name() == "Convolution" for op in ov_model.get_ordered_ops())):
            rescaled = saturation_fix_layers(ov_model, self.config.saturation_fix)
        weight_inserts = []
        by_name = ops_by_name(ov_model)
        for planned in plan.weights:
            site: WeightSite = planned.site
            consumer = by_name[site.consumer]
            source = weight_source_output(consumer, site.port)
            stats = weight_statistics(planned.estimator, constant_value(source), site.channel_axes)
            low, high = weight_fq_range(planned.quantizer, stats, planned.estimator)
            out_low, out_high = low, high
            if site.consumer in rescaled:
                constant = constant_source(consumer.input_value(site.port))
                replace_constant(constant, constant.get_data().astype(np.float32) / SATURATION_SCALE)
                out_low, out_high = low * SATURATION_SCALE, high * SATURATION_SCALE
            weight_inserts.append((site, planned.levels, (low, high, out_low, out_high)))
        for planned in plan.activations:
            site = planned.site
            low, high = ranges[site.name]
            consumers = [by_name[name].input(port) for name, port in site.consumers]
            insert_fake_quantize(ov_model, by_name[site.producer].output(site.port), planned.levels,
                                 (low, high, low, high), consumers, name=site.name)
        for site, levels, limits in weight_inserts:
            consumer = by_name[site.consumer]
            insert_fake_quantize(ov_model, weight_source_output(consumer, site.port), levels, limits,
                                 [consumer.input(site.port)], name=site.name)
        if self._cpu_plugin():
            rewrite_for_cpu(ov_model)


def _report_compressed_weights(plan: MemberPlan) -> None:
    """One warning for the layers whose weights were already stored as integers (left as they are)."""
    layers = sorted({consumer for consumer, _ in plan.placement.compressed_weights})
    if layers:
        shown = ", ".join(layers[:5]) + (f" and {len(layers) - 5} more" if len(layers) > 5 else "")
        where = f"model '{plan.member}': " if plan.member else ""
        logger.warning("%s%d layers already have INT8-compressed weights (Constant i8/u8 -> Convert -> Multiply, "
                       "as a saved INT8 IR stores them): their weights are left as they are, not quantized "
                       "again: %s", where, len(layers), shown)


def _report_float_readers(plan: MemberPlan, ov_model: ov.Model) -> None:
    """Warn when an ignored op reads the float value of a quantized output in a model with dynamic inputs: the
    OpenVINO CPU plugin may compute such an output wrongly (docs/int8-placement-findings.md, "Dynamic shapes")."""
    readers = plan.placement.float_readers
    if readers and any(item.get_partial_shape().is_dynamic for item in ov_model.inputs):
        logger.warning("ignored ops read the floating-point value of quantized outputs (%s) in a model with dynamic "
                       "input shapes; the OpenVINO CPU plugin can compute such outputs wrongly (a generated "
                       "transformer block measured 6 dB from the same INT8 model reshaped static): reshape the model "
                       "to static shapes, or take these ops out of the ignored scope (ops the model_type's rules "
                       "ignore, e.g. a transformer's Add and Multiply, can only be fixed by static shapes)",
                       ", ".join(f"{consumer} reads the input of {fq}" for fq, consumer in readers))
