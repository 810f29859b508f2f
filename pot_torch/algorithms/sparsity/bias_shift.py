"""The bias shift that makes up for the weights sparsity removed, as FastBiasCorrection measures shifts.

FastBiasCorrection compares a layer with its FakeQuantized weights against the same layer with the weights
behind its FakeQuantize, on a probe holding the dense model's input mean of each channel; a sparse layer has no
FakeQuantize, so the comparison is made here with the weights removed: the layer is linear in its weights, so
``dense(probe) - sparse(probe)`` is the layer with ``dense - sparse`` weights on the probe. Its per-channel mean
is added to the bias (whatever its size, as POT's sparsity did with ``threshold: inf``).
"""
from __future__ import annotations

import math
from typing import Dict, Hashable, Mapping

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.quantization.bias_correction_base import apply_bias_shift, compile_f32, find_biased_layers
from pot_torch.algorithms.quantization.fast_bias_correction import probe_input
from pot_torch.graph.editor import copy_node, ops_by_name
from pot_torch.graph.layer_patterns import weight_port
from pot_torch.statistics.reducers import make_reducer


def correct_sparse_biases(model: ov.Model, removed: Mapping[str, np.ndarray],
                          stats: Mapping[Hashable, Dict[str, list]]) -> int:
    """Shift the bias of each layer of ``model`` named in ``removed`` (``{layer: dense - sparse weights}``) by
    the mean output of those weights on the layer's FastBiasCorrection probe; returns how many were shifted.

    :param stats: FastBiasCorrection's statistics, collected on the dense model.
    """
    by_name = ops_by_name(model)
    parameters, results, layers = [], [], []
    for layer in find_biased_layers(model, quantized_only=False):
        op = by_name[layer.name]
        blob = probe_input(op, layer, stats) if layer.name in removed else None
        if blob is None:
            continue
        parameter = ops.parameter(list(blob.shape), op.get_input_element_type(layer.port))
        weights = weight_port(op)
        inputs = [parameter.output(0) if index == layer.port else
                  ops.constant(removed[layer.name]).output(0) if index == weights else op.input_value(index)
                  for index in range(op.get_input_size())]
        reducer = make_reducer("mean", per_channel=True, channel_axis=layer.output_axis, inplace=True)
        results.append(ops.result(reducer.graph_reduce(copy_node(op, inputs).output(0),
                                                       name=f"{layer.name}/sparsity_shift")))
        parameters.append(parameter)
        layers.append((op, blob))
    if not layers:
        return 0
    compiled = compile_f32(ov.Model(results, parameters, "sparsity_bias_probes"))
    outputs = compiled({index: blob for index, (_, blob) in enumerate(layers)})
    shifted = 0
    for index, (op, _) in enumerate(layers):
        shift = np.mean(outputs[compiled.output(index)], axis=0)
        shifted += apply_bias_shift(op, shift.astype(np.float32), math.inf) is not None
    return shifted
