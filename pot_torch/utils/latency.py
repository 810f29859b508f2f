"""Latency of OpenVINO models on the CPU, measured in interleaved rounds (for the demo and user reports).

Every model is compiled first (``PERFORMANCE_HINT: LATENCY``, batch as the model has it), then each round
runs every model ``iterations`` times in turn (alternating the order); a model's latency is the median over
rounds of its round medians and a speedup is the median over rounds of the same-round ratio, which cancels
slow changes in machine load.
"""
from __future__ import annotations

import statistics
import time
from typing import Dict, List, Mapping, Optional

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


def measure_latency(models: Mapping[str, ov.Model], inputs: Optional[Mapping[int, np.ndarray]] = None,
                    precision: Optional[str] = None, rounds: int = 7, iterations: int = 30,
                    warmup: int = 5) -> Dict[str, List[float]]:
    """Milliseconds per synchronous inference of each model, one value per round: ``{label: [ms, ...]}``.

    :param models: ``{label: openvino.Model}``; all take ``inputs``.
    :param inputs: the feed (default: :func:`example_inputs` of the first model).
    :param precision: ``INFERENCE_PRECISION_HINT`` (``None``: the device default, bf16 on CPUs with it).
    """
    if not models:
        raise ValueError("measure_latency needs at least one model")
    feed = dict(inputs) if inputs is not None else example_inputs(next(iter(models.values())))
    core = ov.Core()
    config: Dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    requests = {label: core.compile_model(model, "CPU", config).create_infer_request()
                for label, model in models.items()}
    for request in requests.values():
        for _ in range(warmup):
            request.infer(feed)
    per_round: Dict[str, List[float]] = {label: [] for label in requests}
    for round_index in range(rounds):
        order = list(requests) if round_index % 2 == 0 else list(reversed(requests))
        for label in order:
            times = []
            for _ in range(iterations):
                start = time.perf_counter()
                requests[label].infer(feed)
                times.append(time.perf_counter() - start)
            per_round[label].append(statistics.median(times) * 1e3)
    return per_round


def median_ms(rounds_ms: List[float]) -> float:
    """The latency figure of a model: the median of its round medians."""
    return statistics.median(rounds_ms)


def paired_speedup(rounds_ms: Mapping[str, List[float]], label: str, baseline: str) -> float:
    """How many times faster ``label`` is than ``baseline``: the median of the per-round ratios."""
    return statistics.median(b / v for b, v in zip(rounds_ms[baseline], rounds_ms[label]))
