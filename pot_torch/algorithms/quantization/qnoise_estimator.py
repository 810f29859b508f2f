"""``QuantNoiseEstimator``: per-layer quantization noise, the output of each quantized layer against floating point.

POT 2023.3's algorithm of the same name, with its parameters. For every quantized layer (the layers of each
quantizer group, see ``quantizer_groups``) it compares the layer's output (after its bias ``Add`` when it has
one, where POT measured) in the quantized model with the same output in floating point, on the same inputs,
and reduces the pair to one noise figure per layer (``type``):

- ``sqnr``: per sample ``mean(y^2) / (eps + mean((y - q)^2))``, averaged over samples;
- ``sqnr_per_channel``: the same per channel (axis 1), averaged over channels and samples;
- ``sqnr_sample_mean``: ``mean over samples of mean(y^2)`` / ``mean over samples of mean((y - q)^2)``;
- ``sqnr_sample_per_channel``: that ratio per channel, averaged over channels;
- ``sqnr_eltwise_mean``: per sample the mean over elements of ``y^2 / (eps + (y - q)^2)``, averaged.

``y`` is the floating-point output, ``q`` the quantized one; the figures are ratios (not dB), larger is less
noise. Modes: ``full_fq_noise`` compares the fully quantized model with the model without FakeQuantize ops;
``layerwise_fq_noise`` compares, for each quantizer group, the model with only that group quantized (noise of
the layer alone, not accumulated from the layers before it).

Both models run as one OpenVINO model (the floating-point graph, the quantized graph reading the same
inputs, and a ``Subtract`` per measured output), so a pass over ``stat_subset_size`` samples gives every
layer's figure without storing activations. It runs at the engine's statistics precision (f32 by default).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import COMMON_PARAMS, Param, calibration_indices, declare_params, resolve_params
from pot_torch.algorithms.quantization.quantizer_groups import QuantizerGroup, quantizer_groups, revert_group
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.api.engine import Engine
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.editor import fake_quantize_ops, find_op, ops_by_name, remove_fake_quantize
from pot_torch.graph.hardware.config import load_hardware_config
from pot_torch.graph.layer_patterns import find_bias_add
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics
from pot_torch.statistics.spec import layout_specs
from pot_torch.utils.atomic import atomic_output_files
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

NOISE_MODES = ("full_fq_noise", "layerwise_fq_noise")
NOISE_TYPES = ("sqnr", "sqnr_per_channel", "sqnr_sample_mean", "sqnr_sample_per_channel", "sqnr_eltwise_mean")
#: Suffix of the quantized graph's op names inside the composite model.
QUANTIZED_SUFFIX = "/quantized"


def _positive_number(value: Any) -> Optional[str]:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and np.isfinite(value) \
        and value > 0
    return None if ok else "expected a positive finite number, e.g. 1e-15"


def _file_name(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value else "expected a file name (a string), e.g. 'noise.csv'"


declare_params("QuantNoiseEstimator", {
    **COMMON_PARAMS,
    "mode": Param("full_fq_noise", choices=NOISE_MODES),
    "type": Param("sqnr", choices=NOISE_TYPES),
    "eps": Param(1e-15, check=_positive_number),
    "results_dump_filename": Param(None, check=_file_name),
})


@dataclass(frozen=True)
class LayerNoise:
    """Per-sample energies of one layer output: ``signal`` = ``mean(y^2)``, ``noise`` = ``mean((y - q)^2)``
    (``[N]``), the same per channel (``[N, C]``) and ``eltwise`` = mean of ``y^2 / (eps + (y - q)^2)`` (``[N]``)."""

    signal: np.ndarray
    noise: np.ndarray
    signal_per_channel: np.ndarray
    noise_per_channel: np.ndarray
    eltwise: np.ndarray

    def metric(self, noise_type: str, eps: float) -> float:
        """The layer's noise figure of ``noise_type`` (one of :data:`NOISE_TYPES`)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if noise_type == "sqnr":
                return float(np.nanmean(self.signal / (eps + self.noise)))
            if noise_type == "sqnr_per_channel":
                return float(np.nanmean(self.signal_per_channel / (eps + self.noise_per_channel)))
            if noise_type == "sqnr_sample_mean":
                return float(np.mean(self.signal) / (eps + np.mean(self.noise)))
            if noise_type == "sqnr_sample_per_channel":
                return float(np.nanmean(np.mean(self.signal_per_channel, axis=0)
                                        / (eps + np.mean(self.noise_per_channel, axis=0))))
            if noise_type == "sqnr_eltwise_mean":
                return float(np.nanmean(self.eltwise))
        raise ValueError(f"unknown noise type {noise_type!r}; valid types: {', '.join(NOISE_TYPES)}")


def measured_output(model: ov.Model, layer: str) -> str:
    """The op whose output 0 stands for ``layer``'s output: its bias ``Add`` if it has one, else the layer."""
    bias = find_bias_add(find_op(model, layer))
    return bias.add.get_friendly_name() if bias is not None else layer


def _energy(batch: np.ndarray) -> np.ndarray:
    return np.mean(np.square(batch.reshape(batch.shape[0], -1), dtype=np.float64), axis=1)


def _energy_per_channel(batch: np.ndarray) -> np.ndarray:
    flat = batch.reshape(batch.shape[0], batch.shape[1] if batch.ndim > 1 else 1, -1)
    return np.mean(np.square(flat, dtype=np.float64), axis=2)


def _mean(batch: np.ndarray) -> np.ndarray:
    return np.mean(batch.reshape(batch.shape[0], -1), axis=1, dtype=np.float64)


def _composite(fp: ov.Model, quantized: ov.Model, outputs: Sequence[str], eps: float) -> ov.Model:
    """One model computing ``fp`` and ``quantized`` on the same inputs, with a difference and an element-wise
    ratio per name of ``outputs`` (``<name>/qnoise_diff``, ``<name>/qnoise_ratio``) as extra results after
    ``fp``'s own."""
    fp, quantized = fp.clone(), quantized.clone()
    for op in quantized.get_ordered_ops():
        op.set_friendly_name(op.get_friendly_name() + QUANTIZED_SUFFIX)
    for fp_input, q_input in zip(fp.get_parameters(), quantized.get_parameters()):
        for target in q_input.output(0).get_target_inputs():
            target.replace_source_output(fp_input.output(0))
    fp_ops = ops_by_name(fp)
    q_ops = ops_by_name(quantized)
    extra = []
    for name in outputs:
        y, q = fp_ops[name].output(0), q_ops[name + QUANTIZED_SUFFIX].output(0)
        diff = ops.subtract(y, q)
        diff.set_friendly_name(f"{name}/qnoise_diff")
        squared = ops.multiply(diff, diff)
        ratio = ops.divide(ops.multiply(y, y), ops.add(squared, ops.constant(np.float32(eps))))
        ratio.set_friendly_name(f"{name}/qnoise_ratio")
        extra += [ops.result(diff), ops.result(ratio)]
    return ov.Model(list(fp.get_results()) + extra, list(fp.get_parameters()), fp.get_friendly_name())


def statistics_engine(engine: Engine) -> Engine:
    """An engine for the composite model's statistics pass: a plain ``IEEngine`` gets a twin without its
    metric (the composite's extra outputs would reach it); a custom engine is used as it is."""
    if type(engine) is IEEngine:
        return IEEngine(engine.config, engine.data_loader)
    return engine


def layer_noise(engine: Engine, fp_model: ov.Model, quantized_model: ov.Model, layers: Sequence[str],
                indices: Sequence[int], eps: float = 1e-15, batch_size: int = 1) -> Dict[str, LayerNoise]:
    """Per-sample noise energies of each of ``layers`` (op names present in both models), on data ``indices``.

    :param fp_model: the floating-point reference.
    :param quantized_model: the model with FakeQuantize ops, same op names otherwise.
    :returns: ``{layer: LayerNoise}``, measured at :func:`measured_output` of each layer.
    """
    measured = {layer: measured_output(quantized_model, layer) for layer in layers}
    names = sorted(set(measured.values()))
    composite = CompressedModel(_composite(fp_model, quantized_model, names, eps))
    layout: Dict[Any, Dict[str, Callable]] = {}
    for name in names:
        layout[name] = {"signal": _energy, "signal_per_channel": _energy_per_channel}
        layout[f"{name}/qnoise_diff"] = {"noise": _energy, "noise_per_channel": _energy_per_channel}
        layout[f"{name}/qnoise_ratio"] = {"eltwise": _mean}
    stats = collect_statistics(statistics_engine(engine), composite,
                               [StatisticsRequest(layout_specs(layout), list(indices), batch_size,
                                                  tag="QuantNoiseEstimator")])[0]

    def values(key: str, stat: str) -> np.ndarray:
        return np.concatenate([np.asarray(v).reshape(len(v), -1) if np.ndim(v) > 1 else np.atleast_1d(v)
                               for v in stats[key][stat]], axis=0)

    return {layer: LayerNoise(values(name, "signal"), values(f"{name}/qnoise_diff", "noise"),
                              values(name, "signal_per_channel"), values(f"{name}/qnoise_diff", "noise_per_channel"),
                              values(f"{name}/qnoise_ratio", "eltwise"))
            for layer, name in measured.items()}


def without_fake_quantize(model: ov.Model) -> ov.Model:
    """A clone of ``model`` with every FakeQuantize op removed (the floating-point reference POT used)."""
    clone = model.clone()
    for fq in fake_quantize_ops(clone):
        remove_fake_quantize(fq)
    return clone


def only_group_quantized(model: ov.Model, keep: QuantizerGroup, groups: Sequence[QuantizerGroup]) -> ov.Model:
    """A clone of ``model`` with every quantizer group but ``keep`` returned to floating point."""
    clone = model.clone()
    for group in groups:
        if group != keep:
            revert_group(clone, group)
    return clone


@COMPRESSION_ALGORITHMS.register("QuantNoiseEstimator")
class QuantNoiseEstimator(Algorithm):
    """Measures the quantization noise of each quantized layer of a quantized model; the model is returned
    unchanged.

    After ``run``, ``noise_data`` is ``{'noise_metric': [figure per layer], 'layer_name': [layer names]}`` (POT's
    result), in topological order; with ``results_dump_filename`` the same goes to a CSV file
    (``layer_name,noise_metric``).
    """

    def __init__(self, config: Any, engine: Engine) -> None:
        super().__init__(resolve_params("QuantNoiseEstimator", config), engine)
        #: ``{'noise_metric': [...], 'layer_name': [...]}`` of the last ``run``.
        self.noise_data: Dict[str, List[Any]] = {"noise_metric": [], "layer_name": []}

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Measure the noise of ``model``'s quantized layers (``model`` holds FakeQuantize ops); return it."""
        if model.is_cascade:
            raise ValueError(f"QuantNoiseEstimator measures one model; got the cascade {model.member_names}: "
                             "run it on each member as a CompressedModel of its own")
        quantized = model.get_model()
        if not fake_quantize_ops(quantized):
            raise ValueError(f"QuantNoiseEstimator needs a quantized model, but '{model.name}' has no FakeQuantize "
                             "op: run DefaultQuantization first (e.g. before it in the same pipeline)")
        config = self.config
        indices = calibration_indices(config, len(self.engine.data_loader))
        groups = quantizer_groups(quantized, load_hardware_config(config.target_device).quantize_agnostic)
        reference = without_fake_quantize(quantized)
        if config.mode == "full_fq_noise":
            layers = [layer for group in groups for layer in group.layers]
            noise = layer_noise(self.engine, reference, quantized, layers, indices, config.eps, config.stat_batch_size)
        else:
            noise = {}
            for group in groups:
                logger.info("Measuring the noise of %s quantized alone", ", ".join(group.layers))
                noise.update(layer_noise(self.engine, reference, only_group_quantized(quantized, group, groups),
                                         group.layers, indices, config.eps, config.stat_batch_size))
        self.noise_data = {"noise_metric": [noise[layer].metric(config.type, config.eps) for layer in noise],
                           "layer_name": list(noise)}
        for name, value in zip(self.noise_data["layer_name"], self.noise_data["noise_metric"]):
            logger.info("%s of %s: %.6g", config.type, name, value)
        if config.results_dump_filename:
            self._dump(config.results_dump_filename)
        return model

    def _dump(self, path: str) -> None:
        with atomic_output_files([path]) as (staged,):
            with open(staged, "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["layer_name", "noise_metric"])
                writer.writerows(zip(self.noise_data["layer_name"], self.noise_data["noise_metric"]))
        logger.info("Wrote the per-layer noise to %s", path)
