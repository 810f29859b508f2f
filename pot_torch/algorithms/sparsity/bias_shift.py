"""The bias shift that makes up for the weights sparsity removed, as FastBiasCorrection measures shifts.

FastBiasCorrection compares a layer with its FakeQuantized weights against the same layer with the weights
behind its FakeQuantize, on a probe holding the dense model's input mean of each channel; a sparse layer has no
FakeQuantize, so the comparison is made here with the weights removed: the layer is linear in its weights, so
``dense(probe) - sparse(probe)`` is the layer with ``dense - sparse`` weights on the probe. Its per-channel mean
is added to the bias (whatever its size, as POT's sparsity did with ``threshold: inf``). The probe models hold
at most FastBiasCorrection's ``PROBE_WEIGHT_BYTES`` of removed weights each, to bound the memory.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Sequence, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.quantization.bias_correction_base import (BiasedLayer, apply_bias_shift, compile_f32,
                                                          find_biased_layers)
from pot_torch.algorithms.quantization.fast_bias_correction import PROBE_WEIGHT_BYTES, probe_input, runs_within_bytes
from pot_torch.graph.editor import copy_node, ops_by_name
from pot_torch.graph.layer_patterns import weight_port
from pot_torch.statistics.collector import Statistics
from pot_torch.statistics.reducers import make_reducer


def correct_sparse_biases(model: ov.Model, removed: Mapping[str, np.ndarray],
                          stats: Statistics) -> int:
    """Shift the bias of each layer of ``model`` named in ``removed`` (``{layer: dense - sparse weights}``) by
    the mean output of those weights on the layer's FastBiasCorrection probe; returns how many were shifted.

    :param stats: FastBiasCorrection's statistics, collected on the dense model.
    """
    by_name = ops_by_name(model)
    probes = []
    for layer in find_biased_layers(model, quantized_only=False):
        blob = probe_input(by_name[layer.name], layer, stats) if layer.name in removed else None
        if blob is not None:
            probes.append((layer, blob))
    runs = runs_within_bytes(probes, [removed[layer.name].nbytes for layer, _ in probes], PROBE_WEIGHT_BYTES)
    shifts = [shift for run in runs for shift in _measure(by_name, removed, run)]
    return sum(apply_bias_shift(by_name[layer.name], shift.astype(np.float32), math.inf) is not None
               for (layer, _), shift in zip(probes, shifts))


def _measure(by_name: Mapping[str, ov.Node], removed: Mapping[str, np.ndarray],
             probes: Sequence[Tuple[BiasedLayer, np.ndarray]]) -> List[np.ndarray]:
    """Per probe, the per-channel output mean of its layer with the removed weights on its input blob (one
    compilation at f32)."""
    parameters, results = [], []
    for layer, blob in probes:
        op = by_name[layer.name]
        parameter = ops.parameter(list(blob.shape), op.get_input_element_type(layer.port))
        weights = weight_port(op)
        inputs = [parameter.output(0) if index == layer.port else
                  ops.constant(removed[layer.name]).output(0) if index == weights else op.input_value(index)
                  for index in range(op.get_input_size())]
        reducer = make_reducer("mean", per_channel=True, channel_axis=layer.output_axis, inplace=True)
        results.append(ops.result(reducer.graph_reduce(copy_node(op, inputs).output(0),
                                                       name=f"{layer.name}/sparsity_shift")))
        parameters.append(parameter)
    compiled = compile_f32(ov.Model(results, parameters, "sparsity_bias_probes"))
    outputs = compiled({index: blob for index, (_, blob) in enumerate(probes)})
    return [np.mean(outputs[compiled.output(index)], axis=0) for index in range(len(probes))]
