"""What POT's metric-driven searches share (RangeOptimization, ParamsGridSearchAlgorithm): their parameters,
the error a candidate model is scored by, and the subset of the data set it is measured on.

The error of a model is the drop of the chosen metric from the first model scored (the starting point), so
lower is better and the start scores 0, as in POT's ``OptimizationAlgorithm``; or (``error_function:
quantization_noise``) POT's quantization noise of the model, which needs no metric.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from pot_torch.algorithms.params import Param, fraction_below_one
from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, choose_metric, evaluate
from pot_torch.algorithms.quantization.qnoise_estimator import QuantNoiseEstimator
from pot_torch.api.engine import Engine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


def _optional_positive_int(value: Any) -> Optional[str]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return None
    return "expected a positive integer (or None for the whole data set)"


_box = fraction_below_one("expected a fraction in [0, 1) of the starting value by which the search may move it")


def _text(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value else "expected a non-empty string"


#: POT's ``OptimizationAlgorithm`` parameters shared by the searches.
SEARCH_PARAMS: Dict[str, Param] = {
    "metric_name": Param(None, check=_text),
    "optimization_subset_size": Param(None, check=_optional_positive_int),
    "stochastic": Param(False, choices=(True, False)),
    "result_filename": Param(None, check=_text),
}
#: RangeOptimization's search box: how far each range value may move below and above its start (fractions of
#: it), and around zero for a value that is zero.
BOX_PARAMS: Dict[str, Param] = {
    "lower_boxsize": Param(0.08, check=_box),
    "upper_boxsize": Param(0.02, check=_box),
    "zero_boxsize": Param(0.05, check=_box),
}


def search_indices(engine: Engine, config: Mapping[str, Any]) -> Sequence[int]:
    """The data set indices candidates are scored on: the first ``optimization_subset_size`` (all by default),
    or that many drawn with ``seed`` when ``stochastic``."""
    if engine is None or engine.data_loader is None:
        raise ValueError("the search scores candidate models on data: create the engine with a data loader, e.g. "
                         "IEEngine(config, data_loader, metric)")
    size = len(engine.data_loader)
    count = size if config.get("optimization_subset_size") is None else min(size, config["optimization_subset_size"])
    if config.get("stochastic"):
        rng = np.random.default_rng(int(config.get("seed", 0) or 0))
        return sorted(int(i) for i in rng.choice(size, size=count, replace=False))
    return range(count)


class _Scores:
    """What every scorer keeps: its values in order, also written to ``result_filename`` when given."""

    def __init__(self, result_filename: Optional[str]) -> None:
        self.result_filename = result_filename
        #: the value of every model scored, in order
        self.values: List[float] = []

    def _record(self, value: float) -> None:
        self.values.append(value)
        if self.result_filename:
            np.savetxt(self.result_filename, np.asarray(self.values), delimiter=",")


class MetricError(_Scores):
    """Scores models by the drop of one metric from the first model scored, on fixed data set indices.

    :param algorithm: the name of the algorithm searching, for the messages.
    :param metric_name: the metric to use (default: the engine's first).
    """

    def __init__(self, engine: Engine, algorithm: str, metric_name: Optional[str], indices: Sequence[int],
                 result_filename: Optional[str] = None) -> None:
        super().__init__(result_filename)
        if engine is None or engine.metric is None or engine.data_loader is None:
            raise ValueError(f"{algorithm} scores candidate models by a metric: create the engine with a data "
                             "loader whose items carry annotations and metric=YourMetric() (a pot_torch.Metric)")
        self.spec: MetricSpec = choose_metric(engine, [{"name": metric_name}] if metric_name else None)
        self.name = self.spec.name
        self.engine, self.indices = engine, list(indices)
        self.start: Optional[float] = None

    def __call__(self, model: CompressedModel) -> float:
        """The error of ``model``: the metric drop from the first model scored (lower is better)."""
        value, _ = evaluate(self.engine, model, self.spec, self.indices)
        if self.start is None:
            self.start = value
        self._record(value)
        logger.debug("%s = %.6g", self.spec.name, value)
        return self.spec.drop(self.start, value)


class NoiseError(_Scores):
    """Scores quantized models by POT's quantization noise: the sum over the quantized layers of
    ``1 / sqnr_eltwise_mean`` (QuantNoiseEstimator, ``full_fq_noise``) on the first ``count`` samples."""

    name = "quantization noise"

    def __init__(self, engine: Engine, target_device: str, count: int, result_filename: Optional[str] = None) -> None:
        super().__init__(result_filename)
        self.estimator = QuantNoiseEstimator({"stat_subset_size": count, "target_device": target_device,
                                              "type": "sqnr_eltwise_mean"}, engine)

    def __call__(self, model: CompressedModel) -> float:
        """The noise of ``model`` (lower is better)."""
        self.estimator.run(model)
        value = float(np.sum(1.0 / np.asarray(self.estimator.noise_data["noise_metric"], dtype=np.float64)))
        self._record(value)
        return value


def hyperbox(start: Sequence[float], lower: float, upper: float, zero: float) -> List[tuple]:
    """POT's search bounds around each starting value ``v``: ``[(1 - lower) v, (1 + upper) v]`` for ``v > 0``,
    ``[(1 + upper) v, (1 - lower) v]`` for ``v < 0`` and ``[-zero, zero]`` for ``v == 0``."""
    bounds = []
    for value in map(float, start):
        if value > 0:
            bounds.append(((1 - lower) * value, (1 + upper) * value))
        elif value < 0:
            bounds.append(((1 + upper) * value, (1 - lower) * value))
        else:
            bounds.append((-zero, zero))
    return bounds
