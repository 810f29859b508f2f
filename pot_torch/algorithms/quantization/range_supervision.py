"""``RangeSupervision``: POT's Clamp after each activation, limited to the range seen on the calibration data.

For every activation op (POT's list: ReLU, Swish, PReLU, Elu, Gelu, Sigmoid, Tanh, by their OpenVINO names
``Relu``, ``Swish``, ``PRelu``, ``Elu``, ``Gelu``, ``Sigmoid``, ``Tanh``) the per-tensor minimum and maximum of
its output are measured on the calibration subset; a ``Clamp`` with the smallest minimum and the largest maximum
over the samples is inserted after the op (named ``{op}/min_max_Clamp``) and feeds every consumer the op fed.
On the calibration data the model computes exactly what it computed before; an input that drives an activation
beyond what the data set ever did (a hardware fault, an out-of-distribution input) is held in the seen range.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import (COMMON_PARAMS, calibration_indices, declare_params, ignored_for_member,
                                         resolve_params)
from pot_torch.algorithms.quantization.ignored import ignored_op_names
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.editor import ordered_consumers
from pot_torch.graph.node_key import output_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

NAME = "RangeSupervision"
#: POT's activation types, by their OpenVINO op type names.
ACTIVATION_TYPES = ("Relu", "Swish", "PRelu", "Elu", "Gelu", "Sigmoid", "Tanh")
#: Suffix of the inserted Clamp's friendly name (POT's).
CLAMP_SUFFIX = "/min_max_Clamp"

declare_params(NAME, dict(COMMON_PARAMS))


def supervised_activations(model: ov.Model, ignored: Optional[Dict[str, Any]] = None) -> List[ov.Node]:
    """The activation ops of ``model`` that get a Clamp, in topological order (ops in ``ignored`` left out,
    and ops already followed by this algorithm's Clamp)."""
    skipped = ignored_op_names(model, ignored)
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ACTIVATION_TYPES or op.get_friendly_name() in skipped:
            continue
        targets = list(op.output(0).get_target_inputs())
        if any(t.get_node().get_friendly_name() == op.get_friendly_name() + CLAMP_SUFFIX for t in targets):
            continue
        found.append(op)
    return found


@COMPRESSION_ALGORITHMS.register(NAME)
class RangeSupervision(Algorithm):
    """Insert a Clamp after every activation op with the output range measured on the calibration data.

    Parameters (POT's): ``stat_subset_size`` (whole data set), ``stat_batch_size`` (1), ``shuffle_data``
    (False), ``seed`` (0), ``ignored`` (activations left without a Clamp), ``inplace_statistics`` (True).
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(NAME, config), engine)

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-sample, per-tensor min and max of every activation's output."""
        inplace = bool(self.config.inplace_statistics)
        specs = [StatisticSpec(output_key(op.output(0)), f"{side}_per_tensor",
                               make_reducer(side, per_channel=False, inplace=inplace), side)
                 for member in model.models
                 for op in supervised_activations(member["model"], self._ignored(model, member["name"]))
                 for side in ("min", "max")]
        if not specs:
            return []
        if self.engine is None or self.engine.data_loader is None:
            raise ValueError(f"{NAME} needs an engine with a data_loader to measure the activation ranges")
        indices = calibration_indices(self.config, len(self.engine.data_loader))
        return [StatisticsRequest(specs, list(indices), int(self.config.stat_batch_size), tag=NAME)]

    def _ignored(self, model: CompressedModel, member: str) -> Optional[Dict[str, Any]]:
        return ignored_for_member(self.config.ignored, member if model.is_cascade else None, model.member_names)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Insert the Clamps into ``model`` (edited in place) and return it."""
        if statistics is None:
            statistics = self.collect_own_statistics(model)
        collected = statistics[0] if statistics else {}
        inserted = 0
        for member in model.models:
            ov_model = member["model"]
            for op in supervised_activations(ov_model, self._ignored(model, member["name"])):
                stats = collected.get(output_key(op.output(0)))
                if not stats or stats.get("min_per_tensor") is None or stats.get("max_per_tensor") is None:
                    logger.warning("%s: no statistics for '%s' (it produced no values on the calibration data); "
                                   "it gets no Clamp", NAME, op.get_friendly_name())
                    continue
                low, high = float(np.min(stats["min_per_tensor"])), float(np.max(stats["max_per_tensor"]))
                insert_clamp(ov_model, op.output(0), low, high)
                inserted += 1
            ov_model.validate_nodes_and_infer_types()
        logger.info("%s: %d Clamp ops inserted", NAME, inserted)
        return model


def insert_clamp(model: ov.Model, output: ov.Output, low: float, high: float) -> ov.Node:
    """Insert ``Clamp(low, high)`` on ``output`` feeding all its consumers; named ``{producer}/min_max_Clamp``.

    When ``output`` is a model output, its tensor names move to the Clamp's output, so the model's outputs keep
    their names.
    """
    consumers = ordered_consumers(model, output)
    clamp = ops.clamp(output, low, high)
    clamp.set_friendly_name(output.get_node().get_friendly_name() + CLAMP_SUFFIX)
    for target in consumers:
        target.replace_source_output(clamp.output(0))
    if any(target.get_node().get_type_name() == "Result" for target in consumers) and output.get_names():
        clamp.output(0).set_names(set(output.get_names()))
        output.set_names(set())
    return clamp
