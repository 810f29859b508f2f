"""``SmoothQuant``: move activation outliers into the weights of MatMuls before INT8 quantization.

For each MatMul with a constant weight that ``MinMaxQuantization`` would quantize (it has a weight quantizer,
so it is not ignored) and an activation input ``X``, with ``a[c] = max |X[..., c]|`` over the calibration
samples (``c`` the reduction channel of the MatMul) and ``w[c] = max |W|`` over the weight's input channel
``c``:

    s = max(a, 1e-5) ** alpha / (max(w, 1e-5) ** (1 - alpha) + eps),  clipped to [quantile(s, 0.1), 100]

then ``X`` is multiplied by ``1 / s`` (a Multiply inserted on the producer's output, feeding the smoothed
MatMuls only) and ``W`` by ``s`` along its input-channel axis, so the floating-point function is unchanged
while the activation's per-channel ranges become flatter and its per-tensor quantizer loses less.

MatMuls reading the same producer output share one Multiply: they form a group when they all reduce over
the same activation axis (otherwise that output is left alone), and the group uses the scale of its member
with the flattest scale (largest ``min(s) / max(s)``). ``smooth_quant_alpha: 'auto'`` (the default) picks
alpha per group by the quantized output error on a few calibration samples' activations
(:mod:`~pot_torch.algorithms.quantization.smooth_alpha`); a number is used for every group as given.
Weights shared by several ops and weights reached through anything but a ``Convert`` are skipped; the
activation's batch and sequence axes may be dynamic, but a MatMul whose activation rank or channel axis is
dynamic is skipped with a warning naming it.

The inserted Multiply on output ``port`` of op ``producer`` is named ``f"{producer}/smooth_quant_multiply_{port}"``
and its constant ``.../scale``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import calibration_indices, ignored_for_member, resolve_params
from pot_torch.algorithms.quantization import smooth_alpha
from pot_torch.algorithms.quantization.placement import place_quantizers
from pot_torch.algorithms.quantization.plan import PlanCache
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import ops_by_name, ordered_consumers, replace_constant
from pot_torch.graph.hardware.config import load_hardware_config
from pot_torch.graph.node_key import NodeKey, node_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

ABS_MAX, ROWS = "smooth_quant_abs_max", "smooth_quant_rows"
#: Floor of the activation and weight statistics, and top of the scales.
STATISTIC_FLOOR, SCALE_MAX = 1e-5, 1e2
#: The scales are raised to at least this quantile of themselves.
SCALE_MIN_QUANTILE = 0.1


def multiply_name(producer: str, port: int) -> str:
    """Friendly name of the smoothing Multiply on output ``port`` of op ``producer``."""
    return f"{producer}/smooth_quant_multiply_{port}"


def smooth_quant_enabled(alpha: Union[None, float, str]) -> bool:
    """Whether ``smooth_quant_alpha`` turns the algorithm on (``None`` or a negative value turns it off)."""
    return alpha == smooth_alpha.AUTO or (alpha is not None and float(alpha) >= 0.0)


@dataclass
class SmoothedMatMul:
    """One MatMul to smooth: its activation input ``act_port`` and constant weight input ``weight_port``."""

    name: str
    act_port: int
    weight_port: int
    weight_axis: int  # input-channel axis of the weight (as the MatMul sees it)


@dataclass
class SmoothGroup:
    """The smoothed MatMuls that read output ``port`` of ``producer``, reducing over ``channel_axis``."""

    producer: str
    port: int
    channel_axis: int  # negative: counts from the end of the activation's shape
    rank: int
    matmuls: List[SmoothedMatMul] = field(default_factory=list)

    @property
    def stat_key(self) -> NodeKey:
        """Statistics key of the producer output (POT's: the name for output 0, else ``(name, port)``)."""
        return node_key(self.producer, self.port)


def smoothing_scale(act_abs_max: np.ndarray, weight_abs_max: np.ndarray, alpha: float) -> Tuple[np.ndarray, float]:
    """The per-channel smoothing scale ``s`` for one MatMul and its flatness ``min(s) / max(s)``."""
    act = np.maximum(np.asarray(act_abs_max, dtype=np.float32), STATISTIC_FLOOR)
    weight = np.maximum(np.asarray(weight_abs_max, dtype=np.float32), STATISTIC_FLOOR)
    eps = np.finfo(np.float32).eps
    scale = (np.power(act, alpha) / (np.power(weight, 1.0 - alpha) + eps)).astype(np.float32)
    scale = np.clip(scale, np.quantile(scale, SCALE_MIN_QUANTILE), SCALE_MAX).astype(np.float32)
    return scale, float(scale.min() / (scale.max() + eps))


def _weight_constant(op: ov.Node, port: int) -> Optional[ov.Node]:
    """The Constant feeding input ``port`` of ``op`` directly or through Converts, used by ``op`` only."""
    return constant_source(op.input_value(port), ("Convert",), exclusive=True)


def _channel_count(output: ov.Output, axis: int, first: int) -> Optional[int]:
    """The static size of axis ``axis`` (negative: from the end) of ``output``; ``None`` if the rank or that axis
    is dynamic, or the axis comes before axis ``first`` (1 for an activation: not its batch axis). The other axes
    may be dynamic."""
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic or len(shape) < 2 or len(shape) + axis < first:
        return None
    dimension = shape[len(shape) + axis]
    return dimension.get_length() if dimension.is_static else None


def _smoothed_matmul(op: ov.Node, weight_port: int) -> Optional[Tuple[SmoothedMatMul, int, int]]:
    """``(matmul, activation channel axis, activation rank)`` when ``op`` can be smoothed, else ``None``.

    Only the rank and the channel axis of the activation must be static (batch and sequence axes may be
    dynamic); a MatMul left out for a shape reason is reported with a warning.
    """
    if op.get_type_name() != "MatMul" or weight_port not in (0, 1) or _weight_constant(op, weight_port) is None:
        return None
    act_port = 1 - weight_port
    attributes = op.get_attributes()
    act_transposed = bool(attributes["transpose_a" if act_port == 0 else "transpose_b"])
    weight_transposed = bool(attributes["transpose_a" if weight_port == 0 else "transpose_b"])
    # the reduction axis of A is its last axis (-2 if transposed), of B its second last (-1 if transposed)
    act_axis = (-2 if act_transposed else -1) if act_port == 0 else (-1 if act_transposed else -2)
    weight_axis = (-2 if weight_transposed else -1) if weight_port == 0 else (-1 if weight_transposed else -2)
    activation, weight = op.input_value(act_port), op.input_value(weight_port)
    channels, weight_channels = _channel_count(activation, act_axis, 1), _channel_count(weight, weight_axis, 0)
    if channels is None or weight_channels is None or channels != weight_channels:
        logger.warning("SmoothQuant skips MatMul '%s': its activation input %s of shape %s needs a static rank and "
                       "a static channel axis %d (batch axis excluded) matching the weight's %s; reshape the model "
                       "so that axis is static to smooth it", op.get_friendly_name(), act_port,
                       activation.get_partial_shape(), act_axis, weight.get_partial_shape())
        return None
    return SmoothedMatMul(op.get_friendly_name(), act_port, weight_port, weight_axis), act_axis, \
        activation.get_partial_shape().rank.get_length()


def find_smooth_groups(model: ov.Model, weight_sites: List[Tuple[str, int]]) -> List[SmoothGroup]:
    """The groups of MatMuls of ``model`` to smooth, among the weight quantizer sites ``(op name, port)``."""
    by_name = ops_by_name(model)
    groups: Dict[Tuple[str, int], SmoothGroup] = {}
    rejected = set()
    for name, port in weight_sites:
        found = _smoothed_matmul(by_name[name], port)
        if found is None:
            continue
        matmul, axis, rank = found
        source = by_name[name].input_value(matmul.act_port)
        key = (source.get_node().get_friendly_name(), source.get_index())
        group = groups.setdefault(key, SmoothGroup(key[0], key[1], axis, rank))
        if (group.channel_axis, group.rank) != (axis, rank):
            rejected.add(key)
        group.matmuls.append(matmul)
    for key in sorted(rejected):
        logger.debug("SmoothQuant skips %s:%d: its MatMuls reduce over different axes", *key)
    return [group for key, group in groups.items() if key not in rejected]


def group_weights(model: ov.Model, group: SmoothGroup) -> Dict[str, np.ndarray]:
    """``{MatMul name: its weight as [output channels, input channels]}`` for the members of ``group``."""
    by_name = ops_by_name(model)
    weights = {}
    for matmul in group.matmuls:
        weight = np.asarray(_weight_constant(by_name[matmul.name], matmul.weight_port).get_data(), np.float32)
        channels = weight.shape[matmul.weight_axis]
        weights[matmul.name] = np.moveaxis(weight, matmul.weight_axis, -1).reshape(-1, channels)
    return weights


def group_scale(act_abs_max: np.ndarray, weights: List[np.ndarray], alpha: float) -> Optional[np.ndarray]:
    """The scale of the member with the flattest :func:`smoothing_scale` (weights as ``[O, C]``); ``None`` if
    no member's scale is usable."""
    act_abs_max = np.asarray(act_abs_max, dtype=np.float32).reshape(-1)
    best, best_ratio = None, 0.0
    for weight in weights:
        scale, ratio = smoothing_scale(act_abs_max, np.max(np.abs(weight), axis=0), alpha)
        if ratio > best_ratio:
            best, best_ratio = scale, ratio
    return best


def smooth_group(model: ov.Model, group: SmoothGroup, best: Optional[np.ndarray]) -> bool:
    """Rescale the weights of ``group`` by ``best`` (:func:`group_scale`) and insert its activation Multiply;
    False if nothing changed (``best`` is ``None``)."""
    by_name = ops_by_name(model)
    if best is None:
        return False
    for matmul in group.matmuls:
        weight = np.asarray(_weight_constant(by_name[matmul.name], matmul.weight_port).get_data(), np.float32)
        shape = [1] * weight.ndim
        shape[matmul.weight_axis] = best.size
        replace_constant(_weight_constant(by_name[matmul.name], matmul.weight_port), weight * best.reshape(shape))
    output = by_name[group.producer].output(group.port)
    shape = [1] * group.rank
    shape[group.channel_axis] = best.size
    element_type = output.get_element_type()
    name = multiply_name(group.producer, group.port)
    constant = ops.constant((1.0 / best).reshape(shape).astype(element_type.to_dtype()), dtype=element_type)
    constant.set_friendly_name(f"{name}/scale")
    multiply = ops.multiply(output, constant)
    multiply.set_friendly_name(name)
    targets = {(m.name, m.act_port) for m in group.matmuls}
    for target in ordered_consumers(model, output):
        if (target.get_node().get_friendly_name(), target.get_index()) in targets:
            target.replace_source_output(multiply.output(0))
    return True


@COMPRESSION_ALGORITHMS.register("SmoothQuant")
class SmoothQuant(Algorithm):
    """Scale the activations of weighted MatMuls down and their weights up per channel (FP unchanged).

    Parameters: ``smooth_quant_alpha`` (default ``'auto'``: chosen per group, see
    :mod:`~pot_torch.algorithms.quantization.smooth_alpha`; a number in [0, 1]: used for every group; ``None`` or
    negative: do nothing), ``preset`` (the activation quantizer the ``'auto'`` search simulates) and the common
    ones (``stat_subset_size``, ``inplace_statistics``, ``target_device``, ``model_type``, ``ignored``...);
    ``padding_aware_statistics`` measures the activations on real tokens only (``statistics.padding``).
    ``DefaultQuantization`` runs it first for ``model_type: 'transformer'`` only.
    ``change_original_model`` is True: statistics for later algorithms are collected on the smoothed model.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params("SmoothQuant", dict(config or {})), engine)
        self._groups: PlanCache[List[Tuple[Optional[str], List[SmoothGroup]]]] = PlanCache()

    def groups(self, model: CompressedModel) -> List[Tuple[ov.Model, List[SmoothGroup]]]:
        """For every member of ``model``, its ``openvino.Model`` and the MatMul groups to smooth (found once per
        model: ``statistics_requests`` and ``run`` share them)."""
        if not smooth_quant_enabled(self.config.smooth_quant_alpha):
            return []
        return [(model.get_model(member), groups)
                for member, groups in self._groups.get(model, lambda: self._find_groups(model))]

    def _find_groups(self, model: CompressedModel) -> List[Tuple[Optional[str], List[SmoothGroup]]]:
        hardware = load_hardware_config(self.config.target_device)
        found = []
        for entry in model.models:
            member = entry["name"] if model.is_cascade else None
            ignored = ignored_for_member(self.config.ignored, member, model.member_names)
            placement = place_quantizers(entry["model"], hardware, ignored, self.config.model_type, cpu_plugin=False)
            sites = [(site.consumer, site.port) for site in placement.weights]
            found.append((member, find_smooth_groups(entry["model"], sites)))
        return found

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-channel ``max |x|`` of every smoothed activation and, with ``'auto'`` alpha, a second request for
        some rows of each on a few samples (:func:`smooth_alpha.search_indices`); ``[]`` when there is none (or it
        is off)."""
        groups = [group for _, member_groups in self.groups(model) for group in member_groups]
        abs_max = [StatisticSpec(group.stat_key, ABS_MAX, make_reducer(
            "abs_max", per_channel=True, channel_axis=group.channel_axis,
            inplace=bool(self.config.inplace_statistics)), "max") for group in groups]
        rows = [StatisticSpec(group.stat_key, ROWS, smooth_alpha.ActivationRows(group.channel_axis))
                for group in groups]
        if not groups:
            return []
        indices = list(calibration_indices(self.config, len(self.engine.data_loader)))
        batch = int(self.config.stat_batch_size)
        real_tokens = bool(self.config.padding_aware_statistics)
        requests = [StatisticsRequest(abs_max, indices, batch, tag=self.name, real_tokens=real_tokens)]
        if self.config.smooth_quant_alpha == smooth_alpha.AUTO:
            requests.append(StatisticsRequest(rows, smooth_alpha.search_indices(indices), batch,
                                              tag=f"{self.name} alpha search", real_tokens=real_tokens))
        return requests

    def _alpha(self, group: SmoothGroup, act_abs_max: np.ndarray, weights: List[np.ndarray],
               rows: Optional[Statistics]) -> float:
        """The group's alpha: the configured number, or the ``'auto'`` search's choice (``weights``:
        :func:`group_weights`)."""
        if rows is None:
            return float(self.config.smooth_quant_alpha)
        return smooth_alpha.choose_alpha(list(rows.get(group.stat_key, {}).get(ROWS) or []), weights,
                                         lambda alpha: group_scale(act_abs_max, weights, alpha),
                                         symmetric=self.config.preset == "performance")

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Smooth ``model`` in place and return it."""
        if statistics is None:
            statistics = self.collect_own_statistics(model)
        stats = statistics[0] if statistics else {}
        rows = (statistics[1] if len(statistics) > 1 else {}) \
            if self.config.smooth_quant_alpha == smooth_alpha.AUTO else None
        for ov_model, groups in self.groups(model):
            chosen: Dict[float, int] = {}
            for group in groups:
                act_abs_max = stats.get(group.stat_key, {}).get(ABS_MAX)
                if act_abs_max is None:
                    continue
                weights = list(group_weights(ov_model, group).values())
                alpha = self._alpha(group, act_abs_max, weights, rows)
                if smooth_group(ov_model, group, group_scale(act_abs_max, weights, alpha)):
                    chosen[alpha] = chosen.get(alpha, 0) + 1
            if chosen:
                ov_model.validate_nodes_and_infer_types()
            logger.debug("SmoothQuant: %d producer outputs smoothed in '%s'", sum(chosen.values()),
                         ov_model.get_friendly_name())
            if rows is not None and chosen:
                logger.info("SmoothQuant alpha 'auto' in '%s' (by quantized output error on %d calibration "
                            "samples): %s", ov_model.get_friendly_name(), smooth_alpha.SEARCH_SAMPLES,
                            ", ".join(f"{alpha} for {count} group(s)" for alpha, count in sorted(chosen.items())))
        return model
