"""``Pipeline``: algorithms applied in order through one engine (POT's ``pipeline/pipeline.py``)."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence

from pot_torch.algorithms import Algorithm
from pot_torch.api.engine import Engine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.samplers.sampler import checked_indices
from pot_torch.statistics.collector import collect_statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


class Pipeline:
    """Algorithms applied one after another to a model, all running it through ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._algorithms: List[Algorithm] = []

    @property
    def engine(self) -> Engine:
        """The engine every algorithm uses."""
        return self._engine

    @property
    def algorithms(self) -> List[Algorithm]:
        """The algorithms, in the order they run."""
        return list(self._algorithms)

    def add_algo(self, algorithm: Algorithm) -> None:
        """Append ``algorithm`` to the pipeline."""
        self._algorithms.append(algorithm)

    def run(self, model: CompressedModel) -> CompressedModel:
        """Apply the algorithms in order to a copy of ``model`` and return the result.

        Consecutive algorithms form a group whose statistics are collected together, in as few passes over
        the data as possible, on the model as it enters the group; an algorithm with
        ``change_original_model`` closes its group. The caller's ``model`` is left unchanged.
        """
        if not isinstance(model, CompressedModel):
            raise TypeError(
                f"Pipeline.run expects a CompressedModel (from load_model or CompressedModel(ov_model)), "
                f"got {type(model).__name__}"
            )
        result = copy.deepcopy(model)
        for group in self._groups():
            requests = [algorithm.statistics_requests(result) for algorithm in group]
            flat = [request for algo_requests in requests for request in algo_requests]
            collected = iter(collect_statistics(self._engine, result, flat))
            for algorithm, algo_requests in zip(group, requests):
                logger.info("Start algorithm: %s", algorithm.name)
                result = algorithm.run(result, [next(collected) for _ in algo_requests])
                logger.info("Finished: %s", algorithm.name)
        return result

    def _groups(self) -> List[List[Algorithm]]:
        groups: List[List[Algorithm]] = [[]]
        for algorithm in self._algorithms:
            groups[-1].append(algorithm)
            if algorithm.change_original_model:
                groups.append([])
        return [group for group in groups if group]

    def evaluate(self, model: CompressedModel, subset_indices: Optional[Sequence[int]] = None,
                 print_progress: bool = False) -> Dict[str, float]:
        """Return the engine's metric of ``model`` over the data set (or over ``subset_indices``)."""
        if self._engine.metric is None:
            raise ValueError(
                "Pipeline.evaluate needs a metric: create the engine with metric=YourMetric() "
                "(a pot_torch.Metric subclass)"
            )
        self._engine.set_model(model)
        sampler = None
        if subset_indices is not None:
            sampler = BatchSampler(self._engine.data_loader,
                                   subset_indices=checked_indices(subset_indices, len(self._engine.data_loader),
                                                                  "Pipeline.evaluate: subset_indices"))
        metrics, _ = self._engine.predict(sampler=sampler, print_progress=print_progress)
        return metrics

