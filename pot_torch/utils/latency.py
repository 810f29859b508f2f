"""Latency of OpenVINO models on the CPU, measured in interleaved rounds (for the demo, user reports and the
benchmarks).

Every model is compiled first (``PERFORMANCE_HINT: LATENCY`` by default, batch as the model has it), then each
round runs every model ``iterations`` times in turn (alternating the order); a model's latency is the median
over rounds of its round figures and a speedup is the median over rounds of the same-round ratio, which cancels
slow changes in machine load.
"""
from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
import openvino as ov


def example_inputs(model: ov.Model, seed: int = 0) -> Dict[int, np.ndarray]:
    """Random float inputs of the model's static shapes (dynamic axes become 1): ``{input index: array}``.

    :raises ValueError: an input's rank is dynamic.
    """
    rng = np.random.default_rng(seed)
    feed = {}
    for index, port in enumerate(model.inputs):
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            raise ValueError(f"input {index} of '{model.get_friendly_name()}' has a dynamic rank; give the "
                             "example inputs yourself")
        dims = [d.get_length() if d.is_static else 1 for d in shape]
        dtype = port.get_element_type().to_dtype()
        if np.issubdtype(dtype, np.integer):
            feed[index] = rng.integers(0, 2, size=dims).astype(dtype)
        else:
            feed[index] = rng.standard_normal(dims).astype(dtype)
    return feed


#: The ``PERFORMANCE_HINT`` values :func:`measure_latency` can time.
HINTS = ("LATENCY", "THROUGHPUT")


def compile_on_cpu(model: ov.Model, precision: Optional[str] = None, hint: str = "LATENCY",
                   threads: Optional[int] = None, perf_count: bool = False,
                   core: Optional[ov.Core] = None) -> ov.CompiledModel:
    """Compile ``model`` for the CPU device.

    :param precision: ``INFERENCE_PRECISION_HINT`` (``None``: the device default, bf16 on CPUs with it).
    :param hint: ``PERFORMANCE_HINT``, one of :data:`HINTS`.
    :param threads: ``INFERENCE_NUM_THREADS`` (``None``: the plugin's choice, all cores).
    :param perf_count: turn on ``PERF_COUNT`` (per-layer profiling).
    :param core: the ``openvino.Core`` to compile with (default: a new one).
    :raises ValueError: ``hint`` is not one of :data:`HINTS`.
    """
    if hint not in HINTS:
        raise ValueError(f"hint must be one of {', '.join(HINTS)}, got {hint!r}")
    config: Dict[str, object] = {"PERFORMANCE_HINT": hint}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if perf_count:
        config["PERF_COUNT"] = True
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return (core or ov.Core()).compile_model(model, "CPU", config)


def _sync_ms(request: ov.InferRequest, feed: Mapping[int, np.ndarray], iterations: int) -> float:
    """Median wall time in ms of ``iterations`` synchronous inferences."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        request.infer(feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _async_ms(compiled: ov.CompiledModel, feed: Mapping[int, np.ndarray], iterations: int) -> float:
    """Wall time in ms per inference of ``iterations`` inferences over the optimal number of async requests."""
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    start = time.perf_counter()
    for _ in range(iterations):
        queue.start_async(feed)
    queue.wait_all()
    return (time.perf_counter() - start) / iterations * 1e3


def measure_latency(models: Mapping[str, ov.Model], inputs: Optional[Mapping[int, np.ndarray]] = None,
                    precision: Optional[str] = None, rounds: int = 7, iterations: int = 30,
                    warmup: int = 5, *, hint: str = "LATENCY", threads: Optional[int] = None,
                    precisions: Optional[Mapping[str, Optional[str]]] = None) -> Dict[str, List[float]]:
    """Milliseconds per inference of each model, one value per round: ``{label: [ms, ...]}``.

    :param models: ``{label: openvino.Model}``; all take ``inputs``.
    :param inputs: the feed (default: :func:`example_inputs` of the first model).
    :param precision: ``INFERENCE_PRECISION_HINT`` (``None``: the device default, bf16 on CPUs with it).
    :param hint: ``"LATENCY"``: a round's figure is the median of ``iterations`` synchronous inferences;
        ``"THROUGHPUT"``: it is the wall time per inference of ``iterations`` inferences on an async queue.
    :param threads: ``INFERENCE_NUM_THREADS`` for every model (``None``: all cores).
    :param precisions: ``{label: precision}`` overriding ``precision`` for some models.
    :raises ValueError: no models, or ``hint`` is not one of :data:`HINTS`.
    """
    if not models:
        raise ValueError("measure_latency needs at least one model")
    feed = dict(inputs) if inputs is not None else example_inputs(next(iter(models.values())))
    core = ov.Core()
    runners: Dict[str, Callable[[int], float]] = {}
    for label, model in models.items():
        compiled = compile_on_cpu(model, (precisions or {}).get(label, precision), hint, threads, core=core)
        runners[label] = (partial(_sync_ms, compiled.create_infer_request(), feed) if hint == "LATENCY"
                          else partial(_async_ms, compiled, feed))
    if warmup > 0:
        for run in runners.values():
            run(warmup)
    per_round: Dict[str, List[float]] = {label: [] for label in runners}
    for round_index in range(rounds):
        order = list(runners) if round_index % 2 == 0 else list(reversed(runners))
        for label in order:
            per_round[label].append(runners[label](iterations))
    return per_round


def median_ms(rounds_ms: List[float]) -> float:
    """The latency figure of a model: the median of its round medians."""
    return statistics.median(rounds_ms)


def paired_speedup(rounds_ms: Mapping[str, List[float]], label: str, baseline: str) -> float:
    """How many times faster ``label`` is than ``baseline``: the median of the per-round ratios."""
    return statistics.median(b / v for b, v in zip(rounds_ms[baseline], rounds_ms[label]))
