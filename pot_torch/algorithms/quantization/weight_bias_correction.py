"""``WeightBiasCorrection``: POT's correction of quantized weights' per-channel mean and spread.

Runs on a quantized model (after ``MinMaxQuantization``, as in POT). For each layer with fake-quantized
constant weights (Convolution, GroupConvolution, (Group)ConvolutionBackpropData, MatMul) the quantized weights
``q`` are computed by OpenVINO (the weight FakeQuantize ops compiled alone at f32) and compared per output
channel with the floating-point weights ``w`` they stand for:

- ``s = std(w) / (std(q) + eps_factor)`` restores the spread, ``m = mean(w) - mean(s * q)`` the mean;
- the output range of the weight FakeQuantize is mapped by ``s * range + m``, so its output becomes exactly
  ``s * q + m`` (the weights and the input range are unchanged, so every weight falls on the same level as
  before), and the quantized weights get the floating-point weights' per-channel mean and standard deviation.
  POT mapped the weights and all four ranges instead; that gives the same output, except that the extreme
  weights of a saturation-fixed layer, which sit exactly half-way between two levels, can round the other way.

The channels are those the weight FakeQuantize is per-channel over (the output channels for POT's presets); a
per-tensor weight FakeQuantize gets one correction for the whole tensor and stays per-tensor.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import COMMON_PARAMS, Param, declare_params, resolve_params
from pot_torch.algorithms.quantization.bias_correction_base import compile_f32
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.editor import constant_value, fake_quantize_ranges, ops_by_name, set_fake_quantize_ranges
from pot_torch.graph.layer_patterns import LAYERS_WITH_BIAS, has_quantized_weights, weight_port
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

NAME = "WeightBiasCorrection"


def _positive_number(value: Any) -> Optional[str]:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value) \
        and value > 0
    return None if ok else "expected a small positive number added to the quantized weights' std (e.g. 1e-5)"


declare_params(NAME, {**COMMON_PARAMS, "eps_factor": Param(1e-5, check=_positive_number)})


def quantized_weight_fqs(model: ov.Model) -> List[Tuple[ov.Node, ov.Node]]:
    """``(layer, weight FakeQuantize)`` of every layer with fake-quantized constant weights, in topological order."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in LAYERS_WITH_BIAS and has_quantized_weights(op):
            found.append((op, op.input_value(weight_port(op)).get_node()))
    return found


def fake_quantize_outputs(model: ov.Model, fq_names: List[str]) -> List[np.ndarray]:
    """The outputs of the named constant-fed FakeQuantize ops of ``model``, computed by OpenVINO at f32."""
    if not fq_names:
        return []
    clone = model.clone()
    by_name = ops_by_name(clone)
    outputs = [ops.result(by_name[name].output(0)) for name in fq_names]
    compiled = compile_f32(ov.Model(outputs, [], "quantized_weights"))
    results = compiled({})
    return [np.asarray(results[compiled.output(index)], dtype=np.float32) for index in range(len(fq_names))]


def channel_axes(data_rank: int, ranges: Tuple[np.ndarray, ...]) -> Tuple[int, ...]:
    """The axes a FakeQuantize on a tensor of rank ``data_rank`` is per-channel over (from its range shapes)."""
    axes = set()
    for value in ranges:
        shape = (1,) * (data_rank - value.ndim) + tuple(value.shape)
        axes.update(axis for axis, size in enumerate(shape) if size > 1)
    return tuple(sorted(axes))


def correct_weights(fp: np.ndarray, quantized: np.ndarray, axes: Tuple[int, ...], eps: float
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """POT's per-channel ``(s, m)``: ``s * quantized + m`` has the mean and std of ``fp`` per channel.

    ``axes`` are the channel axes; the statistics are taken over the others (kept as size-1 axes). A channel
    whose floating-point weights are all equal keeps its spread (``s = 1``).
    """
    reduce = tuple(axis for axis in range(fp.ndim) if axis not in axes)
    fp_std = np.std(fp, axis=reduce, keepdims=True)
    scale = np.where(fp_std > 0, fp_std / (np.std(quantized, axis=reduce, keepdims=True) + eps), 1.0)
    shift = np.mean(fp, axis=reduce, keepdims=True) - np.mean(quantized * scale, axis=reduce, keepdims=True)
    return scale.astype(np.float32), shift.astype(np.float32)


@COMPRESSION_ALGORITHMS.register(NAME)
class WeightBiasCorrection(Algorithm):
    """Restore the per-channel mean and standard deviation of fake-quantized weights.

    Parameters: ``eps_factor`` (POT's, 1e-5: added to the quantized weights' std); the common parameters are
    accepted (a pipeline passes them) and not used. Run it after ``MinMaxQuantization``; it needs no data.
    """

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(NAME, config), engine)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Correct the weights of every member of ``model`` (edited in place) and return it."""
        for member in model.models:
            ov_model = member["model"]
            layers = quantized_weight_fqs(ov_model)
            if not layers:
                logger.warning("%s: model '%s' has no fake-quantized weights, nothing to correct (run it after "
                               "MinMaxQuantization or DefaultQuantization)", NAME, member["name"])
                continue
            names = [fq.get_friendly_name() for _, fq in layers]
            corrected = 0
            for (layer, fq), quantized in zip(layers, fake_quantize_outputs(ov_model, names)):
                corrected += self._correct_layer(layer, fq, quantized)
            ov_model.validate_nodes_and_infer_types()
            logger.info("%s: model '%s': weights of %d of %d layers corrected", NAME, member["name"], corrected,
                        len(layers))
        return model

    def _correct_layer(self, layer: ov.Node, fq: ov.Node, quantized: np.ndarray) -> bool:
        in_low, in_high, out_low, out_high = fake_quantize_ranges(fq)
        if np.any(in_high == in_low):
            logger.warning("%s skips '%s': its weight FakeQuantize has an empty input range", NAME,
                           layer.get_friendly_name())
            return False
        data = constant_value(fq.input_value(0))
        # the floating-point weights: the FakeQuantize maps its input range linearly onto its output range
        # (they differ after the saturation fix)
        fp = out_low + (data - in_low) * ((out_high - out_low) / (in_high - in_low))
        axes = channel_axes(data.ndim, (in_low, in_high, out_low, out_high))
        scale, shift = correct_weights(fp, quantized, axes, float(self.config.eps_factor))
        set_fake_quantize_ranges(fq, (in_low, in_high, out_low * scale + shift, out_high * scale + shift))
        return True
