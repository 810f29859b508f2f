"""``ActivationChannelAlignment``: POT's alignment of activation channel ranges before quantization.

For each Convolution -> (bias Add) -> Convolution pair (:func:`~pot_torch.graph.layer_patterns.find_conv_pairs`)
the activation between them is measured per channel: quantiles ``q = 1e-4`` and ``1 - 1e-4`` per sample,
then the median over samples (``low``, ``high``). The pair is then rewritten so the floating-point function
is unchanged while each channel's range moves to a common scale around zero:

- means: with a bias on both convolutions, ``mean = (low + high) / 2`` is subtracted from the producer's bias
  and ``sum_spatial(W_consumer) @ mean`` added to the consumer's bias (exact because the consumer has no
  padding);
- scales: ``s = (high - low) / median(high - low over channels with a range)`` (1 for channels without a range),
  clipped to ``[1e-2, 1e2]``; the producer's output channels (weights and bias) are divided by ``s`` and the
  consumer's input channels (weights) multiplied by it.

A per-tensor quantizer on that activation then loses less resolution to channels with small ranges. The
activation becomes ``(x - mean) / s`` per channel (:class:`Alignment`), so ``DefaultQuantization`` derives its
later statistics from per-channel ones measured before alignment (:mod:`pot_torch.statistics.channel_affine`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, List, Optional

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import calibration_indices, resolve_params
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.editor import ops_by_name, replace_constant
from pot_torch.graph.layer_patterns import ConvPair, conv_weight_constant, find_bias_add, find_conv_pairs
from pot_torch.graph.node_key import output_key, split_node_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: The quantile POT measures each channel's range with (and ``1 - QUANTILE`` for the top).
QUANTILE = 1e-4
#: Limits of the per-channel scale factors.
SCALE_LIMITS = (1e-2, 1e2)
RANGE_MIN, RANGE_MAX = "channel_range_min", "channel_range_max"


@COMPRESSION_ALGORITHMS.register("ActivationChannelAlignment")
class ActivationChannelAlignment(Algorithm):
    """Rescale and shift activation channels between two convolutions so their ranges align (FP unchanged).

    Parameters: the common ones (``stat_subset_size``, ``stat_batch_size``, ``shuffle_data``, ``seed``...).
    ``change_original_model`` is True: statistics for later algorithms are collected on the aligned model.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params("ActivationChannelAlignment", config), engine)

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-channel quantile ranges of the activation of every pair; ``[]`` when the model has no pair. They are
        computed in-graph (``inplace_statistics``) where the activation's spatial sizes are static."""
        specs = []
        for member in model.models:
            by_name = ops_by_name(member["model"])
            for pair in find_conv_pairs(member["model"]):
                name, port = split_node_key(pair.activation_key)
                output = by_name[name].output(port)
                for side, q in ((RANGE_MIN, QUANTILE), (RANGE_MAX, 1.0 - QUANTILE)):
                    reducer = make_reducer("quantile", per_channel=True, quantile=q)
                    reducer.inplace = bool(self.config.inplace_statistics) and reducer.can_graph_reduce(output)
                    specs.append(StatisticSpec(pair.activation_key, side, reducer, "median"))
        if not specs:
            return []
        indices = calibration_indices(self.config, len(self.engine.data_loader))
        return [StatisticsRequest(specs, list(indices), self.config.stat_batch_size, tag=self.name)]

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Align the pairs of ``model`` in place and return it."""
        self.align(model, statistics)
        return model

    def align(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> List[Alignment]:
        """Align the pairs of ``model`` in place; returns what was applied to each aligned activation (its values
        become ``(x - shift) / scale`` per channel)."""
        if statistics is None:
            statistics = self.collect_own_statistics(model)
        stats = statistics[0] if statistics else {}
        applied = []
        for member in model.models:
            for pair in find_conv_pairs(member["model"]):
                ranges = stats.get(pair.activation_key, {})
                if ranges.get(RANGE_MIN) is not None and ranges.get(RANGE_MAX) is not None:
                    alignment = alignment_of(member["model"], pair, ranges[RANGE_MIN], ranges[RANGE_MAX])
                    if alignment is not None:
                        apply_alignment(member["model"], alignment)
                        applied.append(alignment)
        return applied


@dataclass(frozen=True)
class Alignment:
    """The change of one pair: its activation becomes ``(x - shift) / scale`` per channel (``scale > 0``).

    :param producer_key: statistics key of the producer's own output (the activation when it has no bias Add;
        else it becomes ``x / scale``).
    :param rank: rank of the activation (its channel axis is 1).
    """

    pair: ConvPair
    producer_key: Hashable
    rank: int
    shift: np.ndarray  # [C] float64, zeros unless both convolutions have a bias
    scale: np.ndarray  # [C] float64


def alignment_of(model: ov.Model, pair: ConvPair, low: np.ndarray, high: np.ndarray) -> Optional[Alignment]:
    """The alignment of ``pair`` in ``model`` given its channel ranges ``[low, high]``, or ``None`` (logged)
    when the ranges do not match the pair's channel count."""
    by_name = ops_by_name(model)
    producer, consumer = by_name[pair.producer], by_name[pair.consumer]
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    channels = int(_weights(producer).shape[0])
    if low.shape != (channels,) or high.shape != (channels,) or _weights(consumer).shape[1] != channels:
        logger.debug("%s -> %s not aligned: ranges of shape %s for %d channels", pair.producer, pair.consumer,
                     low.shape, channels)
        return None
    both_biased = find_bias_add(producer) is not None and find_bias_add(consumer) is not None
    shift = (low + high) * 0.5 if both_biased else np.zeros(channels)
    rank = producer.get_output_partial_shape(0).rank.get_length()
    return Alignment(pair, output_key(producer.output(0)), rank, shift, _scales(high - low))


def apply_alignment(model: ov.Model, alignment: Alignment) -> None:
    """Rewrite the pair's convolutions and biases so the activation becomes its aligned image (FP unchanged)."""
    by_name = ops_by_name(model)
    producer, consumer = by_name[alignment.pair.producer], by_name[alignment.pair.consumer]
    if np.any(alignment.shift != 0):
        _align_means(producer, consumer, alignment.shift)
    if np.any(alignment.scale != 1):
        _align_scales(producer, consumer, alignment.scale)
    logger.debug("aligned %s -> %s", alignment.pair.producer, alignment.pair.consumer)


def _weights(conv: ov.Node) -> np.ndarray:
    return np.asarray(conv_weight_constant(conv).get_data(), dtype=np.float64)


def _set_weights(conv: ov.Node, value: np.ndarray) -> None:
    replace_constant(conv_weight_constant(conv), value)


def _align_means(producer: ov.Node, consumer: ov.Node, mean: np.ndarray) -> None:
    bias_in, bias_out = find_bias_add(producer), find_bias_add(consumer)
    bias_in.set_value(bias_in.per_channel() - mean)
    weights_out = _weights(consumer)
    summed = weights_out.sum(axis=tuple(range(2, weights_out.ndim)))  # [C_out, C_in]
    bias_out.set_value(bias_out.per_channel() + summed @ mean)


def _scales(spread: np.ndarray) -> np.ndarray:
    """Per channel ``spread / median(spread of channels with a range)`` clipped to :data:`SCALE_LIMITS` (1 for
    channels without a range; all 1 when none has one)."""
    has_range = spread > 0
    if not np.any(has_range):
        return np.ones_like(spread)
    scale = spread / np.median(spread[has_range])
    scale[~has_range] = 1.0
    return np.clip(scale, *SCALE_LIMITS)


def _align_scales(producer: ov.Node, consumer: ov.Node, scale: np.ndarray) -> None:
    weights_in = _weights(producer)
    _set_weights(producer, weights_in / scale.reshape([-1] + [1] * (weights_in.ndim - 1)))
    bias_in = find_bias_add(producer)
    if bias_in is not None:
        bias_in.set_value(bias_in.per_channel() / scale)
    weights_out = _weights(consumer)
    _set_weights(consumer, weights_out * scale.reshape([1, -1] + [1] * (weights_out.ndim - 2)))
