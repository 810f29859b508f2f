"""``FastBiasCorrection``: POT's fast bias correction of quantized layers.

For every quantized layer with a bias ``Add`` the floating-point statistics (collected on the model before
quantization, in the same pass as MinMaxQuantization's) give the per-channel mean of the layer's input and of
its biased output. The layer alone (its FakeQuantized weights, no bias) is run on an input holding the
floating-point input mean in every position of each channel; the new bias is the floating-point output mean
minus that output's per-channel mean. It is applied unless the change is too large relative to the bias
(:func:`~pot_torch.algorithms.quantization.bias_correction_base.shift_magnitude` not below ``threshold``, default 2.0;
a bias with a zero value is never changed), as in POT.

Unlike POT, the probe input does not pass through the layer's activation FakeQuantize (NNCF's choice): the
rounding of one point, the mean, is not the mean rounding error over the data, which is close to zero, and it
added a spurious term that made the threshold reject useful corrections (docs/quantization.md, "Bias
correction"). What is corrected is the mean shift caused by the weight quantization.

The one-layer models are built into one ``openvino.Model`` (one input and one output per layer) and compiled
at f32, so the algorithm costs one compilation and one inference; a model with more than
:data:`PROBE_WEIGHT_BYTES` (64 MiB) of weights is probed in several such pieces to bound the memory.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, List, Mapping, Optional

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.bias_correction_base import (SHAPE_STAT, BiasedLayer, BiasShiftAlgorithm,
                                                          apply_bias_shift, compile_f32, find_biased_layers,
                                                          mean_layout, mean_of, static_input_shape)
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.layer_patterns import find_bias_add, weight_port
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import StatisticsRequest
from pot_torch.statistics.reducers import make_reducer
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Most weight bytes compiled into one probe model. The compiled model holds its own copy of the quantized
#: weights, so probing a large model in one piece would add about its size to the peak memory.
PROBE_WEIGHT_BYTES = 64 * 2**20


@COMPRESSION_ALGORITHMS.register("FastBiasCorrection")
class FastBiasCorrection(BiasShiftAlgorithm):
    """Shift the bias of each quantized layer so its output mean matches the floating-point model's.

    Parameters (POT's): ``threshold`` (2.0), ``apply_for_all_nodes`` (False: only layers with quantized
    weights; True: every layer with a bias), ``stat_subset_size``, ``stat_batch_size``, ``shuffle_data``,
    ``seed``, ``inplace_statistics``.

    ``statistics_requests`` must be given the floating-point model and ``run`` the quantized one (see
    :class:`~pot_torch.algorithms.quantization.bias_correction_base.BiasShiftAlgorithm`).
    """

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-channel means of the input and biased output of every layer with a bias (FP model)."""
        layout: Dict[Hashable, Dict[str, Any]] = {}
        for member in model.models:
            ov_model = member["model"]
            layers = find_biased_layers(ov_model, quantized_only=False)
            for key, stats in mean_layout(ov_model, layers, self.config.inplace_statistics, inputs=True).items():
                layout.setdefault(key, {}).update(stats)
        if not layout:
            return []
        indices = calibration_indices(self.config, len(self.engine.data_loader))
        return [StatisticsRequest(layout, list(indices), self.config.stat_batch_size, tag=self.name)]

    def _correct(self, model: ov.Model, stats: Mapping[Hashable, Dict[str, list]]) -> None:
        layers = find_biased_layers(model, quantized_only=not self.config.apply_for_all_nodes)
        ops_by_name = {op.get_friendly_name(): op for op in model.get_ops()}
        probes = [probe for probe in (_probe_for(ops_by_name[layer.name], layer, stats) for layer in layers)
                  if probe is not None]
        chunks = _chunks_by_weight_size(probes, ops_by_name)
        quantized_means = [mean for chunk in chunks for mean in _measure(model, chunk)]
        for probe, quantized_mean in zip(probes, quantized_means):
            layer = ops_by_name[probe.layer.name]
            bias = find_bias_add(layer)
            if bias is None:
                continue
            # the probe has no bias: the new bias is what brings its mean to the FP mean
            shift = probe.fp_output_mean - quantized_mean - bias.per_channel()
            apply_bias_shift(layer, shift.astype(np.float32), float(self.config.threshold))


class _Probe:
    """One layer to measure: the layer, its input blob, and the floating-point mean of its biased output."""

    def __init__(self, layer: BiasedLayer, input_blob: np.ndarray, fp_output_mean: np.ndarray) -> None:
        self.layer = layer
        self.input_blob = input_blob
        self.fp_output_mean = fp_output_mean


def _input_shape(layer_op: ov.Node, layer: BiasedLayer, stats: Mapping[Hashable, Dict[str, list]]
                 ) -> Optional[List[int]]:
    shape = static_input_shape(layer_op, layer.port)
    if shape is None:
        shapes = stats.get(layer.input_key, {}).get(SHAPE_STAT)
        if not shapes:
            return None
        shape = [int(d) for d in np.asarray(shapes[0])[0]]
        shape[0] = 1
    return shape


def _probe_for(layer_op: ov.Node, layer: BiasedLayer, stats: Mapping[Hashable, Dict[str, list]]
               ) -> Optional[_Probe]:
    """The probe of ``layer`` (op ``layer_op``), or ``None`` (logged) when its statistics are missing or do not
    fit."""
    input_mean = mean_of(stats, layer.input_key, layer.input_axis)
    output_mean = mean_of(stats, layer.bias_key, layer.output_axis)
    shape = _input_shape(layer_op, layer, stats)
    if input_mean is None or output_mean is None or shape is None:
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
    blob = np.ascontiguousarray(np.broadcast_to(input_mean.reshape(broadcast), shape), dtype=dtype)
    return _Probe(layer, blob, output_mean)


def _weight_bytes(layer_op: ov.Node) -> int:
    port = weight_port(layer_op)
    constant = None if port is None else constant_source(layer_op.input_value(port))
    return 0 if constant is None else int(constant.get_byte_size())


def _chunks_by_weight_size(probes: List[_Probe], ops_by_name: Mapping[str, ov.Node]) -> List[List[_Probe]]:
    """``probes`` in order, cut into runs whose layers hold at most :data:`PROBE_WEIGHT_BYTES` of weights
    (a layer larger than that gets a run of its own)."""
    chunks: List[List[_Probe]] = []
    size = 0
    for probe in probes:
        weight = _weight_bytes(ops_by_name[probe.layer.name])
        if not chunks or size + weight > PROBE_WEIGHT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(probe)
        size += weight
    return chunks


def _measure(model: ov.Model, probes: List[_Probe]) -> List[np.ndarray]:
    """The per-channel output mean of each probe's layer on its input blob (one compilation at f32)."""
    compiled = compile_f32(_build_probe_model(model, probes))
    results = compiled({index: probe.input_blob for index, probe in enumerate(probes)})
    return [np.mean(results[compiled.output(index)], axis=0) for index in range(len(probes))]


def _build_probe_model(model: ov.Model, probes: List[_Probe]) -> ov.Model:
    """One model holding, per probe, Parameter -> layer -> channel means.

    Built on a clone of ``model`` whose layers are rewired to read their own Parameter; the layers keep their
    FakeQuantized weights and lose their bias (only the layer's own output is measured).
    """
    clone = model.clone()
    ops_by_name = {op.get_friendly_name(): op for op in clone.get_ops()}
    parameters, results = [], []
    for index, probe in enumerate(probes):
        layer = ops_by_name[probe.layer.name]
        port = probe.layer.port
        parameter = ops.parameter(list(probe.input_blob.shape), layer.get_input_element_type(port),
                                  name=f"{probe.layer.name}/fbc_input_{index}")
        layer.input(port).replace_source_output(parameter.output(0))
        reducer = make_reducer("mean", per_channel=True, channel_axis=probe.layer.output_axis, inplace=True)
        results.append(ops.result(reducer.graph_reduce(layer.output(0), name=f"{probe.layer.name}/fbc_mean")))
        parameters.append(parameter)
    return ov.Model(results, parameters, "fast_bias_correction_probes")

