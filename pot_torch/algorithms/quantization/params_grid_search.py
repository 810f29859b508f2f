"""``ParamsGridSearchAlgorithm``: POT's grid search over DefaultQuantization settings, scored by the metric.

POT's two grids, searched one after the other: first the activation range estimators (``min`` by min/min,
or quantile/mean with outlier probability 1e-3 or 1e-4; ``max`` by max/max or the same quantiles: 9
combinations, weights by plain min/max), then ``use_fast_bias`` True or False with the best estimators. Each
candidate quantizes the floating-point model with the base algorithm (DefaultQuantization) and is scored by
the metric drop from the first candidate on the first ``stat_subset_size`` samples; the best one is returned.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any, Dict, List, Optional, Tuple

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import ALGORITHM_PARAMS, Param, declare_params, resolve_params, sub_params
from pot_torch.algorithms.quantization.metric_search import SEARCH_PARAMS, MetricError
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

_QUANTILES = [{"type": "quantile", "aggregator": "mean", "outlier_prob": 1e-3},
              {"type": "quantile", "aggregator": "mean", "outlier_prob": 1e-4}]
#: POT's search spaces, in order: ``{parameter: [values]}``; a space's candidates are its values' product.
GRID_SEARCH_SPACE: List[Dict[str, List[Any]]] = [
    {"activations.min": [{"type": "min", "aggregator": "min"}] + _QUANTILES,
     "activations.max": [{"type": "max", "aggregator": "max"}] + _QUANTILES,
     "weights.min": [{"type": "min"}],
     "weights.max": [{"type": "max"}]},
    {"use_fast_bias": [True, False]},
]

declare_params("ParamsGridSearchAlgorithm", {
    **ALGORITHM_PARAMS["DefaultQuantization"],
    "metric_name": SEARCH_PARAMS["metric_name"],
    "base_algorithm": Param("DefaultQuantization", choices=("DefaultQuantization",)),
})


def with_overrides(config: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` with ``overrides``: ``'<kind>.<side>'`` keys set that side of ``config[kind]['range_estimator']``
    (the rest of the user's ``kind`` settings kept), other keys replace the parameter."""
    result = copy.deepcopy(config)
    for key, value in overrides.items():
        if "." in key:
            kind, side = key.split(".")
            settings = dict(result.get(kind) or {})
            estimator = dict(settings.get("range_estimator") or {})
            estimator[side] = dict(value)
            result[kind] = {**settings, "range_estimator": estimator}
        else:
            result[key] = value
    return result


@COMPRESSION_ALGORITHMS.register("ParamsGridSearchAlgorithm")
class ParamsGridSearchAlgorithm(Algorithm):
    """Quantize with the DefaultQuantization settings of POT's grid that give the best metric.

    Parameters: DefaultQuantization's (the starting point the grid overrides), ``metric_name`` (default: the
    engine's first metric), ``base_algorithm`` ('DefaultQuantization'). After ``run``, ``best_params`` holds the
    overrides chosen and ``results`` every candidate's overrides with its metric value.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)
        self.best_params: Dict[str, Any] = {}
        self.results: List[Tuple[Dict[str, Any], float]] = []

    def _quantize(self, model: CompressedModel, overrides: Dict[str, Any]) -> CompressedModel:
        params = with_overrides(dict(sub_params(self.config, self.config.base_algorithm)), overrides)
        return COMPRESSION_ALGORITHMS.get(self.config.base_algorithm)(params, self.engine).run(copy.deepcopy(model))

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Return ``model`` (left unchanged) quantized with the best settings of the grid."""
        size = len(self.engine.data_loader) if self.engine is not None and self.engine.data_loader else 0
        count = size if self.config.stat_subset_size is None else min(size, self.config.stat_subset_size)
        error = MetricError(self.engine, self.name, self.config.metric_name, range(count))
        best: Optional[Tuple[float, Dict[str, Any], CompressedModel]] = None
        for space in GRID_SEARCH_SPACE:
            fixed = dict(best[1]) if best else {}
            for values in itertools.product(*space.values()):
                overrides = {**fixed, **dict(zip(space.keys(), values))}
                candidate = self._quantize(model, overrides)
                score = error(candidate)
                self.results.append((overrides, error.values[-1]))
                logger.info("%s: %s -> %s = %.6g", self.name, overrides, error.spec.name, error.values[-1])
                if best is None or score < best[0]:
                    best = (score, overrides, candidate)
        self.best_params = best[1]
        logger.info("%s chose %s", self.name, self.best_params)
        return best[2]
