"""``MagnitudeSparsity``: the smallest-magnitude weights of the model set to zero, up to ``sparsity_level``.

POT's algorithm: the weights of every Convolution, GroupConvolution, (Group)ConvolutionBackpropData and MatMul
with a constant weight input are ranked together by magnitude (each layer's weights divided by their L2 norm
first, unless ``normed_threshold`` is False); one global threshold is the magnitude at the ``sparsity_level``
fraction of that ranking and every weight below it becomes zero. With ``correct_weight_bias`` (default) each
output channel's remaining weights are first rescaled and shifted so the channel keeps the standard deviation
and mean it had before. Without the normalisation, the convolutions that read the model inputs are left dense
(their weights may hold a folded input scale that makes them all small, as POT said).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import (COMMON_PARAMS, Param, declare_params, fraction_below_one, ignored_for_member,
                                         resolve_params)
from pot_torch.algorithms.quantization.ignored import ignored_op_names
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.editor import replace_constant
from pot_torch.graph.layer_patterns import CONV_TYPES, LAYERS_WITH_BIAS, conv_weight_constant
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


_sparsity_level = fraction_below_one("expected the fraction of weights to set to zero, a number in [0, 1) such "
                                     "as 0.5")


def _positive(value: Any) -> Optional[str]:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value > 0:
        return None
    return "expected a positive number"


#: MagnitudeSparsity's parameters (POT's ``sparsity_level``, ``normed_threshold``, ``ignored``; its undocumented
#: ``correct_weight_bias`` and ``eps_factor``).
MAGNITUDE_SPARSITY_PARAMS: Dict[str, Param] = {
    **COMMON_PARAMS,
    "sparsity_level": Param(None, check=_sparsity_level),
    "normed_threshold": Param(True, choices=(True, False)),
    "correct_weight_bias": Param(True, choices=(True, False)),
    "eps_factor": Param(1e-9, check=_positive),
}
declare_params("MagnitudeSparsity", MAGNITUDE_SPARSITY_PARAMS)


def weight_constant(layer: ov.Node) -> Optional[ov.Node]:
    """The Constant holding the weights of ``layer`` (input 1, through a Convert), if only that layer reads it."""
    if layer.get_type_name() not in LAYERS_WITH_BIAS or layer.get_input_size() < 2:
        return None
    return conv_weight_constant(layer)


def output_axes(layer: ov.Node) -> Tuple[int, ...]:
    """The axes of ``layer``'s weight tensor that index its output channels (kept by the per-channel correction)."""
    kind = layer.get_type_name()
    if kind == "MatMul":
        rank = layer.get_input_partial_shape(1).rank.get_length()
        if rank < 2:
            return ()
        return (rank - 2,) if layer.get_attributes()["transpose_b"] else (rank - 1,)
    return {"Convolution": (0,), "GroupConvolution": (0, 1), "ConvolutionBackpropData": (1,),
            "GroupConvolutionBackpropData": (0, 2)}[kind]


def input_convolutions(model: ov.Model) -> List[str]:
    """Names of the convolutions first reached from the model's inputs (not looking past a convolution)."""
    found: List[str] = []
    seen = set()
    pending = [target.get_node() for parameter in model.get_parameters()
               for target in parameter.output(0).get_target_inputs()]
    while pending:
        node = pending.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if node.get_type_name() in CONV_TYPES:
            found.append(name)
            continue
        pending.extend(target.get_node() for output in node.outputs() for target in output.get_target_inputs())
    return sorted(found)


def sparsify_channels(weights: np.ndarray, mask: np.ndarray, axes: Sequence[int], correct: bool,
                      eps: float) -> np.ndarray:
    """``weights`` with ``mask`` set to zero; with ``correct``, the kept weights of each output channel (indexed
    by ``axes``) are first scaled by ``std(before) / (std(after) + eps)`` and shifted so its mean is unchanged."""
    result = weights.astype(np.float32).copy()
    if correct:
        reduce = tuple(a for a in range(weights.ndim) if a not in axes)
        sparse = np.where(mask, 0.0, result)
        scale = np.std(result, axis=reduce, keepdims=True) / (np.std(sparse, axis=reduce, keepdims=True) + eps)
        shift = np.mean(result, axis=reduce, keepdims=True) - np.mean(sparse * scale, axis=reduce, keepdims=True)
        result = result * scale + shift
    result[mask] = 0.0
    return result


@COMPRESSION_ALGORITHMS.register("MagnitudeSparsity")
class MagnitudeSparsity(Algorithm):
    """Set the ``sparsity_level`` fraction of smallest (normalised) weights of the model to zero.

    Parameters: ``sparsity_level`` (required, in [0, 1)), ``normed_threshold`` (True), ``correct_weight_bias``
    (True), ``eps_factor`` (1e-9, added to the standard deviation in that correction), ``ignored``.
    After ``run``, ``sparsity_levels_per_layer`` maps each sparsified layer to its fraction of zeroed weights and
    ``removed_weights`` maps ``(member or None, layer)`` to what was taken from its weights (dense - sparse, kept
    for the bias correction of BaseWeightSparsity; cleared by the next ``run``).
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)
        if self.config.sparsity_level is None:
            raise ValueError(f"{self.name} needs 'sparsity_level', the fraction of weights to set to zero (a "
                             "number in [0, 1), e.g. {'sparsity_level': 0.5})")
        self.sparsity_levels_per_layer: Dict[str, float] = {}
        self.removed_weights: Dict[Tuple[Optional[str], str], np.ndarray] = {}

    def _layers(self, model: CompressedModel) -> List[Tuple[Optional[str], ov.Node, ov.Node]]:
        """``(member or None, layer, weight Constant)`` of every layer to sparsify, over all members."""
        layers = []
        for member in model.models:
            name = member["name"] if model.is_cascade else None
            ov_model = member["model"]
            skipped = ignored_op_names(ov_model, ignored_for_member(self.config.ignored, name, model.member_names))
            if not self.config.normed_threshold:
                skipped |= set(input_convolutions(ov_model))
            for op in ov_model.get_ordered_ops():
                if op.get_type_name() not in LAYERS_WITH_BIAS or op.get_friendly_name() in skipped:
                    continue
                constant = weight_constant(op)
                if constant is None:
                    if op.get_type_name() != "MatMul":
                        logger.warning("%s skips %s '%s': its weights are not a Constant read by it alone",
                                       self.name, op.get_type_name(), op.get_friendly_name())
                    continue
                layers.append((name, op, constant))
        return layers

    def _scaled(self, weights: np.ndarray) -> np.ndarray:
        if not self.config.normed_threshold:
            return np.abs(weights)
        norm = float(np.linalg.norm(weights))
        return np.abs(weights) / norm if norm > 0 else np.zeros_like(weights)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Sparsify the weights of ``model`` in place and return it (no statistics are needed)."""
        layers = self._layers(model)
        if not layers:
            logger.warning("%s found no layer with constant weights to sparsify", self.name)
            return model
        values = [constant.get_data().astype(np.float32) for _, _, constant in layers]
        ranked = np.sort(np.concatenate([self._scaled(w).ravel() for w in values]))
        threshold = ranked[int(float(self.config.sparsity_level) * ranked.size)]
        self.sparsity_levels_per_layer, self.removed_weights = {}, {}
        for (member, layer, constant), weights in zip(layers, values):
            mask = self._scaled(weights) < threshold
            sparse = sparsify_channels(weights, mask, output_axes(layer), bool(self.config.correct_weight_bias),
                                       float(self.config.eps_factor))
            replace_constant(constant, sparse)
            self.sparsity_levels_per_layer[layer.get_friendly_name()] = float(mask.mean())
            self.removed_weights[(member, layer.get_friendly_name())] = weights - sparse
        for name, level in self.sparsity_levels_per_layer.items():
            logger.info("%s: %s has %.1f%% zero weights", self.name, name, 100 * level)
        return model
