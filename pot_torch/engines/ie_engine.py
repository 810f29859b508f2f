"""``IEEngine``: POT's inference engine on the current OpenVINO runtime.

Runs a ``CompressedModel`` over a data set with ``openvino.AsyncInferQueue`` (or one synchronous request),
computing metrics and collecting activation statistics on any op output, as POT 2023.3's ``IEEngine`` did.
"""
from __future__ import annotations

import multiprocessing
from collections import OrderedDict
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import openvino as ov
from tqdm import tqdm

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.engine import Engine
from pot_torch.api.metric import Metric, average_values, per_sample_values
from pot_torch.engines.data_items import (Annotations, DataItemError, annotations_valid, has_own_sample_ids,
                                          indexed_batches, parse_batch, sorted_records)
from pot_torch.engines.compile_race import compile_avoiding_stream_race, constant_compute_layers
from pot_torch.engines.input_feeding import fill_inputs
from pot_torch.engines.stats_run import BatchStats, Run, StatSource
from pot_torch.engines.utils import append_stats, output_names, process_accumulated_stats
from pot_torch.engines.utils import (add_tensor_names, align_stat_names_with_results,  # noqa: F401  (POT's
                                     cast_friendly_names, collect_model_outputs, convert_output_key,  # names
                                     get_clean_name, process_raw_output, restore_original_node_names)  # here)
from pot_torch.graph.cpu_rewrites import cpu_safe_copy
from pot_torch.graph.model_io import save_model  # noqa: F401  (POT's ie_engine imported it)
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.structure import graph_structure
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.statistics.stats_outputs import StatsOutputs, add_stats_outputs, stat_kind
from pot_torch.utils.logger import get_logger, progress_bar_enabled
from pot_torch.utils.utils import create_tmp_dir  # noqa: F401  (POT's ie_engine imported it)

logger = get_logger(__name__)

#: re-exported: tests, benchmarks and scripts import them from here
__all__ = ["IEEngine", "compile_avoiding_stream_race", "constant_compute_layers"]

#: How many compiled models (one per statistics layout and precision) an engine keeps per ``set_model``.
_COMPILED_CACHE_SIZE = 4


class IEEngine(Engine):
    """Inference on OpenVINO: metrics, per-sample metrics and statistics on any op output.

    Config keys: ``device`` (default ``'CPU'``), ``stat_requests_number`` / ``eval_requests_number``
    (inference requests run in parallel when collecting statistics / evaluating; unset or 0 = the device's
    optimal number, 1 = synchronous), ``batch_dim`` (default 0), ``inference_precision`` (evaluation
    precision, ``None`` = device default, bf16 on CPUs that have it) and ``stat_inference_precision``
    (precision whenever statistics are collected, default ``'f32'``). Asynchronous runs compile for throughput;
    a model whose CPU runtime graph computes constants is compiled with one stream instead (a CPU plugin race,
    docs/cpu-plugin-bugs.md).

    Subclasses may override ``postprocess_output``, ``_process_batch`` and ``_fill_input`` as with POT.
    """

    def __init__(self, config: Any, data_loader: Optional[DataLoader] = None,
                 metric: Optional[Metric] = None) -> None:
        super().__init__(config if config is not None else {}, data_loader, metric)
        self._ie = ov.Core()
        self._device = self.config.get("device", "CPU") or "CPU"
        self._stat_requests_number = self.config.get("stat_requests_number", None)
        self._eval_requests_number = self.config.get("eval_requests_number", None)
        self._nx_model: Optional[CompressedModel] = None
        self._model: Optional[ov.Model] = None
        self._output_layers: List[str] = []
        self._compiled: "OrderedDict[Hashable, Tuple[ov.CompiledModel, Optional[StatsOutputs]]]" = OrderedDict()
        self._accumulated_layer_stats: Dict[Hashable, Dict[str, list]] = {}
        self._per_sample_metrics: List[Dict[str, Any]] = []
        #: hashes of (model structure, compile properties) found to need one CPU stream
        self._one_stream: Set[int] = set()

    # ----------------------------------------------------------------------------------------------- model
    def set_model(self, model: CompressedModel) -> None:
        """Use ``model`` (a single-model ``CompressedModel``) for the next ``predict`` calls.

        The model is compiled lazily by ``predict`` and never modified: statistics outputs go on a clone, and on the
        CPU a model with ops the plugin computes wrongly once quantized runs as a fixed copy, with a warning
        (``graph.cpu_rewrites.cpu_safe_copy``).

        :raises ValueError: ``model`` is a cascade; run cascades with an ``IEEngine`` subclass that overrides
            ``set_model`` and ``predict`` to run each stage.
        """
        if not isinstance(model, CompressedModel):
            raise TypeError(f"IEEngine.set_model expects a pot_torch.CompressedModel (from load_model or "
                            f"CompressedModel(ov_model)), got {type(model).__name__}")
        if model.is_cascade:
            raise ValueError(
                f"IEEngine cannot run the cascade {model.member_names}: as in POT, cascade models are not "
                "supported by IEEngine; subclass IEEngine and override set_model and predict to run the stages")
        self._nx_model = model
        self._model = self._set_model(model)[0]["model"]
        if "CPU" in self._device.upper():  # a quantized model from elsewhere may hit a CPU plugin bug: run a copy
            self._model = cpu_safe_copy(self._model)
        self._output_layers = output_names(self._model.outputs)
        self._compiled.clear()

    def _set_model(self, model: CompressedModel) -> List[Dict[str, Any]]:
        """The ``openvino.Model`` of each member: ``[{'name': str, 'model': openvino.Model}]`` (POT's shape)."""
        return [{"name": member["name"], "model": member["model"]} for member in model.models]

    # --------------------------------------------------------------------------------------------- predict
    def predict(self, stats_layout: Optional[Mapping[Hashable, Mapping[str, Any]]] = None, sampler: Any = None,
                stat_aliases: Any = None, metric_per_sample: bool = False,
                print_progress: bool = False) -> Tuple[Any, Optional[Dict[Hashable, Dict[str, list]]]]:
        """Run the model over ``sampler`` (default: the whole data set); return ``(metrics, stats)``.

        :param stats_layout: ``{node_key: {stat_name: fn}}``; ``node_key`` is an op friendly name (output 0)
            or ``(friendly_name, output_index)``. ``fn`` gets the node's batch output; an in-graph reducer
            (``inplace = True`` with ``graph_reduce``) is computed by OpenVINO and its output is appended.
        :param sampler: a sampler yielding batches of data items (``BatchSampler``).
        :param stat_aliases: accepted for POT compatibility; node keys are used as given.
        :param metric_per_sample: also return per-sample metric values.
        :param print_progress: show a progress bar.
        :returns: ``(metrics, stats)``: ``metrics`` is ``None`` without a metric, else ``{name: value}``, or
            with ``metric_per_sample`` ``(sorted [{'sample_id', 'metric_name', 'result'}], {name: value})``;
            ``stats`` is ``{node_key: {stat_name: [value per batch, data set order]}}`` or ``None``. A
            statistic whose ``fn`` was marked with ``pot_torch.statistics.online.stream_into(fn, aggregator)``
            is aggregated as batches arrive and its list holds one value, the aggregate as one row.
        """
        if self._model is None:
            raise ValueError("IEEngine.predict was called before set_model; call engine.set_model(model) first")
        if sampler is None:
            if self.data_loader is None:
                raise ValueError("IEEngine has no data_loader: pass one to IEEngine(config, data_loader, metric) "
                                 "or give predict a sampler")
            sampler = BatchSampler(self.data_loader)
        stats_layout = stats_layout or None
        try:
            (logger.info if print_progress else logger.debug)("Start inference of %d images", len(sampler))
            with tqdm(total=len(sampler), disable=not (print_progress or progress_bar_enabled()),
                      desc="Inference", unit="sample") as progress:
                run = self._run(stats_layout, sampler, metric_per_sample, progress)
            return self._results(run, stats_layout, metric_per_sample)
        finally:
            self._reset()

    def _run(self, stats_layout: Optional[Mapping], sampler: Any, metric_per_sample: bool, progress: tqdm) -> Run:
        """Run every batch of ``sampler`` through the model compiled for ``stats_layout``: statistics go to the
        accumulated lists or the run's online aggregates, outputs to the metric (``_consume``)."""
        requests = self._get_requests_number(stats_layout)
        run = self._prepare_run(stats_layout, metric_per_sample, asynchronous=requests != 1)
        if requests == 1:
            self._process_dataset(run, sampler, progress)
        else:
            self._process_dataset_async(run, sampler, progress, requests)
        run.finish()
        return run

    def _results(self, run: Run, stats_layout: Optional[Mapping], metric_per_sample: bool
                 ) -> Tuple[Any, Optional[Dict[Hashable, Dict[str, list]]]]:
        """``(metrics, stats)`` of a finished ``run``, as ``predict`` returns them."""
        run.store_online_results(self._accumulated_layer_stats)
        stats = process_accumulated_stats(self._accumulated_layer_stats) if stats_layout else None
        metrics = None
        if self._metric is not None:
            metrics = average_values(self._metric)
            if metric_per_sample:
                metrics = (sorted_records(self._per_sample_metrics), metrics)
        return metrics, stats

    @staticmethod
    def postprocess_output(outputs: Dict[str, np.ndarray], _metadata: List[Any]) -> List[np.ndarray]:
        """Turn the model's outputs into what ``metric.update`` takes (default: the list of output arrays).

        :param outputs: ``{output name: batched array}`` for the model's own outputs, in output order.
        :param _metadata: the items' metadata (``{}`` per item when they have none).
        """
        return list(outputs.values())

    def _collect_statistics(self, outputs: Mapping[Any, Any], stats_layout: Mapping[Hashable, Mapping[str, Any]],
                            annotations: Optional[Annotations] = None) -> None:
        """Append statistics of raw inference ``outputs`` (POT's helper for engines that infer themselves).

        Values are ordered by the first annotation's id (0 without annotations); ``predict`` overrides that
        run their own inference turn them into lists with ``process_accumulated_stats``.
        """
        order = annotations[0][0] if annotations and annotations[0][0] else 0
        append_stats(self._accumulated_layer_stats, stats_layout, outputs, order)

    def _reset(self) -> None:
        """Forget the metric's state, per-sample metrics and collected statistics."""
        if self._metric is not None:
            self._metric.reset()
        self._per_sample_metrics = []
        self._accumulated_layer_stats = {}

    # ------------------------------------------------------------------------------------------ compiling
    def _prepare_run(self, stats_layout: Optional[Mapping], per_sample: bool, asynchronous: bool = True) -> Run:
        """Compile (or reuse) the model for ``stats_layout`` and empty the statistics lists it fills."""
        slots = [(node_key, stat_name, fn, stat_kind(fn))
                 for node_key, stats in (stats_layout or {}).items() for stat_name, fn in stats.items()]
        compiled, plan = self._compile(stats_layout, slots, asynchronous)
        sources = []
        for node_key, stat_name, fn, kind in slots:
            self._accumulated_layer_stats.setdefault(node_key, {})[stat_name] = []
            output, piece = plan.source(node_key, kind), plan.piece(node_key, kind)  # type: ignore[union-attr]
            sources.append(StatSource(node_key, stat_name, output, kind is not None, fn, piece))
        need_outputs = self._metric is not None or type(self).postprocess_output is not IEEngine.postprocess_output
        return Run(compiled, sources, len(self._model.outputs), need_outputs, per_sample,  # type: ignore[union-attr]
                   plan.stack if plan is not None else None)

    def _compile(self, stats_layout: Optional[Mapping], slots: Sequence[Tuple[Hashable, str, Any, Hashable]],
                 asynchronous: bool) -> Tuple[ov.CompiledModel, Optional[StatsOutputs]]:
        """The compiled model for ``stats_layout``, from the cache when the same outputs were compiled before.

        ``slots`` are the layout's ``(node_key, stat_name, fn, stat_kind(fn))``; ``asynchronous`` compiles for
        throughput (several requests) instead of one request's latency.
        """
        if stats_layout:
            precision = self.config.get("stat_inference_precision", "f32")
        else:
            precision = self.config.get("inference_precision", None)
        signature = tuple(sorted({(node_key, kind) for node_key, _, _, kind in slots}, key=repr)) or None
        key = (signature, precision, asynchronous)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        plan = add_stats_outputs(self._model, stats_layout, stack=True) if stats_layout else None  # type: ignore
        properties: Dict[str, Any] = {}
        if asynchronous:
            properties["PERFORMANCE_HINT"] = "THROUGHPUT"
        if precision:
            properties["INFERENCE_PRECISION_HINT"] = precision
        model = plan.model if plan is not None else self._model
        logger.debug("compiling '%s' for %s with %s", model.get_friendly_name(), self._device, properties)
        if asynchronous:
            compiled = self._compile_for_throughput(model, properties)
        else:
            compiled = self._ie.compile_model(model, self._device, properties)
        self._compiled[key] = (compiled, plan)
        while len(self._compiled) > _COMPILED_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled, plan

    def _compile_for_throughput(self, model: ov.Model, properties: Dict[str, Any]) -> ov.CompiledModel:
        """``model`` compiled with ``properties``, with one stream when the CPU plugin's stream race can hit it.

        The CPU plugin computes the constant subgraphs it keeps in its runtime graph (such as the ``Convert ->
        Multiply`` weight decompression of ``compress_model_weights`` before a pointwise convolution with float
        inputs) once per stream, in parallel, and some compilations with two or more streams come out with
        wrong weights; it also computes some dense chains it fuses into one snippets ``Subgraph`` wrongly with
        two streams. Every inference of such a compiled model is then wrong (docs/cpu-plugin-bugs.md). A
        model found to have such layers is compiled again with one stream; the engine remembers the structure
        of the model it was given (``set_model``; those layers are its own, not the statistics outputs'), so
        that evaluating it again (``pipeline.evaluate`` calls ``set_model`` each time) or collecting other
        statistics on it compiles only once.
        """
        if self._device != "CPU":  # the race is the CPU plugin's
            return self._ie.compile_model(model, self._device, properties)
        structure = hash((graph_structure(self._model), tuple(sorted(properties.items()))))
        if structure in self._one_stream:
            return self._ie.compile_model(model, self._device, {**properties, "NUM_STREAMS": 1})
        compiled, forced_one_stream = compile_avoiding_stream_race(self._ie, model, self._device, properties)
        if forced_one_stream:
            self._one_stream.add(structure)
        return compiled

    def release_statistics_models(self) -> None:
        """Drop the compiled models built for statistics layouts; the plain inference ones stay cached.

        Each holds its own copy of the weights, so keeping one while an algorithm edits and compiles the model
        adds about the model's size to the peak memory. ``collect_statistics`` calls this when its passes are
        done; a later ``predict`` with a statistics layout compiles again.
        """
        for key in [key for key, (_, plan) in self._compiled.items() if plan is not None]:
            del self._compiled[key]

    def _get_requests_number(self, stats_layout: Optional[Mapping]) -> int:
        """Requests to run in parallel (0 = the device's optimal number, 1 = synchronous inference)."""
        requested = self._stat_requests_number if stats_layout else self._eval_requests_number
        if not requested:
            return 0
        cpus = multiprocessing.cpu_count()
        clipped = int(np.clip(int(requested), 1, cpus))
        if clipped != requested:
            logger.warning("Number of requests %s is out of range [1, %d]. Will be used %d.", requested, cpus, clipped)
        return clipped

    # ----------------------------------------------------------------------------------- batch preparation
    @staticmethod
    def _process_batch(batch: Sequence[Any]) -> Tuple[Annotations, List[Any], List[Any]]:
        """Split a batch of data items into ``(annotations [(id, annotation)], data, metadata)``."""
        return parse_batch(batch)

    def _fill_input(self, model: Any, image_batch: List[Any]) -> Dict[Any, np.ndarray]:
        """Return the inputs for ``model`` (a compiled model) from the data of a batch: ``{input: array}``."""
        return fill_inputs(model.inputs, image_batch, int(self.config.get("batch_dim", 0)))

    def _prepare_batch(self, run: Run, indices: List[int], batch: Sequence[Any]
                       ) -> Tuple[Dict[Any, np.ndarray], Tuple[List[int], Annotations, List[Any]]]:
        """The input feed of a batch and what consuming its results needs; errors name the data set indices."""
        try:
            annotations, data, metadata = self._process_batch(batch)
            feed = self._fill_input(run.compiled, data)
        except DataItemError as error:
            where = f"data set item {indices[0]}" if len(indices) == 1 else f"batch of data set items {indices}"
            raise type(error)(f"{where}: {error}") from error
        # OpenVINO shares only C-contiguous inputs; it copies a strided one (a crop, an expand_dims view) into a
        # temporary that an asynchronous request may read after it was freed: wrong, run-dependent outputs.
        # (np.require, not np.ascontiguousarray, which turns a scalar input into shape [1].)
        feed = {key: np.require(value, requirements="C") if isinstance(value, np.ndarray) else value
                for key, value in feed.items()}
        if annotations and not has_own_sample_ids(batch) and len(annotations) == len(indices):
            annotations = [(index, annotation) for index, (_, annotation) in zip(indices, annotations)]
        return feed, (indices, annotations, metadata)

    # ------------------------------------------------------------------------------------------ inference
    def _read_request(self, run: Run, request: ov.InferRequest,
                      samples: int) -> Tuple[Optional[List[np.ndarray]], BatchStats]:
        """Copy what ``run`` needs from a finished request of ``samples`` samples: model outputs and statistic
        values (a reducer takes an output whose axis 0 is not the batch as one value, ``per_batch_value``)."""
        outputs = None
        if run.need_outputs:
            outputs = [request.get_output_tensor(i).data.copy() for i in range(run.model_outputs)]
        return outputs, run.read_stats(request, samples)

    def _consume(self, run: Run, context: Tuple[List[int], Annotations, List[Any]],
                 record: Tuple[Optional[List[np.ndarray]], BatchStats]) -> None:
        """Record a batch's statistics and update the metric, in sample order."""
        indices, annotations, metadata = context
        outputs, values = record
        run.record_stats(self._accumulated_layer_stats, indices[0] if indices else 0, values)
        if outputs is None:
            return
        logits = self.postprocess_output(dict(zip(self._output_layers, outputs)), metadata)
        if self._metric is not None and annotations_valid(annotations):
            self._update_metrics(logits, annotations, run.per_sample)

    def _update_metrics(self, output: Any, annotations: Annotations, need_metrics_per_sample: bool = False) -> None:
        """Update the metric with a batch; record per-sample values ``metric.value`` when asked."""
        self._metric.update(output, [annotation for _, annotation in annotations])  # type: ignore[union-attr]
        if need_metrics_per_sample:
            per_sample = per_sample_values(self._metric, len(annotations))  # type: ignore[arg-type]
            for metric_name, values in per_sample.items():
                for position, (sample_id, _) in enumerate(annotations):
                    self._per_sample_metrics.append(
                        {"sample_id": sample_id, "metric_name": metric_name, "result": values[position]})

    def _fed_samples(self, feed: Mapping[Any, Any], items: int) -> int:
        """The number of samples fed: the size of the first input's batch axis (an item may hold several
        samples, e.g. ``[8, C, H, W]``), else the number of data ``items``."""
        batch_dim = int(self.config.get("batch_dim", 0))
        first = np.shape(next(iter(feed.values()), ()))
        return int(first[batch_dim]) if len(first) > batch_dim else items

    def _process_dataset(self, run: Run, sampler: Any, progress: tqdm) -> None:
        """Synchronous inference with one request."""
        request = run.compiled.create_infer_request()
        for indices, batch in indexed_batches(sampler):
            feed, context = self._prepare_batch(run, indices, batch)
            request.infer(feed, share_inputs=True, share_outputs=True)  # outputs are read as views below
            self._consume(run, context, self._read_request(run, request, self._fed_samples(feed, len(batch))))
            progress.update(len(batch))

    def _process_dataset_async(self, run: Run, sampler: Any, progress: tqdm, requests: int) -> None:
        """Asynchronous inference with ``requests`` requests (0 = optimal); results consumed in sample order.

        Finished requests are read on this thread just before they are reused (no Python callback runs on
        OpenVINO's threads), and batches that finish early wait until the ones before them are consumed.
        """
        queue = ov.AsyncInferQueue(run.compiled, requests)
        logger.debug("async inference with %d requests", len(queue))
        running: Dict[int, Tuple[int, Any, int, Any]] = {}  # request id -> (batch id, context, size, feed)
        finished: Dict[int, Tuple[Any, int, Any]] = {}  # batch id -> (context, size, record)
        next_id = 0

        def collect(request_id: int) -> None:
            batch_id, context, size, feed = running.pop(request_id)
            finished[batch_id] = (context, size,
                                  self._read_request(run, queue[request_id], self._fed_samples(feed, size)))

        def drain() -> None:
            nonlocal next_id
            while next_id in finished:
                context, size, record = finished.pop(next_id)
                self._consume(run, context, record)
                progress.update(size)
                next_id += 1

        try:
            for batch_id, (indices, batch) in enumerate(indexed_batches(sampler)):
                feed, context = self._prepare_batch(run, indices, batch)
                request_id = queue.get_idle_request_id()
                if request_id in running:
                    collect(request_id)
                queue.start_async(feed, batch_id, share_inputs=True)  # runs on request_id, the first idle one
                running[request_id] = (batch_id, context, len(batch), feed)  # feed: shared inputs stay alive
                drain()
        finally:
            queue.wait_all()
        for request_id in sorted(running, key=lambda r: running[r][0]):
            collect(request_id)
        drain()
