"""``RayEngine``: ``IEEngine``'s ``predict`` sharded over Ray actors, on one machine or a cluster.

The driver splits the sampler's data set indices into fixed chunks of whole batches; each actor
(:mod:`pot_torch.engines.ray_worker`) holds the compiled model and its own copy of the data loader and runs
IEEngine's code on its chunks; the driver merges the partial results in data set order
(:mod:`pot_torch.engines.ray_pool` schedules them and retries the chunks of a dead actor). Results equal
IEEngine's: statistics min and max exactly, means from float64 sums and counts, every other statistic from
its gathered per-batch values, and the metric is updated on the driver with the actors' outputs in data set
order. Ray is imported only when a ``RayEngine`` is created (``pip install pot_torch[ray]``).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple

from tqdm import tqdm

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.engines.ir_bytes import model_to_bytes
from pot_torch.engines.ray_pool import ActorPool, Task
from pot_torch.engines.ray_worker import ChunkResult, ChunkWorker
from pot_torch.engines.stats_run import Run, StatSource
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.statistics.stats_outputs import stat_kind
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Samples per chunk (rounded down to whole batches, at least one batch): fixed, so results do not depend on
#: the number of actors. Small enough to spread a ranking subset of 300 samples, large enough that the
#: per-chunk overhead (one Ray call, one async queue drained) stays small (benchmarks/bench_scale_out.py).
DEFAULT_CHUNK_SIZE = 100


#: IEEngine hooks a subclass may override for IEEngine that RayEngine's actors cannot run (they build their own
#: IEEngine): a RayEngine subclass overriding one is refused rather than silently ignored.
ACTOR_DEFAULT_HOOKS = ("_process_batch", "_fill_input", "_set_model")


def import_ray() -> Any:
    """The ``ray`` module.

    :raises ImportError: Ray is not installed; the message names the extra to install.
    """
    try:
        import ray
    except ImportError as error:
        raise ImportError("RayEngine needs Ray, which is not installed: pip install pot_torch[ray] "
                          "(or pip install 'ray>=2.9')") from error
    return ray


class RayEngine(IEEngine):
    """``IEEngine`` whose ``predict`` runs on Ray actors; the same ``predict`` contract and results.

    Config keys, besides IEEngine's (each actor's ``IEEngine`` uses them): ``address`` (a Ray cluster to
    join, e.g. ``'ray://head:10001'`` or ``'auto'``; default: the Ray instance this process already
    started, else a new local one), ``num_cpus`` (CPUs of a new local instance; default all),
    ``num_actors`` (default: the cluster's CPUs / ``cpus_per_actor``), ``cpus_per_actor`` (default 1;
    OpenVINO in an actor uses that many threads), ``chunk_size`` (samples per chunk, default 100, rounded down
    to whole batches) and ``max_actor_restarts`` (dead actors replaced before giving up, default 3).

    The data loader and the metric are sent to every actor once (they must pickle; each actor reads its
    chunks' items itself), and a model once per change (as IR bytes). ``predict`` takes a ``BatchSampler``
    over the engine's data loader. A subclass overriding ``_process_batch``, ``_fill_input`` or ``_set_model`` is
    refused (the actors could not run them). A subclass may override ``postprocess_output`` as a static method (as
    POT's IEEngine declares it); it runs on the actors. :meth:`predict_models` evaluates several models at
    once (AccuracyAwareQuantization's ranking uses it). Call :meth:`close` (or use ``with``) to stop the
    actors, and the local Ray instance when this engine started it.
    """

    def __init__(self, config: Any, data_loader: Optional[DataLoader] = None,
                 metric: Optional[Metric] = None) -> None:
        overridden = [name for name in ACTOR_DEFAULT_HOOKS if getattr(type(self), name) is not getattr(IEEngine, name)]
        if overridden:
            raise TypeError(f"{type(self).__name__} overrides {', '.join(overridden)}, which RayEngine's actors do not "
                            "run (they run IEEngine's own); only postprocess_output is carried to them. Subclass "
                            "IEEngine for these hooks, or move the work into the data loader or postprocess_output")
        self._ray = import_ray()
        super().__init__(config, data_loader, metric)
        self._pool: Optional[ActorPool] = None
        self._started_ray = False
        self._blob: Optional[Tuple[Any, str]] = None  # (ObjectRef of the model's IR bytes, digest)
        self._chunk_size = _positive(self.config, "chunk_size", DEFAULT_CHUNK_SIZE)

    # ------------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the actors (and the local Ray instance if this engine started it)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._blob = None
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    @property
    def actors(self) -> List[Any]:
        """The actor handles (started on first use)."""
        return self._actor_pool().actors

    def _actor_pool(self) -> ActorPool:
        if self._pool is not None:
            return self._pool
        ray, config = self._ray, self.config
        address = config.get("address")
        if ray.is_initialized() and address:
            logger.warning("RayEngine: Ray is already initialized in this process; the engine uses that instance, "
                           "not address=%r", address)
        if not ray.is_initialized():
            if address:
                ray.init(address=address)
            else:
                ray.init(num_cpus=config.get("num_cpus"), include_dashboard=False)
            self._started_ray = True
        cpus = _positive(config, "cpus_per_actor", 1)
        available = int(ray.cluster_resources().get("CPU", 1))
        actors = _positive(config, "num_actors", 0) or max(1, available // cpus)
        if actors * cpus > available:
            raise ValueError(f"RayEngine config: {actors} actor(s) x cpus_per_actor {cpus} need {actors * cpus} CPUs, "
                             f"the Ray cluster has {available} (the extra actors would never start); lower "
                             "num_actors or cpus_per_actor, or scale the cluster up first")
        postprocess = None if type(self).postprocess_output is IEEngine.postprocess_output \
            else type(self).postprocess_output
        worker = ray.remote(ChunkWorker).options(num_cpus=cpus)
        loader, metric = ray.put(self.data_loader), ray.put(self._metric)
        settings = {key: value for key, value in dict(config).items() if key != "address"}
        self._pool = ActorPool(ray, lambda: worker.remote(settings, loader, metric, postprocess, cpus),
                               actors,
                               max_restarts=int(config.get("max_actor_restarts", 3)))
        logger.info("RayEngine: %d actor(s) of %d CPU(s), chunks of %d samples", actors, cpus, self._chunk_size)
        return self._pool

    # --------------------------------------------------------------------------------------------- model
    def set_model(self, model: CompressedModel) -> None:
        """As ``IEEngine.set_model``; the model goes to the actors (as IR bytes) on the next ``predict``."""
        super().set_model(model)
        self._blob = None

    def release_statistics_models(self) -> None:
        """Ask every actor to drop its compiled statistics models (after the tasks already queued on it)."""
        if self._pool is not None:
            for actor in self._pool.actors:
                actor.release_statistics_models.remote()

    def _model_blob(self) -> Tuple[Any, str]:
        if self._blob is None:
            blob = model_to_bytes(self._model)  # type: ignore[arg-type]
            self._blob = (self._ray.put(blob), blob.digest)
        return self._blob

    # ------------------------------------------------------------------------------------------- predict
    def _run(self, stats_layout: Optional[Mapping], sampler: Any, metric_per_sample: bool, progress: tqdm) -> Run:
        """Run ``sampler``'s chunks on the actors and merge their results into a driver-side ``Run``."""
        run = self._merging_run(stats_layout, metric_per_sample)
        for task, result in self._actor_pool().run_ordered(self._tasks(0, stats_layout, sampler, metric_per_sample)):
            self._merge(run, result)
            progress.update(len(task.indices))
        return run

    def predict_models(self, models: Iterable[CompressedModel], sampler: BatchSampler,
                       metric_per_sample: bool = False) -> Iterator[Tuple[Any, None]]:
        """``set_model(model)`` then ``predict(sampler=sampler)`` for each of ``models``, several at a time.

        The models are read lazily (a few ahead of the results) and each one's chunks run on whichever actors
        are free, so the actors evaluate different models at once. Yields each model's ``(metrics, None)``
        in the order of ``models``; the engine ends with the last model set.
        """
        def tasks() -> Iterator[Task]:
            for job, model in enumerate(models):
                self.set_model(model)
                yield from self._tasks(job, None, sampler, metric_per_sample)

        run: Optional[Run] = None
        try:
            for task, result in self._actor_pool().run_ordered(tasks()):
                run = run if run is not None else self._merging_run(None, metric_per_sample)
                self._merge(run, result)
                if task.last:
                    metrics, _ = self._results(run, None, metric_per_sample)
                    self._reset()
                    run = None
                    yield metrics, None
        finally:
            self._reset()

    def _tasks(self, job: int, stats_layout: Optional[Mapping], sampler: Any, per_sample: bool) -> Iterator[Task]:
        """The chunks of one job: fixed runs of whole batches of the sampler's indices."""
        if not isinstance(sampler, BatchSampler) or type(sampler).iter_indexed is not BatchSampler.iter_indexed:
            raise TypeError(f"RayEngine shards a BatchSampler's data set indices over its actors, got a "
                            f"{type(sampler).__name__}; pass BatchSampler(engine.data_loader, batch_size, "
                            "subset_indices), or run a custom sampler with IEEngine")
        if sampler._data_loader is not self.data_loader:
            raise ValueError("RayEngine's actors read items from the engine's own data loader, but the sampler "
                             "reads another one; build the sampler on engine.data_loader, or create a RayEngine "
                             "with that data loader")
        indices = [int(index) for index in sampler.subset_indices]
        step = max(1, self._chunk_size // sampler.batch_size) * sampler.batch_size
        chunks = [indices[start:start + step] for start in range(0, len(indices), step)] or [[]]
        blob, digest = self._model_blob()
        layout = self._ray.put(dict(stats_layout)) if stats_layout else None
        for number, chunk in enumerate(chunks):
            yield Task(job, number == len(chunks) - 1, blob, digest, layout, chunk, sampler.batch_size, per_sample)

    def _merging_run(self, stats_layout: Optional[Mapping], per_sample: bool) -> Run:
        """A ``Run`` without a compiled model: empty statistics lists and online aggregates to merge into."""
        sources = []
        for node_key, stats in (stats_layout or {}).items():
            for stat_name, fn in stats.items():
                self._accumulated_layer_stats.setdefault(node_key, {})[stat_name] = []
                sources.append(StatSource(node_key, stat_name, -1, stat_kind(fn) is not None, fn))
        run = Run(None, sources, 0, False, per_sample)  # type: ignore[arg-type]
        gathered = [source for source, online in zip(sources, run.accumulators) if online is None]
        if gathered:
            logger.info("RayEngine: %d statistic(s) (e.g. '%s' of %r) have no exact merge of partial results (only "
                        "min, max and mean stream online); their per-batch values are gathered", len(gathered),
                        gathered[0].stat_name, gathered[0].node_key)
        return run

    def _merge(self, run: Run, result: ChunkResult) -> None:
        """Add a chunk's statistics to the run and feed its outputs to the metric (chunks come in order)."""
        for node_key, stats in result.pairs.items():
            for stat_name, pairs in stats.items():
                self._accumulated_layer_stats[node_key][stat_name].extend(pairs)
        for mine, partial in zip(run.accumulators, result.accumulators):
            if mine is not None and partial is not None:
                mine.merge(partial)
        for output, batch_annotations in result.metric_batches:
            self._update_metrics(output, batch_annotations, run.per_sample)


def _positive(config: Mapping[str, Any], key: str, default: int) -> int:
    """``config[key]`` as a positive int (``default`` when unset).

    :raises ValueError: naming the key, when it is not a positive integer.
    """
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RayEngine config '{key}' must be a positive integer, got {value!r}")
    return value


__all__ = ["RayEngine", "DEFAULT_CHUNK_SIZE", "import_ray"]
