"""Measurements of a quantized model per quantizer group: output SQNR against FP and activation range shape."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.quantization.qnoise_estimator import layer_noise, statistics_engine
from pot_torch.algorithms.quantization.quantizer_groups import QuantizerGroup
from pot_torch.api.engine import Engine
from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.node_key import output_key
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.spec import StatisticSpec


def sqnr_db(engine: Engine, fp_model: ov.Model, int8_model: ov.Model, groups: Sequence[QuantizerGroup],
            indices: Sequence[int]) -> List[float]:
    """Per group the SQNR in dB of its worst layer output (INT8 against FP, ``sqnr_sample_mean``), one pass."""
    layers = [layer for group in groups for layer in group.layers]
    noise = layer_noise(engine, fp_model, int8_model, layers, indices)
    with np.errstate(divide="ignore"):
        figures = {layer: 10.0 * np.log10(max(noise[layer].metric("sqnr_sample_mean", 1e-30), 1e-30))
                   for layer in layers}
    return [float(min(figures[layer] for layer in group.layers)) for group in groups]


def _channel_abs_max(batch: np.ndarray) -> np.ndarray:
    values = np.abs(batch.reshape(batch.shape[0], batch.shape[1] if batch.ndim > 1 else 1, -1))
    return values.max(axis=2)


def activation_keys(int8_model: ov.Model, group: QuantizerGroup) -> List:
    """Node keys of the activations the group's FakeQuantize ops quantize (weights left out)."""
    ops = ops_by_name(int8_model)
    keys = []
    for name in group.fq_names:
        source = ops[name].input_value(0)
        if constant_source(source) is None:
            keys.append(output_key(source))
    return keys


def range_shapes(engine: Engine, fp_model: ov.Model, int8_model: ov.Model, groups: Sequence[QuantizerGroup],
                 indices: Sequence[int]) -> List[Tuple[Optional[float], Optional[float], Optional[int]]]:
    """Per group ``(outlier ratio, channel spread, outlier channel)`` of its most uneven activation (see
    ``GroupRow``), from the per-channel absolute maxima over ``indices`` in the FP model; ``None``s for a group
    without activation quantizers."""
    per_group = [activation_keys(int8_model, group) for group in groups]
    specs = [StatisticSpec(key, "channel_abs_max", _channel_abs_max, "max") for keys in per_group for key in keys]
    stats = collect_statistics(statistics_engine(engine), CompressedModel(fp_model.clone()),
                               [StatisticsRequest(specs, list(indices), tag="report")])[0] if specs else {}
    shapes = []
    for keys in per_group:
        best: Tuple[Optional[float], Optional[float], Optional[int]] = (None, None, None)
        for key in keys:
            maxima = stats[key]["channel_abs_max"]
            median = float(np.median(maxima))
            nonzero = maxima[maxima > 0]
            ratio = float(maxima.max() / median) if median > 0 else float("inf")
            spread = float(nonzero.max() / nonzero.min()) if nonzero.size else 1.0
            if best[0] is None or ratio > best[0]:
                best = (ratio, spread, int(np.argmax(maxima)))
        shapes.append(best)
    return shapes
