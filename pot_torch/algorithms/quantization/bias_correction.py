"""``BiasCorrection``: POT's full (layer-by-layer) bias correction, used when ``use_fast_bias`` is False (the
default for ``model_type: transformer``).

What it corrects, as POT and NNCF did: the shift of each layer's per-channel output mean caused by weight
quantization, including what the corrected layers before it pass on. It works on a copy of the quantized model
without the activation FakeQuantize ops (weights stay quantized) and compares with the floating-point model:

1. Statistics (floating-point model, POT's subset: 20% of the calibration subset, at least one sample and at
   most :data:`MAX_SAMPLES`): the per-channel mean of each layer's bias ``Add`` output, and the model inputs
   as fed (raw, per batch).
2. Layers are grouped by *level*: a layer's level is one more than the highest level among the layers it
   depends on. Layers of one level do not depend on each other, so they are corrected together.
3. Level by level, the segment of the model between the tensors cached so far (at first the model inputs) and
   the outputs of this level's layers is cut out, compiled at f32 and run over the cached tensors. It yields
   the layers' per-channel output means (the quantized means are those plus the current bias) and the tensors
   later segments read (the layers' own outputs are cut *before* their bias Add, so the corrected bias is
   applied by the next segment). Each bias is shifted by ``FP mean - quantized mean`` unless the shift is too
   large relative to it (:func:`~pot_torch.algorithms.quantization.bias_correction_base.shift_magnitude` not below
   ``threshold``, default 1000; a bias with a zero value is never changed).

So the whole model is run about once over the subset, one compilation per level, instead of once per layer. A
segment reads the biases of the layers before it as Parameters fed their current (corrected) values, so every
segment is cut out before the first one runs and the next one compiles on a second thread while one runs (the same
values bit for bit as compiling the biases in: an f32 Add is the same Add). A
segment is compiled for throughput (several CPU streams, one where the plugin's stream race could hit it) and its
samples run on that many asynchronous requests, each starting its next sample as soon as its outputs are copied: on
all-MiniLM-L6-v2 (24 levels, 60 samples) running them at once took the levels' CPU time from ~6.2 s to ~4.7 s, and
the pipelining BiasCorrection's wall time from 3.1 s to 2.75 s (session 9), with a byte-identical IR.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Hashable, List, Mapping, Optional, Set, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.params import calibration_indices
from pot_torch.algorithms.quantization.bias_correction_base import (BiasedLayer, BiasShiftAlgorithm, apply_bias_shift,
                                                                    compile_f32_for_throughput, find_biased_layers,
                                                                    mean_of, mean_specs)
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_ops, constant_source
from pot_torch.graph.editor import fake_quantize_ops, ops_by_name, remove_fake_quantize
from pot_torch.graph.layer_patterns import find_bias_add
from pot_torch.graph.node_key import output_key, split_node_key
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.aggregators import aggregate
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.statistics.padding import find_mask_input, masked_reduce_output, real_token_mask
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Name of the statistic holding a model input as fed, per batch.
RAW_STAT = "raw"
#: Share of the calibration subset BiasCorrection runs over (POT's).
SUBSET_SHARE = 0.2
#: Most samples BiasCorrection runs over (NNCF's default count: 20% of its 300). Between levels it keeps every
#: sample's inputs of the next layers, so its memory grows with the sample count; POT had no limit (20% of a
#: whole data set can be thousands). On the benchmarks' BERT-style encoder with 3,000 calibration items, 60
#: samples gave the same output cosine as 600 (0.99999) at 238 MB peak RSS instead of 720 MB.
MAX_SAMPLES = 60
#: The feed key of the padding mask a segment reads to take its means over real tokens.
_MASK_FEED = object()


@dataclass(frozen=True)
class _BiasFeed:
    """The feed key of a segment Parameter holding ``layer``'s bias as its bias Add reads it (``dtype``)."""

    layer: str
    dtype: np.dtype


def raw_value(batch_output: np.ndarray) -> np.ndarray:
    """The batch output itself (a statistic function keeping the model inputs as fed)."""
    return batch_output


@COMPRESSION_ALGORITHMS.register("BiasCorrection")
class BiasCorrection(BiasShiftAlgorithm):
    """Shift the bias of each quantized layer, layer by layer, so its output mean matches the FP model's.

    Parameters (POT's): ``threshold`` (1000.0), ``apply_for_all_nodes`` (False: only layers with quantized
    weights; True: every layer with a bias), ``stat_subset_size`` (of which 20% are used, at most 60 samples), ``stat_batch_size``,
    ``shuffle_data``, ``seed``, ``inplace_statistics``; ``padding_aware_statistics`` takes the floating-point and
    quantized means over real tokens only (``statistics.padding``).

    ``statistics_requests`` must be given the floating-point model and ``run`` the quantized one (see
    :class:`~pot_torch.algorithms.quantization.bias_correction_base.BiasShiftAlgorithm`).
    """

    def subset_indices(self) -> List[int]:
        """The data set indices BiasCorrection runs over: 20% of the calibration subset, at least one and at
        most :data:`MAX_SAMPLES`."""
        size = len(self.engine.data_loader)
        calibration = self.config.stat_subset_size
        calibration = size if calibration is None else min(int(calibration), size)
        count = min(max(int(calibration * SUBSET_SHARE), 1), MAX_SAMPLES)
        return list(calibration_indices(self.config, size, count))

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """Per-channel means of every biased layer's output and the raw model inputs (FP model)."""
        specs: List[StatisticSpec] = []
        for member in model.models:
            ov_model = member["model"]
            layers = find_biased_layers(ov_model, quantized_only=False)
            if not layers:
                continue
            specs += mean_specs(ov_model, layers, self.config.inplace_statistics, "output")
            specs += [StatisticSpec(output_key(parameter.output(0)), RAW_STAT, raw_value)
                      for parameter in ov_model.get_parameters()]
        if not specs:
            return []
        return [StatisticsRequest(specs, self.subset_indices(), self.config.stat_batch_size, tag=self.name,
                                  real_tokens=bool(self.config.padding_aware_statistics))]

    def _correct(self, model: ov.Model, stats: Statistics) -> None:
        work = model.clone()
        for fq in fake_quantize_ops(work):
            if constant_source(fq.input_value(0)) is None:
                remove_fake_quantize(fq)
        layers = [layer for layer in find_biased_layers(work, not self.config.apply_for_all_nodes)
                  if mean_of(stats, layer.bias_key, layer.output_axis) is not None]
        if not layers:
            return
        inputs = _model_inputs(work, stats)
        if inputs is None:
            logger.warning("BiasCorrection skipped: the model inputs were not collected")
            return
        mask = find_mask_input(work) if self.config.padding_aware_statistics else None  # as the FP means were taken
        runner = SegmentRunner(work, [layer.name for layer in layers], inputs, mask)
        by_name, work_ops = ops_by_name(model), ops_by_name(work)
        threshold = float(self.config.threshold)

        def correct(level_layers: List[BiasedLayer], means: Dict[str, np.ndarray]) -> None:
            for layer in level_layers:
                bias = find_bias_add(work_ops[layer.name])
                quantized_mean = means[layer.name] + bias.per_channel()
                shift = mean_of(stats, layer.bias_key, layer.output_axis) - quantized_mean
                new_bias = apply_bias_shift(work_ops[layer.name], shift.astype(np.float32), threshold)
                target = find_bias_add(by_name[layer.name])
                if new_bias is not None and target is not None:
                    target.set_value(new_bias)

        runner.run(_by_level(layers, runner.levels), correct)


def _by_level(layers: List[BiasedLayer], levels: Mapping[str, int]) -> List[List[BiasedLayer]]:
    grouped: Dict[int, List[BiasedLayer]] = {}
    for layer in layers:
        grouped.setdefault(levels[layer.name], []).append(layer)
    return [grouped[level] for level in sorted(grouped)]


def _model_inputs(model: ov.Model, stats: Statistics) -> Optional[Dict[Hashable, List[np.ndarray]]]:
    """The model inputs as collected, per batch, by statistics key (``None`` if one is missing)."""
    inputs = {}
    for parameter in model.get_parameters():
        key = output_key(parameter.output(0))
        batches = stats.get(key, {}).get(RAW_STAT)
        if not batches:
            return None
        inputs[key] = [np.asarray(batch) for batch in batches]
    counts = {len(batches) for batches in inputs.values()}
    if len(counts) > 1:
        raise ValueError(f"BiasCorrection: the model inputs were collected with different numbers of batches "
                         f"{ {key: len(batches) for key, batches in inputs.items()} }; collect all inputs over the "
                         f"same samples")
    return inputs


@dataclass
class _Segment:
    """One level's segment: its ``model``, what each of its Parameters is fed (``feeds``: a cache key, the padding
    mask or a layer's bias), the cache keys kept for later segments (``frontier``) and those it computes
    (``fresh``, its outputs after the layers' means)."""

    layers: List[BiasedLayer]
    model: ov.Model
    feeds: List[Any]
    frontier: List[Hashable]
    fresh: List[Hashable]


class SegmentRunner:
    """Runs a model segment by segment over cached tensors, so each layer is measured after the layers before it
    were corrected.

    A segment reads the biases of the layers corrected before it as Parameters, so every segment is cut out
    before the first one runs and the next one compiles while one runs.

    :param model: the model to run (its layers' biases are read when each segment runs).
    :param layer_names: the layers to measure, by friendly name.
    :param inputs: the model inputs per batch, by statistics key of the Parameter's output.
    :param mask: the model's padding-mask input: the layers' means are then taken over its real tokens
        (``padding.masked_reduce_output``), as padding-aware statistics took the floating-point ones.
    """

    def __init__(self, model: ov.Model, layer_names: List[str], inputs: Dict[Hashable, List[np.ndarray]],
                 mask: Optional[ov.Node] = None) -> None:
        self._model = model
        ordered = model.get_ordered_ops()
        self._ops = {op.get_friendly_name(): op for op in ordered}
        self._constant = constant_ops(ordered)
        self.levels = _levels(ordered, set(layer_names), self._constant)
        self._needed = self._ancestors(layer_names, set())
        #: each layer's bias, by the name of its Add
        self._bias_of = {bias.add.get_friendly_name(): (name, bias) for name in layer_names
                         for bias in [find_bias_add(self._ops[name])] if bias is not None}
        self._cache = inputs
        self._mask = mask
        self._mask_batches = None if mask is None else inputs[output_key(mask.output(0))]

    def _ancestors(self, names: List[str], stop: Set[str]) -> Set[str]:
        """``names`` and the non-constant ops they depend on, stopping at ``stop``."""
        found: Set[str] = set()
        queue = [name for name in names if name not in stop]
        while queue:
            name = queue.pop()
            if name in found:
                continue
            found.add(name)
            for value in self._ops[name].input_values():
                source = value.get_node().get_friendly_name()
                if source not in self._constant and source not in stop and source not in found:
                    queue.append(source)
        return found

    def _frontier(self, computed: Set[str]) -> List[ov.Output]:
        """Outputs of ``computed`` ops read by needed ops not computed yet, in topological order."""
        outputs = []
        for name, op in self._ops.items():
            if name not in computed:
                continue
            for output in op.outputs():
                if any(target.get_node().get_friendly_name() in self._needed
                       and target.get_node().get_friendly_name() not in computed
                       for target in output.get_target_inputs()):
                    outputs.append(output)
        return outputs

    def _segments(self, levels: List[List[BiasedLayer]]) -> List[_Segment]:
        """Every level's segment, cut before any runs (the cached tensors each reads are known from the graph)."""
        computed = {p.get_friendly_name() for p in self._model.get_parameters()}
        cached = list(self._cache)
        segments = []
        for layers in levels:
            segment = self._ancestors([layer.name for layer in layers], computed)
            computed = computed | segment
            frontier = [output_key(output) for output in self._frontier(computed)]
            fresh = [key for key in frontier if key not in cached]
            model, feeds = self._segment_model(segment, layers, fresh, cached)
            segments.append(_Segment(layers, model, feeds, frontier, fresh))
            cached = [key for key in frontier if key in cached] + fresh
        return segments

    def run(self, levels: List[List[BiasedLayer]],
            correct: Callable[[List[BiasedLayer], Dict[str, np.ndarray]], None]) -> None:
        """Run the segment of each level in turn and hand its layers' ``[C]`` output means to ``correct`` (which may
        change their biases) before the next one runs; each segment compiles while the one before it runs."""
        segments = self._segments(levels)
        with ThreadPoolExecutor(max_workers=1) as compiler:
            compiling = compiler.submit(compile_f32_for_throughput, segments[0].model) if segments else None
            for index, segment in enumerate(segments):
                compiled = compiling.result()
                if index + 1 < len(segments):
                    compiling = compiler.submit(compile_f32_for_throughput, segments[index + 1].model)
                correct(segment.layers, self._run(segment, compiled))

    def _run(self, segment: _Segment, compiled: ov.CompiledModel) -> Dict[str, np.ndarray]:
        """Run ``segment`` over the cached tensors; keep the ones later segments read; return its layers' means."""
        batches = len(next(iter(self._cache.values())))
        biases = {feed: find_bias_add(self._ops[feed.layer]).value().astype(feed.dtype) for feed in segment.feeds
                  if isinstance(feed, _BiasFeed)}
        values = _infer(compiled, [{index: np.ascontiguousarray(self._feed(key, batch, biases))
                                    for index, key in enumerate(segment.feeds)} for batch in range(batches)])
        layers = len(segment.layers)
        new_cache = {key: self._cache[key] for key in segment.frontier if key in self._cache}
        new_cache.update({key: values[layers + index] for index, key in enumerate(segment.fresh)})
        self._cache = new_cache
        return {layer.name: np.asarray(aggregate("mean", values[index]), dtype=np.float32)
                for index, layer in enumerate(segment.layers)}

    def _feed(self, key: Any, batch: int, biases: Dict[Any, np.ndarray]) -> np.ndarray:
        if key is _MASK_FEED:
            return self._mask_batches[batch]  # type: ignore[index]
        if key in biases:
            return biases[key]
        return self._cache[key][batch]

    def _segment_model(self, segment: Set[str], layers: List[BiasedLayer], fresh: List[Hashable],
                       cached: List[Hashable]):
        """The segment as a model: Parameters for the ``cached`` tensors it reads and for the biases of the layers
        before it; results: the layers' channel means, then the ``fresh`` tensors. Returns it and what each of its
        Parameters is fed, in order."""
        clone = self._model.clone()
        clone_ops = ops_by_name(clone)
        parameters, feeds = [], []
        for key in cached:
            name, port = split_node_key(key)
            output = clone_ops[name].output(port)
            targets = [t for t in output.get_target_inputs() if t.get_node().get_friendly_name() in segment]
            if not targets:
                continue
            parameter = ops.parameter(output.get_partial_shape(), output.get_element_type(),
                                      name=f"{name}/bc_input_{port}")
            for target in targets:
                target.replace_source_output(parameter.output(0))
            parameters.append(parameter)
            feeds.append(key)
        for add_name in [name for name in self._ops if name in segment and name in self._bias_of]:
            layer, bias = self._bias_of[add_name]
            element_type = clone_ops[add_name].get_input_element_type(bias.port)
            parameter = ops.parameter(list(bias.shape), element_type, name=f"{add_name}/bc_bias")
            clone_ops[add_name].input(bias.port).replace_source_output(parameter.output(0))
            parameters.append(parameter)
            feeds.append(_BiasFeed(layer, np.dtype(element_type.to_dtype())))
        if self._mask is not None:
            mask = ops.parameter(self._mask.get_output_partial_shape(0), self._mask.get_element_type(),
                                 name=f"{self._mask.get_friendly_name()}/bc_real_tokens")
            parameters.append(mask)
            feeds.append(_MASK_FEED)
        results = []
        for layer in layers:
            reducer = make_reducer("mean", per_channel=True, channel_axis=layer.output_axis, inplace=True)
            output, name = clone_ops[layer.name].output(0), f"{layer.name}/bc_mean"
            real = None if self._mask is None else real_token_mask(output, parameters[-1].output(0))
            if real is None:
                results.append(ops.result(reducer.graph_reduce(output, name=name)))
            else:
                axes = reducer.reduction_axes(output.get_partial_shape().rank.get_length())
                results.append(ops.result(masked_reduce_output(output, real, "mean", axes, name)))
        for key in fresh:
            name, port = split_node_key(key)
            results.append(ops.result(clone_ops[name].output(port)))
        return ov.Model(results, parameters, "bias_correction_segment"), feeds


def _infer(compiled: ov.CompiledModel, feeds: List[Dict[int, np.ndarray]]) -> List[List[np.ndarray]]:
    """Per output of ``compiled`` (compiled for throughput), its value for each feed, in feed order, run on as many
    asynchronous requests as the compiled model wants; a request starts its next feed as soon as its outputs are
    copied, while the others run."""
    count = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    requests = [compiled.create_infer_request() for _ in range(min(count, len(feeds)))]
    per_feed: List[List[np.ndarray]] = [[] for _ in feeds]
    running: Deque[Tuple[ov.InferRequest, int]] = deque()

    def finish() -> ov.InferRequest:
        request, index = running.popleft()
        request.wait()
        per_feed[index] = [request.get_tensor(output).data.copy() for output in compiled.outputs]
        return request

    for index, feed in enumerate(feeds):
        request = requests[index] if index < len(requests) else finish()
        request.start_async(feed, share_inputs=True)  # the cached arrays are not changed while it runs
        running.append((request, index))
    while running:
        finish()
    return [[values[output] for values in per_feed] for output in range(len(compiled.outputs))]


def _levels(ordered: List[ov.Node], layers: Set[str], constant: Set[str]) -> Dict[str, int]:
    """Level of each layer: 1 + the highest level among the layers it depends on (1 with none)."""
    depth: Dict[str, int] = {}
    levels: Dict[str, int] = {}
    for op in ordered:
        name = op.get_friendly_name()
        if name in constant:
            continue
        below = max((depth.get(v.get_node().get_friendly_name(), 0) for v in op.input_values()), default=0)
        if name in layers:
            levels[name] = below + 1
            below = levels[name]
        depth[name] = below
    return levels
