"""A ``RayEngine`` actor: one compiled model, its own copy of the data loader, partial results per chunk.

The actor runs ``IEEngine``'s code (feeding, ``AsyncInferQueue``, statistics outputs, reducers, the CPU
stream-race workaround) on the data set indices of a chunk and returns what the driver merges: statistics
that stream into exact online aggregates (min, max, mean as a float64 sum and a count) as one partial
aggregate each, every other statistic as its ``(data set index, value)`` pairs, and the model outputs after
``postprocess_output`` with the batch's annotations, which the driver feeds to its metric in data set order
(a POT ``Metric`` has no way to merge two states, so the driver's metric sees exactly IEEngine's updates).
This module does not import Ray: ``RayEngine`` wraps :class:`ChunkWorker` with ``ray.remote``.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Dict, Hashable, List, Mapping, NamedTuple, Optional, Sequence

from tqdm import tqdm

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.engines.data_items import Annotations
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.engines.ir_bytes import ModelBytes, model_from_bytes
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.statistics.online import OnlineAccumulator


class ChunkResult(NamedTuple):
    """What one chunk gives the driver to merge."""

    #: ``{node_key: {stat_name: [(data set index, value)]}}`` of the statistics kept per batch
    pairs: Dict[Hashable, Dict[str, list]]
    #: one partial online aggregate per statistic of the layout (``None``: kept per batch), layout order
    accumulators: List[Optional[OnlineAccumulator]]
    #: ``(postprocessed outputs, annotations)`` per batch with valid annotations, data set order
    metric_batches: List[tuple]


class _ChunkEngine(IEEngine):
    """``IEEngine`` that records the metric's inputs instead of updating a metric (the driver does)."""

    def __init__(self, config: Any, data_loader: DataLoader, metric: Optional[Metric],
                 postprocess: Optional[Callable[[Dict[str, Any], List[Any]], Any]]) -> None:
        super().__init__(config, data_loader, metric)
        if postprocess is not None:
            self.postprocess_output = postprocess  # type: ignore[method-assign]  # the driver class's static one
        self.metric_batches: List[tuple] = []

    def _update_metrics(self, output: Any, annotations: Annotations, need_metrics_per_sample: bool = False) -> None:
        self.metric_batches.append((output, annotations))

    def _reset(self) -> None:
        super()._reset()
        self.metric_batches = []


class ChunkWorker:
    """The actor: ``set_model`` once per distinct model, then ``run`` per chunk.

    :param config: the engine config (``IEEngine``'s keys apply).
    :param data_loader: the data set; the actor reads its chunks' items from it by index.
    :param metric: the engine's metric (its outputs are needed when there is one), or ``None``.
    :param postprocess: the driver engine's ``postprocess_output`` when overridden (a static method).
    :param threads: CPU threads OpenVINO may use in this actor (its Ray CPUs); unless the config sets them,
        the actor runs ``max(2, threads)`` requests at once (the optimal number for one thread is 1, which would
        leave the CPU idle while the next batch is read).
    """

    def __init__(self, config: Mapping[str, Any], data_loader: DataLoader, metric: Optional[Metric],
                 postprocess: Optional[Callable], threads: int) -> None:
        settings = dict(config)
        for key in ("stat_requests_number", "eval_requests_number"):
            if not settings.get(key):  # unset: at least 2, so that even one stream overlaps feeding with inference
                settings[key] = min(max(2, int(threads)), multiprocessing.cpu_count())
        self._engine = _ChunkEngine(settings, data_loader, metric, postprocess)
        if self._engine._device == "CPU":
            properties: Dict[str, Any] = {"INFERENCE_NUM_THREADS": int(threads)}
            if threads < multiprocessing.cpu_count():
                # actors sharing a node: each process would pin its threads to the same first cores (measured:
                # 2 actors of 1 thread on 2 cores ran 1.4x slower than 1 actor of 2 threads, pinned)
                properties["ENABLE_CPU_PINNING"] = False
            self._engine._ie.set_property("CPU", properties)
        self._digest: Optional[str] = None

    def set_model(self, blob: ModelBytes) -> str:
        """Read and use the model of ``blob`` (compiled on the first ``run``); returns its digest."""
        self._engine.set_model(CompressedModel(model_from_bytes(self._engine._ie, blob)))
        self._digest = blob.digest
        return blob.digest

    def run(self, digest: str, layout: Optional[Mapping], indices: Sequence[int], batch_size: int,
            per_sample: bool) -> ChunkResult:
        """Infer the data set items ``indices`` (whole batches of ``batch_size``) with the model ``digest``.

        :raises RuntimeError: the actor holds another model (the driver sends ``set_model`` first).
        """
        if digest != self._digest:
            raise RuntimeError(f"RayEngine actor holds model {self._digest}, asked to run {digest}: the driver "
                               "must send set_model before run")
        engine = self._engine
        sampler = BatchSampler(engine.data_loader, batch_size=batch_size, subset_indices=list(indices))
        try:
            with tqdm(total=len(indices), disable=True) as progress:
                run = engine._run(layout or None, sampler, per_sample, progress)
            return ChunkResult(engine._accumulated_layer_stats, run.accumulators, engine.metric_batches)
        finally:
            engine._reset()

    def release_statistics_models(self) -> None:
        """Drop the compiled models built for statistics layouts (``IEEngine.release_statistics_models``)."""
        self._engine.release_statistics_models()

    def ping(self) -> int:
        """The actor's process id (answers once the actor is up)."""
        return os.getpid()
