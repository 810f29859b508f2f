"""Returning quantized layers to floating point: their FakeQuantize ops removed and their bias restored.

Bias correction (``FastBiasCorrection``, ``BiasCorrection``) shifts the bias of each quantized layer to make
up for its quantized weights. A layer returned to floating point computes with its floating-point weights
again, so that shift no longer makes up for anything: left in place it is an error of its own, and the
"reverted" layer is not the floating-point layer (issue #12: on a BatchNorm CNN trained on digits, reverting
every quantizer group left the accuracy 6 points below the floating-point model's). So a revert also puts back
the bias the layer had before bias correction, as NNCF's accuracy control does. The other layers keep their
corrections: each was computed for its own quantized weights.
"""
from __future__ import annotations

import copy
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from pot_torch.algorithms.quantization.quantizer_groups import QuantizerGroup, revert_group
from pot_torch.graph.editor import fake_quantize_ops, find_op
from pot_torch.graph.layer_patterns import LAYERS_WITH_BIAS, find_bias_add
from pot_torch.graph.nx_model import CompressedModel

#: A quantizer group of one member of a (possibly cascaded) model: ``(member name or None, group)``.
MemberGroup = Tuple[Optional[str], QuantizerGroup]
#: A layer of one member: ``(member name or None, layer friendly name)``.
LayerKey = Tuple[Optional[str], str]


def layer_biases(model: CompressedModel) -> Dict[LayerKey, np.ndarray]:
    """``{(member, layer): [C] bias}`` of every layer of ``model`` with a bias ``Add``."""
    biases = {}
    for member in model.models:
        name = member["name"] if model.is_cascade else None
        for op in member["model"].get_ordered_ops():
            bias = find_bias_add(op) if op.get_type_name() in LAYERS_WITH_BIAS else None
            if bias is not None:
                biases[(name, op.get_friendly_name())] = bias.per_channel()
    return biases


def _fake_quantize_names(model: CompressedModel) -> Dict[Optional[str], Tuple[str, ...]]:
    return {(member["name"] if model.is_cascade else None):
            tuple(fq.get_friendly_name() for fq in fake_quantize_ops(member["model"])) for member in model.models}


def biases_before_correction(corrected: CompressedModel, uncorrected: CompressedModel) -> Dict[LayerKey, np.ndarray]:
    """The biases bias correction changed, as they were before it: ``{(member, layer): [C] bias}``.

    :param corrected: the quantized model, bias correction applied.
    :param uncorrected: the same quantization without bias correction (same parameters, data and seed).
    :raises ValueError: when the two models do not hold the same FakeQuantize ops (not the same quantization).
    """
    if _fake_quantize_names(corrected) != _fake_quantize_names(uncorrected):
        raise ValueError("the model quantized without bias correction has other FakeQuantize ops than the "
                         "quantized model; both must come from the same parameters, data and seed")
    return _changed(layer_biases(uncorrected), corrected)


def recorded_biases(corrected: CompressedModel) -> Optional[Dict[LayerKey, np.ndarray]]:
    """The biases bias correction changed, as it recorded them when it started
    (``CompressedModel.biases_before_correction``); None when no bias correction recorded any."""
    if corrected.biases_before_correction is None:
        return None
    return _changed(corrected.biases_before_correction, corrected)


def _changed(before: Mapping[LayerKey, np.ndarray], corrected: CompressedModel) -> Dict[LayerKey, np.ndarray]:
    """The entries of ``before`` whose layer has another bias in ``corrected``."""
    return {key: before[key] for key, bias in layer_biases(corrected).items()
            if key in before and not np.array_equal(before[key], bias)}


def reverted(model: CompressedModel, groups: Sequence[MemberGroup],
             biases: Mapping[LayerKey, np.ndarray]) -> CompressedModel:
    """A copy of ``model`` with ``groups`` returned to floating point: their FakeQuantize ops removed (weights
    exact again) and their layers' biases set back to ``biases`` (:func:`biases_before_correction`)."""
    result = copy.deepcopy(model)
    for member, group in groups:
        ov_model = result.get_model(member)
        revert_group(ov_model, group)
        for layer in group.layers:
            before = biases.get((member, layer))
            if before is not None:
                find_bias_add(find_op(ov_model, layer)).set_value(before)
    return result
