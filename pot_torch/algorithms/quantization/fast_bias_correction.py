"""``FastBiasCorrection``: POT's fast bias correction of quantized layers.

For every quantized layer with a bias ``Add`` the floating-point statistics (collected on the model before
quantization, in the same pass as MinMaxQuantization's) give the per-channel mean of the layer's input. The
layer alone, without its bias, is run twice on a probe input holding that mean in every position of each
channel: once with its FakeQuantized weights and once with the floating-point weights behind their
FakeQuantize; the bias moves by the difference of the two outputs' per-channel means. A shift is applied
unless it is too large relative to the bias
(:func:`~pot_torch.algorithms.quantization.bias_correction_base.shift_magnitude` not below ``threshold``, default 2.0;
a bias with a zero value is never changed), as in POT.

Unlike POT, the probe input does not pass through the layer's activation FakeQuantize (NNCF's choice): the
rounding of one point, the mean, is not the mean rounding error over the data, which is close to zero, and it
added a spurious term that made the threshold reject useful corrections (docs/quantization.md, "Bias
correction"). What is corrected is the mean shift caused by the weight quantization.

Unlike POT and NNCF, the reference is the floating-point layer on the same probe, not the floating-point
output mean measured on the data: a layer's output on the mean input is not the mean of its outputs wherever
the layer is not purely linear in its input, e.g. at the zero-padded borders of a convolution, and the old
rule took that difference for quantization error (a 3-conv digits CNN: top-1 0.8141 -> 0.8744,
docs/int8-placement-findings.md 8.8). So only the layers with quantized weights are corrected: with
``apply_for_all_nodes`` (POT: also layers without quantized weights, whose probe went through the input's
FakeQuantize) a warning says that it changes nothing here; BiasCorrection corrects such layers for their
quantized inputs.

The one-layer models are built into one ``openvino.Model`` (one input and one output per layer) and compiled
at f32, so the algorithm costs one compilation and one inference; a model with more than
:data:`PROBE_WEIGHT_BYTES` (64 MiB) of weights is probed in several such pieces to bound the memory.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, TypeVar

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.bias_correction_base import (SHAPE_STAT, BiasedLayer, BiasShiftAlgorithm,
                                                          apply_bias_shift, compile_f32, find_biased_layers,
                                                          mean_of, mean_specs, static_input_shape)
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import copy_node, fake_quantize_linear_map, ops_by_name
from pot_torch.graph.layer_patterns import weight_port
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.statistics.reducers import make_reducer
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Most weight bytes compiled into one probe model. The compiled model holds its own copy of the quantized
#: weights, so probing a large model in one piece would add about its size to the peak memory.
PROBE_WEIGHT_BYTES = 64 * 2**20
_Item = TypeVar("_Item")


@COMPRESSION_ALGORITHMS.register("FastBiasCorrection")
class FastBiasCorrection(BiasShiftAlgorithm):
    """Shift the bias of each quantized layer so its output mean matches the floating-point model's.

    Parameters (POT's): ``threshold`` (2.0), ``apply_for_all_nodes`` (accepted; it changes nothing, with a
    warning: see the module's description), ``stat_subset_size, ``stat_batch_size``, ``shuffle_data``,
    ``seed``, ``inplace_statistics``.

    ``statistics_requests`` must be given the floating-point model and ``run`` the quantized one (see
    :class:`~pot_torch.algorithms.quantization.bias_correction_base.BiasShiftAlgorithm`).
    """

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-channel means of the input of every layer with a bias (FP model)."""
        specs = [spec for member in model.models
                 for spec in mean_specs(member["model"], find_biased_layers(member["model"], quantized_only=False),
                                        self.config.inplace_statistics, "input")]
        if not specs:
            return []
        indices = calibration_indices(self.config, len(self.engine.data_loader))
        return [StatisticsRequest(specs, list(indices), self.config.stat_batch_size, tag=self.name)]

    def _correct(self, model: ov.Model, stats: Statistics) -> None:
        layers = find_biased_layers(model, quantized_only=True)
        if self.config.apply_for_all_nodes:
            _warn_apply_for_all_nodes(len(find_biased_layers(model, quantized_only=False)) - len(layers))
        by_name = ops_by_name(model)
        probes = []
        for layer in layers:
            blob = probe_input(by_name[layer.name], layer, stats)
            if blob is not None:
                probes.append(_Probe(layer, blob))
        chunks = runs_within_bytes(probes, [_weight_bytes(by_name[probe.layer.name]) for probe in probes],
                                   PROBE_WEIGHT_BYTES)
        shifts = [shift for chunk in chunks for shift in _measure(model, chunk)]
        for probe, shift in zip(probes, shifts):
            apply_bias_shift(by_name[probe.layer.name], shift.astype(np.float32), float(self.config.threshold))


def _warn_apply_for_all_nodes(unquantized: int) -> None:
    logger.warning("FastBiasCorrection: 'apply_for_all_nodes' changes nothing (%d layer(s) with a bias have no "
                   "quantized weights): it corrects the mean shift caused by weight quantization only. Use "
                   "BiasCorrection ('use_fast_bias': False) to correct layers for their quantized inputs too",
                   unquantized)


class _Probe:
    """One layer to measure and its input blob."""

    def __init__(self, layer: BiasedLayer, input_blob: np.ndarray) -> None:
        self.layer = layer
        self.input_blob = input_blob


def _input_shape(layer_op: ov.Node, layer: BiasedLayer, stats: Statistics) -> Optional[List[int]]:
    shape = static_input_shape(layer_op, layer.port)
    if shape is None:
        shapes = stats.get(layer.input_key, {}).get(SHAPE_STAT)
        if not shapes:
            return None
        shape = [int(d) for d in np.asarray(shapes[0])[0]]
        shape[0] = 1
    return shape


def probe_input(layer_op: ov.Node, layer: BiasedLayer, stats: Statistics) -> Optional[np.ndarray]:
    """The probe input of ``layer`` (op ``layer_op``): its input's shape (batch 1) holding the floating-point
    mean of each channel (from ``stats``, FastBiasCorrection's statistics) everywhere; ``None`` (logged) when
    its statistics are missing or do not fit."""
    input_mean = mean_of(stats, layer.input_key, layer.input_axis)
    shape = _input_shape(layer_op, layer, stats)
    if input_mean is None or shape is None:
        logger.debug("%s skipped: no floating-point statistics for it", layer.name)
        return None
    axis = layer.input_axis % len(shape)
    if shape[axis] != input_mean.size:
        logger.warning("FastBiasCorrection skips %s: its input mean has %d channels but its input shape is %s",
                       layer.name, input_mean.size, shape)
        return None
    broadcast = [1] * len(shape)
    broadcast[axis] = shape[axis]
    dtype = layer_op.get_input_element_type(layer.port).to_dtype()
    return np.ascontiguousarray(np.broadcast_to(input_mean.reshape(broadcast), shape), dtype=dtype)


def _weight_bytes(layer_op: ov.Node) -> int:
    port = weight_port(layer_op)
    constant = None if port is None else constant_source(layer_op.input_value(port))
    return 0 if constant is None else int(constant.get_byte_size())


def runs_within_bytes(items: Sequence[_Item], sizes: Sequence[int], limit: int) -> List[List[_Item]]:
    """``items`` in order, cut into runs whose ``sizes`` (bytes) add up to at most ``limit`` (an item larger than
    that gets a run of its own): the pieces a probe model is compiled in."""
    runs: List[List[_Item]] = []
    total = 0
    for item, size in zip(items, sizes):
        if not runs or total + size > limit:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += size
    return runs


def _measure(model: ov.Model, probes: List[_Probe]) -> List[np.ndarray]:
    """Per probe, the per-channel output mean of its floating-point layer minus that of its quantized layer on
    its input blob (one compilation at f32)."""
    compiled = compile_f32(_build_probe_model(model, probes))
    results = compiled({index: probe.input_blob for index, probe in enumerate(probes)})
    return [np.mean(results[compiled.output(index)], axis=0) for index in range(len(probes))]


def _float_twin(layer: ov.Node) -> ov.Node:
    """A copy of ``layer`` (whose weights go through a FakeQuantize right before it) reading the floating-point
    weights instead: the FakeQuantize's input, mapped as the FakeQuantize maps it without the rounding (the
    saturation fix stores half the weights and doubles the FakeQuantize's output range)."""
    weights = weight_port(layer)
    fq = layer.input_value(weights).get_node()
    float_weight = fq.input_value(0)
    linear_map = fake_quantize_linear_map(fq)
    if linear_map is not None:
        scale, shift = (ops.constant(value.astype(np.float32)) for value in linear_map)
        float_weight = ops.add(ops.multiply(float_weight, scale), shift).output(0)
    return copy_node(layer, [float_weight if index == weights else layer.input_value(index)
                             for index in range(layer.get_input_size())])


def _build_probe_model(model: ov.Model, probes: List[_Probe]) -> ov.Model:
    """One model holding, per probe, Parameter -> (FP twin - layer) -> channel means.

    Built on a clone of ``model`` whose layers are rewired to read their own Parameter; each gets a twin reading
    the floating-point weight behind its weight FakeQuantize. Neither has a bias (only the layers' own outputs
    are compared).
    """
    clone = model.clone()
    by_name = ops_by_name(clone)
    parameters, results = [], []
    for index, probe in enumerate(probes):
        layer = by_name[probe.layer.name]
        port = probe.layer.port
        parameter = ops.parameter(list(probe.input_blob.shape), layer.get_input_element_type(port),
                                  name=f"{probe.layer.name}/fbc_input_{index}")
        layer.input(port).replace_source_output(parameter.output(0))
        difference = ops.subtract(_float_twin(layer).output(0), layer.output(0)).output(0)
        reducer = make_reducer("mean", per_channel=True, channel_axis=probe.layer.output_axis, inplace=True)
        results.append(ops.result(reducer.graph_reduce(difference, name=f"{probe.layer.name}/fbc_mean")))
        parameters.append(parameter)
    return ov.Model(results, parameters, "fast_bias_correction_probes")
