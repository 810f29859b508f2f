"""``OutlierChannelSplitting``: POT's OCS, which narrows a convolution's weight range without changing its output.

For each ``Convolution`` (one group), in order of friendly name as POT did, ``ceil(weights_expansion_ratio *
input channels)`` times: the input channel holding the largest ``|w|`` is split in two. Where ``|w|`` is above
half that maximum, the old channel keeps ``w / 2`` and the new one (appended after the last input channel)
gets ``w / 2``; elsewhere the old channel keeps ``w`` and the new one gets 0. The new input channel must read
the same activation as the split one, so the ops producing the convolution's input duplicate that channel:
the output channels of the Convolution (or depthwise GroupConvolution) that computes it, and every per-channel
Constant on the way (bias, scale), through element-wise ops and pooling. Halving is exact in floating point, so
the model computes what it did (up to the order of the sums); its weights' range shrinks, which leaves a finer
quantization grid for the other weights.

A convolution is left as it was when its input cannot get the extra channel that way: it comes from a
Parameter, an op read by other ops too, a Constant shared with other ops, or an op that moves channels
(Reshape, Concat, Split, ...) or is not element-wise.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import COMMON_PARAMS, Param, declare_params, ignored_for_member, resolve_params
from pot_torch.algorithms.quantization.ignored import ignored_op_names
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import replace_constant
from pot_torch.graph.layer_patterns import conv_weight_constant
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

NAME = "OutlierChannelSplitting"
#: Ops that compute each channel from the same channel of their inputs: the extra channel passes through them.
CHANNELWISE_OPS = ("Relu", "Clamp", "Sigmoid", "Tanh", "Swish", "HSwish", "HSigmoid", "Elu", "Gelu", "Mish",
                   "SoftPlus", "Abs", "Exp", "Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum",
                   "MaxPool", "AvgPool")
#: A Constant to widen: ``(Constant, axis)``.
Widening = Tuple[ov.Node, int]


def _ratio(value: Any) -> Optional[str]:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "expected a number in [0, 1], the share of input channels to split (e.g. 0.01)"


declare_params(NAME, {**COMMON_PARAMS, "weights_expansion_ratio": Param(0.01, check=_ratio)})


def split_weights(weights: np.ndarray, ratio: float) -> Tuple[np.ndarray, List[int]]:
    """POT's split of the input channels (axis 1) of ``weights``.

    :returns: the weights with ``ceil(ratio * channels)`` more input channels, and for each appended channel
        the original input channel it reads (a channel appended by an earlier split maps to its origin).
    """
    channels = weights.shape[1]
    result = np.array(weights, copy=True)
    origins: List[int] = []
    for _ in range(int(math.ceil(ratio * channels))):
        per_channel = np.max(np.abs(result), axis=(0,) + tuple(range(2, result.ndim)))
        index = int(np.argmax(per_channel))
        column = result[:, index:index + 1].copy()
        outlier = np.abs(column) > per_channel[index] * 0.5
        result[:, index:index + 1] = np.where(outlier, column * 0.5, column)
        result = np.concatenate([result, np.where(outlier, column * 0.5, 0.0).astype(result.dtype)], axis=1)
        origins.append(index if index < channels else origins[index - channels])
    return result, origins


def _channel_axis_of_constant(value: ov.Output, output_rank: int, channels: int) -> Optional[int]:
    """Where a Constant input of an element-wise op holds the channels (-1: it broadcasts over them)."""
    shape = list(value.get_shape())
    axis = 1 - (output_rank - len(shape))
    if axis < 0 or shape[axis] == 1:
        return -1
    return axis if shape[axis] == channels else None


def widenings(output: ov.Output, channels: int) -> Optional[List[Widening]]:
    """The Constants to widen so that ``output`` (``channels`` channels on axis 1) gets extra channels, or
    ``None`` when that is not possible (see the module docstring)."""
    node = output.get_node()
    kind = node.get_type_name()
    if len(output.get_target_inputs()) != 1 or output.get_index() != 0 or output.get_partial_shape().rank.is_dynamic:
        return None
    if kind == "Convolution":
        weights = conv_weight_constant(node)
        return None if weights is None else [(weights, 0)]
    if kind == "GroupConvolution":
        weights = conv_weight_constant(node)
        shape = None if weights is None else list(weights.get_output_shape(0))
        if shape is None or shape[1] != 1 or shape[2] != 1:  # depthwise only
            return None
        upstream = widenings(node.input_value(0), channels)
        return None if upstream is None else upstream + [(weights, 0)]
    if kind not in CHANNELWISE_OPS:
        return None
    found: List[Widening] = []
    rank = output.get_partial_shape().rank.get_length()
    for value in node.input_values():
        constant = constant_source(value, ("Convert",))
        if constant is None:
            upstream = widenings(value, channels)
            if upstream is None:
                return None
            found.extend(upstream)
            continue
        axis = _channel_axis_of_constant(value, rank, channels)
        if axis is None or (axis >= 0 and constant_source(value, ("Convert",), exclusive=True) is None):
            return None
        if axis >= 0:
            found.append((constant, axis))
    return found


def _widen(constant: ov.Node, axis: int, origins: List[int]) -> None:
    data = constant.get_data()
    replace_constant(constant, np.concatenate([data, np.take(data, origins, axis=axis)], axis=axis))


@COMPRESSION_ALGORITHMS.register(NAME)
class OutlierChannelSplitting(Algorithm):
    """Split the input channels holding the largest weights of each Convolution, duplicating their inputs.

    Parameters: ``weights_expansion_ratio`` (POT's, 0.01: the share of each convolution's input channels
    split, rounded up) and ``ignored`` (convolutions left as they are); the other common parameters are accepted
    (a pipeline passes them) and not used. It needs no data and changes the floating-point model (run it before
    quantization).
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(NAME, config), engine)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Split the channels in every member of ``model`` (edited in place) and return it."""
        ratio = float(self.config.weights_expansion_ratio)
        for member in model.models:
            ov_model = member["model"]
            split: Dict[str, List[int]] = {}
            skipped = ignored_op_names(ov_model, ignored_for_member(
                self.config.ignored, member["name"] if model.is_cascade else None, model.member_names))
            convolutions = sorted((op for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution"
                                   and op.get_friendly_name() not in skipped), key=lambda op: op.get_friendly_name())
            for conv in convolutions:
                origins = self._split(conv, ratio)
                if origins:
                    split[conv.get_friendly_name()] = origins
                    ov_model.validate_nodes_and_infer_types()
            logger.info("%s: model '%s': input channels split in %d of %d convolutions%s", NAME, member["name"],
                        len(split), len(convolutions),
                        "".join(f"; {name}: {origins}" for name, origins in split.items()))
        return model

    @staticmethod
    def _split(conv: ov.Node, ratio: float) -> List[int]:
        weights = conv_weight_constant(conv)
        if weights is None or conv.get_input_partial_shape(0).rank.is_dynamic:
            logger.debug("%s: %s skipped: its weights are not a Constant of its own", NAME, conv.get_friendly_name())
            return []
        data = weights.get_data()
        new_weights, origins = split_weights(data, ratio)
        if not origins:
            return []
        upstream = widenings(conv.input_value(0), data.shape[1])
        if upstream is None:
            logger.debug("%s: %s skipped: its input cannot get extra channels", NAME, conv.get_friendly_name())
            return []
        for constant, axis in upstream:
            _widen(constant, axis, origins)
        replace_constant(weights, new_weights)
        return origins
