"""What FastBiasCorrection and BiasCorrection share.

Both correct the bias of each quantized layer (Convolution, GroupConvolution, ConvolutionBackpropData, MatMul
followed by a bias ``Add``) so that the per-channel mean of its output matches the floating-point model's.
They share: finding those layers (:func:`find_biased_layers`), the floating-point statistics they ask for
(:func:`mean_specs`), POT's rule deciding whether a shift is applied (:func:`apply_bias_shift`), f32
compilation of the small models they run, and their common ``run`` (:class:`BiasShiftAlgorithm`), which
collects the statistics on the floating-point reference of a quantized model (:func:`fp_reference`) when they
are run on their own.
"""
from __future__ import annotations

import copy
import functools
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Hashable, List, Optional

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import resolve_params
from pot_torch.algorithms.quantization.layer_revert import layer_biases
from pot_torch.engines.compile_race import compile_avoiding_stream_race
from pot_torch.graph.editor import fake_quantize_ops, ops_by_name, remove_fake_quantize
from pot_torch.graph.layer_patterns import (LAYERS_WITH_BIAS, activation_port, activation_source, constant_add_after,
                                            find_bias_add, has_quantized_weights, input_channel_axis, output_channel_axis)
from pot_torch.graph.node_key import output_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, collect_statistics
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Name of the per-batch input shape statistic (asked only where the shape is not static).
SHAPE_STAT = "shape"


def mean_stat_name(channel_axis: int) -> str:
    """Name of the per-channel mean statistic along ``channel_axis``."""
    return f"mean_per_channel_axis{channel_axis}"


@dataclass(frozen=True)
class BiasedLayer:
    """A layer with weights and a bias ``Add``, as the statistics and the corrections see it.

    :param name: the layer's friendly name.
    :param port: its activation (data) input.
    :param input_key: statistics key of the tensor on that input (the same before and after quantization).
    :param input_axis: channel axis of that input.
    :param output_axis: channel axis of the layer's output (and of its bias Add's output).
    :param bias_key: statistics key of the bias Add's output.
    """

    name: str
    port: int
    input_key: Hashable
    input_axis: int
    output_axis: int
    bias_key: Hashable


def _axis_fits(partial_shape: ov.PartialShape, axis: int) -> bool:
    """Whether ``axis`` is a channel axis other than the batch axis 0 of a tensor of static rank."""
    if partial_shape.rank.is_dynamic:
        return False
    rank = partial_shape.rank.get_length()
    return rank >= 2 and axis % rank != 0


def find_biased_layers(model: ov.Model, quantized_only: bool) -> List[BiasedLayer]:
    """The layers of ``model`` with constant weights and a per-channel bias ``Add``, in topological order.

    :param quantized_only: keep only layers whose weights go through a FakeQuantize.
    """
    layers, unknown_axes = [], []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in LAYERS_WITH_BIAS:
            continue
        port = activation_port(op)
        bias = find_bias_add(op) if port is not None else None
        if quantized_only and not has_quantized_weights(op):
            continue
        if bias is None:
            if port is not None and constant_add_after(op) is not None and \
                    op.get_output_partial_shape(0).rank.is_dynamic:
                unknown_axes.append(op.get_friendly_name())  # a bias whose layout cannot be told
            continue
        in_axis, out_axis = input_channel_axis(op, port), output_channel_axis(op)
        if not (_axis_fits(op.get_input_partial_shape(port), in_axis)
                and _axis_fits(op.get_output_partial_shape(0), out_axis)):
            unknown_axes.append(op.get_friendly_name())
            continue
        layers.append(BiasedLayer(op.get_friendly_name(), port, output_key(activation_source(op, port)),
                                  in_axis, out_axis, output_key(bias.add.output(0))))
    if unknown_axes:
        logger.warning("bias correction skips %d layers whose input or output rank is dynamic or whose channel "
                       "axis is the batch axis (reshape the model to a static rank to correct them): %s",
                       len(unknown_axes), ", ".join(unknown_axes))
    return layers


def batch_shape(batch_output: np.ndarray) -> np.ndarray:
    """The shape of a batch output, as a ``[1, rank]`` array (a statistic function)."""
    return np.asarray(np.shape(batch_output), dtype=np.int64)[None]


def mean_specs(model: ov.Model, layers: List[BiasedLayer], inplace: bool, side: str) -> List[StatisticSpec]:
    """Per-channel means over the data set of each layer's activation input (``side`` ``'input'``) or bias Add
    output (``'output'``).

    Where an input's shape is not static beyond the batch axis its shape is asked too (``SHAPE_STAT``, per batch).
    """
    if side not in ("input", "output"):
        raise ValueError(f"mean_specs: side must be 'input' or 'output', got {side!r}")
    specs = []
    ops = ops_by_name(model)
    for layer in layers:
        key, axis = (layer.input_key, layer.input_axis) if side == "input" else (layer.bias_key, layer.output_axis)
        specs.append(StatisticSpec(key, mean_stat_name(axis), make_reducer(
            "mean", per_channel=True, channel_axis=axis, inplace=inplace), "mean"))
        if side == "input" and static_input_shape(ops[layer.name], layer.port) is None:
            specs.append(StatisticSpec(key, SHAPE_STAT, batch_shape))
    return specs


def static_input_shape(layer: ov.Node, port: int) -> Optional[List[int]]:
    """The shape of input ``port`` of ``layer`` with batch 1, or ``None`` if other dimensions are dynamic."""
    shape = layer.get_input_partial_shape(port)
    if shape.rank.is_dynamic:
        return None
    dims = [None if dim.is_dynamic else dim.get_length() for dim in shape]
    if len(dims) > 1:
        dims[0] = 1
    return None if any(dim is None for dim in dims) else dims


def mean_of(statistics: Statistics, key: Hashable, axis: int) -> Optional[np.ndarray]:
    """The per-channel mean over all samples of the statistic collected for ``key``, or ``None``."""
    mean = statistics.get(key, {}).get(mean_stat_name(axis))
    return None if mean is None else np.asarray(mean, dtype=np.float32)


def shift_magnitude(bias: np.ndarray, shift: np.ndarray) -> float:
    """POT's magnitude of a bias shift: ``max |shift / bias|``, infinite when any bias value is 0."""
    if np.any(bias == 0):
        return float("inf")
    return float(np.max(np.abs(shift / bias)))


def apply_bias_shift(layer: ov.Node, shift: np.ndarray, threshold: float) -> Optional[np.ndarray]:
    """Add the ``[C]`` ``shift`` to the bias of ``layer`` if its magnitude is below ``threshold`` (POT's rule).

    :returns: the new ``[C]`` bias, or ``None`` when the shift was skipped.
    """
    bias = find_bias_add(layer)
    name = layer.get_friendly_name()
    if bias is None or shift.shape != (bias.channels,):
        logger.debug("%s skipped: the shift does not match its bias", name)
        return None
    current = bias.per_channel()
    magnitude = shift_magnitude(current, shift)
    if not magnitude < threshold:
        logger.debug("%s skipped by threshold: magnitude %g >= %g", name, magnitude, threshold)
        return None
    logger.debug("Setting bias for %s. Magnitude: %g", name, magnitude)
    new_bias = current + shift.astype(np.float32)
    bias.set_value(new_bias)
    return new_bias


@functools.lru_cache(maxsize=1)
def _core() -> ov.Core:
    return ov.Core()


def compile_f32(model: ov.Model) -> ov.CompiledModel:
    """Compile ``model`` for the CPU at f32 inference precision (the precision statistics use)."""
    return _core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def compile_f32_for_throughput(model: ov.Model) -> ov.CompiledModel:
    """:func:`compile_f32` for several asynchronous requests: several CPU streams, one where the CPU plugin's
    stream race could hit the model (:func:`~pot_torch.engines.compile_race.compile_avoiding_stream_race`)."""
    properties = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
    return compile_avoiding_stream_race(_core(), model, "CPU", properties)[0]


def fp_reference(model: CompressedModel) -> CompressedModel:
    """A copy of ``model`` with every FakeQuantize removed: the floating-point model it was quantized from."""
    reference = copy.deepcopy(model)
    for member in reference.models:
        for fq in fake_quantize_ops(member["model"]):
            remove_fake_quantize(fq)
    return reference


class BiasShiftAlgorithm(Algorithm):
    """Base of the bias corrections: parameters resolved by the registered name, and the common ``run``.

    ``statistics_requests`` must be given the floating-point model and ``run`` the quantized one with those
    statistics. Called as ``run(model)`` alone, the statistics are collected on ``model`` with its
    FakeQuantize ops removed. Subclasses implement ``_correct`` for one ``openvino.Model``.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Correct the biases of ``model`` (quantized) in place and return it."""
        if statistics is None:
            reference = fp_reference(model)
            statistics = collect_statistics(self.engine, reference, self.statistics_requests(reference))
        stats = statistics[0] if statistics else {}
        if model.biases_before_correction is None:  # what reverting a layer puts back (layer_revert)
            model.biases_before_correction = layer_biases(model)
        for member in model.models:
            self._correct(member["model"], stats)
        return model

    @abstractmethod
    def _correct(self, model: ov.Model, stats: Statistics) -> None:
        """Correct the biases of one ``openvino.Model`` given the floating-point statistics."""
