"""``RangeOptimization``: POT's metric-driven search of the activation FakeQuantize ranges of a quantized model.

The model must already hold FakeQuantize ops (put it after DefaultQuantization or MinMaxQuantization in the
pipeline). The search variables are the ranges of every per-tensor activation FakeQuantize: ``low`` and
``high``, or only ``high`` (``low`` fixed at 0) where the FakeQuantize reads a ReLU or Clamp, as in POT. Each
value may move within POT's box around its start (``lower_boxsize``, ``upper_boxsize``, ``zero_boxsize``).
A candidate is scored by the engine's metric on ``optimization_subset_size`` samples; the best candidate seen
(the start included) is kept. Input and output ranges of each FakeQuantize are set alike, as POT did.

Backend: ``opt_backend: 'scipy'`` runs scipy's differential evolution (POT's ``best2exp`` strategy, ``maxiter``
generations, seeded with ``seed``, the start in the first population); scipy is imported only here
(``pip install scipy``). POT's nevergrad and skopt backends are refused. With ``error_function:
quantization_noise`` candidates are scored by POT's quantization noise (QuantNoiseEstimator), not a metric.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import COMMON_PARAMS, Param, declare_params, resolve_params
from pot_torch.algorithms.quantization.metric_search import (BOX_PARAMS, SEARCH_PARAMS, MetricError, NoiseError,
                                                             hyperbox, search_indices)
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges, find_op, set_fake_quantize_ranges
from pot_torch.graph.model_io import save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: POT's backends; only scipy is implemented.
BACKENDS = ("scipy", "nevergrad", "skopt", "grid_search")
#: Producers whose output is never negative to the FakeQuantize: only ``high`` is searched.
_NON_NEGATIVE_PRODUCERS = ("Relu", "Clamp")


def _names(value: Any) -> Optional[str]:
    if value is None:
        return None
    scope = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], dict) \
        else value
    if isinstance(scope, (dict, list, tuple)) and all(isinstance(k, str) for k in scope):
        return None
    return "expected op names: a list such as ['relu1'] (or POT's [{'relu1': ...}])"


def _ranges_to_set(value: Any) -> Optional[str]:
    ranges = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
    if isinstance(ranges, dict) and all(isinstance(k, str) and np.size(v) == 2 for k, v in ranges.items()):
        return None
    return "expected {op name: [low, high]} (or POT's [{op name: [low, high]}])"


def _maxiter(value: Any) -> Optional[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
        return None
    return "expected a positive number of generations (or a list of them, one per optimizer run)"


declare_params("RangeOptimization", {
    **COMMON_PARAMS, **SEARCH_PARAMS, **BOX_PARAMS,
    "maxiter": Param(100, check=_maxiter),
    "opt_backend": Param("scipy", choices=BACKENDS),
    "optimizer_name": Param(None),
    "error_function": Param("metric", choices=("metric", "quantization_noise")),
    "optimization_scope": Param(None, check=_names),
    "activation_ranges_to_set": Param(None, check=_ranges_to_set),
    "dump_model_prefix": Param(None),
})


def _unwrap(value: Any) -> Any:
    """POT wrapped ``optimization_scope`` and ``activation_ranges_to_set`` in a one-item list."""
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], dict) else value


def _producer(fq: ov.Node) -> ov.Node:
    return fq.input_value(0).get_node()


def differential_evolution() -> Any:
    """scipy's ``differential_evolution``, imported on first use (scipy is not a core dependency)."""
    try:
        from scipy.optimize import differential_evolution as search  # noqa: WPS433 (optional dependency)
    except ImportError as error:
        raise ImportError("RangeOptimization's 'scipy' backend needs scipy, which is not installed: "
                          "pip install scipy") from error
    return search


class _Variable:
    """The searched range of one activation FakeQuantize: ``(low, high)``, or ``high`` alone from 0."""

    def __init__(self, fq: ov.Node) -> None:
        self.name = fq.get_friendly_name()
        low, high, _, _ = fake_quantize_ranges(fq)
        self.high_only = _producer(fq).get_type_name() in _NON_NEGATIVE_PRODUCERS
        self.start = [float(high)] if self.high_only else [float(low), float(high)]

    def ranges(self, values: Sequence[float]) -> Tuple[float, float]:
        return (0.0, float(values[0])) if self.high_only else (float(values[0]), float(values[1]))


@COMPRESSION_ALGORITHMS.register("RangeOptimization")
class RangeOptimization(Algorithm):
    """Search the activation FakeQuantize ranges of a quantized model for the best metric (POT's algorithm).

    Parameters (POT's): ``maxiter`` (100), ``opt_backend`` ('scipy'), ``optimizer_name``, ``lower_boxsize``
    (0.08), ``upper_boxsize`` (0.02), ``zero_boxsize`` (0.05), ``metric_name`` (the engine's first metric),
    ``optimization_subset_size`` (all), ``stochastic`` (False), ``seed`` (0), ``error_function`` ('metric'),
    ``optimization_scope`` (ops whose FakeQuantize is left out), ``activation_ranges_to_set`` (set these ranges,
    no search), ``result_filename``, ``dump_model_prefix``. After ``run``, ``best_ranges`` maps each FakeQuantize
    to the ``(low, high)`` chosen and ``best_error`` its error (metric drop from the start, <= 0; or its noise).
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)
        config = self.config
        if config.opt_backend != "scipy":
            raise ValueError(f"RangeOptimization's opt_backend {config.opt_backend!r} is not available in "
                             "pot_torch (POT's nevergrad, skopt and grid_search backends are not implemented): use "
                             "opt_backend 'scipy' (differential evolution; pip install scipy)")
        if config.optimizer_name not in (None, "scipy"):
            raise ValueError(f"optimizer_name {config.optimizer_name!r} names a nevergrad optimizer, which pot_torch "
                             "does not run: leave optimizer_name out (the scipy backend is differential evolution)")
        self._search = differential_evolution()
        self.best_ranges: Dict[str, Tuple[float, float]] = {}
        self.best_error: Optional[float] = None

    def _fake_quantize_ops(self, ov_model: ov.Model) -> List[ov.Node]:
        skipped = set(_unwrap(self.config.optimization_scope) or ())
        chosen = []
        for fq in fake_quantize_ops(ov_model):
            if constant_source(fq.input_value(0)) is not None or _producer(fq).get_friendly_name() in skipped \
                    or fq.get_friendly_name() in skipped:
                continue
            if any(np.size(value) != 1 for value in fake_quantize_ranges(fq)):
                logger.warning("RangeOptimization leaves FakeQuantize '%s' alone: its ranges are per channel "
                               "(only per-tensor activation ranges are searched)", fq.get_friendly_name())
                continue
            chosen.append(fq)
        return chosen

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Set the best activation ranges found in ``model`` (edited in place) and return it."""
        if model.is_cascade:
            raise ValueError("RangeOptimization searches the ranges of a single model; got a cascade of "
                             f"{model.member_names}")
        ov_model = model.get_model()
        if self.config.activation_ranges_to_set is not None:
            return self._set_given_ranges(model)
        variables = [_Variable(fq) for fq in self._fake_quantize_ops(ov_model)]
        if not variables:
            logger.warning("RangeOptimization found no per-tensor activation FakeQuantize to optimize: put it after "
                           "DefaultQuantization or MinMaxQuantization in the pipeline")
            return model
        indices = search_indices(self.engine, self.config)
        if self.config.error_function == "metric":
            error = MetricError(self.engine, self.name, self.config.metric_name, indices, self.config.result_filename)
        else:
            error = NoiseError(self.engine, self.config.target_device, len(indices), self.config.result_filename)
        start = np.array([v for variable in variables for v in variable.start])
        best = {"error": error(model), "values": start}
        bounds = hyperbox(start, self.config.lower_boxsize, self.config.upper_boxsize, self.config.zero_boxsize)
        trial = copy.deepcopy(model)
        iteration = itertools.count()

        def objective(values: np.ndarray) -> float:
            self._apply(trial.get_model(), variables, values)
            value = error(trial)
            self._dump(trial, next(iteration))
            if value < best["error"]:
                best.update(error=value, values=np.array(values))
            return value

        maxiters = self.config.maxiter if isinstance(self.config.maxiter, (list, tuple)) else [self.config.maxiter]
        for maxiter in maxiters:
            logger.info("RangeOptimization: differential evolution over %d range values, %d generations",
                        len(start), maxiter)
            start_point = np.clip(best["values"], [b[0] for b in bounds], [b[1] for b in bounds])
            self._search(objective, bounds, strategy="best2exp", maxiter=int(maxiter), seed=int(self.config.seed),
                         x0=start_point, polish=False)
        self.best_error = float(best["error"])
        self.best_ranges = self._apply(ov_model, variables, best["values"])
        logger.info("RangeOptimization: best %s error %.6g with ranges %s", error.name, self.best_error,
                    self.best_ranges)
        return model

    @staticmethod
    def _split(variables: Sequence[_Variable], values: Sequence[float]) -> List[Tuple[float, float]]:
        ranges, position = [], 0
        for variable in variables:
            width = len(variable.start)
            ranges.append(variable.ranges(values[position:position + width]))
            position += width
        return ranges

    def _apply(self, ov_model: ov.Model, variables: Sequence[_Variable], values: Sequence[float]
               ) -> Dict[str, Tuple[float, float]]:
        """Set the ranges ``values`` of ``variables`` (input and output alike); returns them per FakeQuantize."""
        ranges = dict(zip((variable.name for variable in variables), self._split(variables, values)))
        for name, (low, high) in ranges.items():
            set_fake_quantize_ranges(find_op(ov_model, name), (low, high, low, high))
        return ranges

    def _set_given_ranges(self, model: CompressedModel) -> CompressedModel:
        ov_model = model.get_model()
        by_producer = {_producer(fq).get_friendly_name(): fq for fq in fake_quantize_ops(ov_model)}
        by_name = {fq.get_friendly_name(): fq for fq in fake_quantize_ops(ov_model)}
        for name, (low, high) in _unwrap(self.config.activation_ranges_to_set).items():
            fq = by_name.get(name) or by_producer.get(name)
            if fq is None:
                raise ValueError(f"activation_ranges_to_set names '{name}', which is neither a FakeQuantize of the "
                                 f"model nor the op one reads; FakeQuantize ops: {sorted(by_name)}")
            set_fake_quantize_ranges(fq, (float(low), float(high), float(low), float(high)))
            self.best_ranges[fq.get_friendly_name()] = (float(low), float(high))
        return model

    def _dump(self, model: CompressedModel, iteration: int) -> None:
        """Save the candidate of ``iteration`` as ``<dump_model_prefix><iteration:05>`` (POT's naming)."""
        if self.config.dump_model_prefix:
            path = Path(f"{self.config.dump_model_prefix}{iteration:05}")
            save_model(model, str(path.absolute().parent), path.name)
