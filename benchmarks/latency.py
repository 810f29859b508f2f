"""Latency measurement and runtime-model inspection for OpenVINO CPU models (INT8 vs FP).

The machine is shared, so timings are noisy: variants are compiled up front and measured in interleaved rounds
(round r runs every variant once), and the reported figure is the median over rounds of each round's median.

``precision`` is the CPU ``INFERENCE_PRECISION_HINT``: ``'bf16'`` (this CPU's default), ``'f32'`` or ``None``
(device default). INT8 models run their quantized layers in INT8 and the rest in that precision.
"""
from __future__ import annotations

import re
import statistics
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import openvino as ov

from pot_torch.utils.latency import compile_on_cpu, measure_latency, median_ms
from pot_torch.utils.latency import paired_speedup as rounds_speedup

BENCHMARK_APP = "/work/venv/bin/benchmark_app"


def compile_for(model: ov.Model, precision: Optional[str] = "bf16", hint: str = "LATENCY",
                core: Optional[ov.Core] = None, perf_count: bool = False,
                threads: Optional[int] = None) -> ov.CompiledModel:
    """Compile ``model`` for CPU with ``PERFORMANCE_HINT`` ``hint`` and inference precision ``precision``
    (bf16 by default here); see :func:`pot_torch.utils.latency.compile_on_cpu`.

    ``threads`` sets ``INFERENCE_NUM_THREADS`` (default: the plugin's choice, all cores).
    """
    return compile_on_cpu(model, precision, hint, threads, perf_count, core)


@dataclass
class LatencyResult:
    """Median ms per inference over rounds, with every round's figure."""

    median_ms: float
    rounds_ms: List[float]

    @property
    def best_ms(self) -> float:
        """Fastest round: other jobs on the machine only ever slow a round down, so this is the least noisy."""
        return min(self.rounds_ms)

    @property
    def spread(self) -> float:
        """(max - min) / median over rounds: how noisy the figure is."""
        return (max(self.rounds_ms) - min(self.rounds_ms)) / self.median_ms


def compare_latency(variants: Mapping[str, ov.Model], example: Mapping[int, np.ndarray] | np.ndarray,
                    precision: Optional[str] = "bf16", hint: str = "LATENCY", rounds: int = 7,
                    iterations: int = 30, warmup: int = 5,
                    precisions: Optional[Mapping[str, Optional[str]]] = None,
                    threads: Optional[int] = None) -> Dict[str, LatencyResult]:
    """Measure every variant in interleaved rounds with :func:`pot_torch.utils.latency.measure_latency`;
    returns ``{label: LatencyResult}``.

    :param variants: ``{label: model}``; every model takes ``example``.
    :param precision: inference precision for all variants, unless ``precisions`` names one for a label.
    :param hint: ``'LATENCY'`` (synchronous, batch 1) or ``'THROUGHPUT'`` (async queue, ms per inference).
    :param threads: ``INFERENCE_NUM_THREADS`` for every variant (``None``: all cores).
    """
    inputs = example if isinstance(example, Mapping) else {0: example}
    per_round = measure_latency(variants, inputs, precision, rounds, iterations, warmup, hint=hint,
                                threads=threads, precisions=precisions)
    return {label: LatencyResult(median_ms(ms), ms) for label, ms in per_round.items()}


def paired_speedup(results: Mapping[str, LatencyResult], label: str, baseline: str) -> float:
    """Median over rounds of ``baseline``'s time / ``label``'s time in the same round.

    Pairing by round cancels slow drifts in machine load that a ratio of overall medians would absorb.
    """
    return rounds_speedup({name: result.rounds_ms for name, result in results.items()}, label, baseline)


# ------------------------------------------------------------------------------------ runtime model inspection
@dataclass
class RuntimeLayer:
    """One op of the CPU plugin's executed graph."""

    name: str
    layer_type: str
    runtime_precision: str
    output_precisions: str
    original_names: str


def runtime_layers(compiled: ov.CompiledModel) -> List[RuntimeLayer]:
    """The executed graph (after fusions) with each layer's runtime precision."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()

        def get(key: str) -> str:
            return str(info[key].value) if key in info else ""

        layers.append(RuntimeLayer(op.get_friendly_name(), get("layerType"), get("runtimePrecision"),
                                   get("outputPrecisions"), get("originalLayersNames")))
    return layers


def precision_summary(compiled: ov.CompiledModel, types: Sequence[str] = ("Convolution", "FullyConnected",
                                                                          "MatMul")) -> Dict[str, Counter]:
    """``{layer_type: Counter(runtime_precision)}`` for compute layers plus the count of Reorder/Convert layers."""
    summary: Dict[str, Counter] = defaultdict(Counter)
    for layer in runtime_layers(compiled):
        if layer.layer_type in types or layer.layer_type in ("Reorder", "Convert"):
            summary[layer.layer_type][layer.runtime_precision] += 1
    return dict(summary)


@dataclass
class LayerTime:
    """Per-layer timing from ``PERF_COUNT``: summed real time (us) over the profiled inferences."""

    name: str
    node_type: str
    exec_type: str
    real_us: float


def profile_layers(model: ov.Model, example: np.ndarray, precision: Optional[str] = "bf16",
                   iterations: int = 200, quiet_fraction: float = 0.3,
                   threads: Optional[int] = None) -> List[LayerTime]:
    """Per-layer real time (us per inference) from the CPU plugin's PERF_COUNT.

    Only the ``quiet_fraction`` of inferences with the smallest summed layer time are kept (other jobs on the
    machine inflate random layers of random inferences), and each layer's time is the mean over those, which
    also resolves layers shorter than the plugin's 1 us reporting step.
    """
    cm = compile_for(model, precision, "LATENCY", perf_count=True, threads=threads)
    request = cm.create_infer_request()
    runs: List[Dict[str, float]] = []
    meta: Dict[str, tuple] = {}
    for i in range(iterations + 10):
        request.infer({0: example})
        if i < 10:
            continue
        run = {}
        for info in request.profiling_info:
            run[info.node_name] = info.real_time.total_seconds() * 1e6
            meta[info.node_name] = (info.node_type, info.exec_type)
        runs.append(run)
    runs.sort(key=lambda r: sum(r.values()))
    quiet = runs[:max(1, int(len(runs) * quiet_fraction))]
    return [LayerTime(name, *meta[name], statistics.fmean(r.get(name, 0.0) for r in quiet)) for name in meta]


def time_by_exec_type(layers: Sequence[LayerTime]) -> Dict[str, float]:
    """Total us per ``node_type:exec_type`` group, descending."""
    totals: Dict[str, float] = defaultdict(float)
    for layer in layers:
        totals[f"{layer.node_type}:{layer.exec_type}"] += layer.real_us
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------------------------ benchmark_app
def benchmark_app(xml: Path, precision: str = "bf16", hint: str = "latency", seconds: int = 10) -> float:
    """Run ``benchmark_app`` on an IR and return its reported median latency in ms (LATENCY) or ms per
    inference derived from its throughput (THROUGHPUT)."""
    cmd = [BENCHMARK_APP, "-m", str(xml), "-d", "CPU", "-hint", hint, "-infer_precision", precision,
           "-t", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if hint == "latency":
        match = re.search(r"Median:\s+([\d.]+)\s+ms", out)
    else:
        match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out)
    if match is None:
        raise RuntimeError(f"benchmark_app output has no {hint} figure:\n{out}")
    value = float(match.group(1))
    return value if hint == "latency" else 1e3 / value
