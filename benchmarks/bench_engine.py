"""IEEngine speed: ``predict`` against ``benchmark_app``, and statistics collection against plain ``predict``.

Run: ``/work/venv/bin/python benchmarks/bench_engine.py`` (about 2 minutes on 2 cores). Prints a markdown table;
each figure is the best of three interleaved runs, since other jobs may share the CPU.

Model: torchvision resnet18 with seeded random weights (``weights=None``), converted with
``openvino.convert_model`` at the static input shape [1,3,224,224]. Data: 300 random in-memory samples.

* Throughput: ``IEEngine.predict`` (no metric, default precision = bf16 on this CPU) over the 300 samples vs
  ``benchmark_app -m model.xml -hint throughput -t 15`` (same precision). Target: ratio >= 0.90.
* Statistics: min and max of every Convolution input computed in-graph, vs plain ``predict``. Statistics run at
  the engine's ``stat_inference_precision`` (f32); the target ratio (<= 1.5x) compares against plain
  ``predict`` at f32 too, and the bf16 figure is shown for reference.

Timings exclude compiling: each engine runs a short warm-up ``predict`` first (compiled models are cached).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch import BatchSampler, CompressedModel, DataLoader
from pot_torch.engines import IEEngine

SAMPLES = 300
ROUNDS = 3
BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


class _RandomImages(DataLoader):
    def __init__(self, count: int) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self._images = [rng.standard_normal((3, 224, 224), dtype=np.float32) for _ in range(count)]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Any:
        return self._images[index], None


class _GraphReducer:
    """Min or max over all axes but the batch axis, computed inside the graph (``inplace``)."""

    inplace = True

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, activation: np.ndarray) -> np.ndarray:
        axes = tuple(range(1, activation.ndim))
        return activation.min(axis=axes) if self.kind == "min" else activation.max(axis=axes)

    def graph_reduce(self, output: ov.Output) -> ov.Output:
        rank = output.get_partial_shape().rank.get_length()
        axes = ops.constant(np.arange(1, rank, dtype=np.int64))
        reduce = ops.reduce_min if self.kind == "min" else ops.reduce_max
        return reduce(output, axes, keep_dims=False).output(0)


def _reducers() -> Dict[str, Any]:
    """The project's MinReducer/MaxReducer when ``pot_torch.statistics.reducers`` has them, else local ones."""
    try:
        from pot_torch.statistics import reducers  # type: ignore[attr-defined]

        return {"min": reducers.MinReducer(inplace=True), "max": reducers.MaxReducer(inplace=True)}
    except (ImportError, AttributeError, TypeError):
        return {"min": _GraphReducer("min"), "max": _GraphReducer("max")}


def _resnet18(path: Path) -> ov.Model:
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    model = ov.convert_model(net, example_input=torch.zeros(1, 3, 224, 224), input=[1, 3, 224, 224])
    ov.save_model(model, path, compress_to_fp16=False)
    return ov.Core().read_model(path)


def _timed_predict(engine: IEEngine, loader: DataLoader, **kwargs: Any) -> float:
    """Samples per second of ``engine.predict`` over the whole loader, after a short warm-up."""
    engine.predict(sampler=BatchSampler(loader, subset_indices=range(8)), **kwargs)
    start = time.perf_counter()
    engine.predict(**kwargs)
    return len(loader) / (time.perf_counter() - start)


def _benchmark_app(xml: Path) -> float:
    command = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", "15"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    match = re.search(r"Throughput:\s*([\d.]+)\s*FPS", output)
    if match is None:
        raise RuntimeError(f"no Throughput line in benchmark_app output:\n{output}")
    return float(match.group(1))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "resnet18.xml"
        model = CompressedModel(_resnet18(xml))
        loader = _RandomImages(SAMPLES)
        convs = [op for op in model.get_model().get_ordered_ops() if op.get_type_name() == "Convolution"]
        layout = {}
        for conv in convs:
            source = conv.input(0).get_source_output()
            layout[(source.get_node().get_friendly_name(), source.get_index())] = _reducers()

        engine = IEEngine({"device": "CPU"}, loader)
        engine.set_model(model)
        f32_engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, loader)
        f32_engine.set_model(model)
        # Each figure is the best of ROUNDS interleaved runs: other jobs share the CPU.
        runs: Dict[str, list] = {"engine": [], "app": [], "f32": [], "stats": []}
        for _ in range(ROUNDS):
            runs["engine"].append(_timed_predict(engine, loader))
            runs["app"].append(_benchmark_app(xml))
            runs["f32"].append(_timed_predict(f32_engine, loader))
            runs["stats"].append(_timed_predict(engine, loader, stats_layout=layout))
        engine_fps, app_fps, plain_f32_fps, stats_fps = (max(runs[k]) for k in ("engine", "app", "f32", "stats"))

    throughput_ratio = engine_fps / app_fps
    stats_ratio = plain_f32_fps / stats_fps
    rows = [
        ("IEEngine.predict, bf16 (default)", f"{engine_fps:.1f}", ""),
        ("benchmark_app -hint throughput -t 15, bf16 (default)", f"{app_fps:.1f}", ""),
        ("predict / benchmark_app (target >= 0.90)", "", f"{throughput_ratio:.2f}"),
        ("IEEngine.predict, f32", f"{plain_f32_fps:.1f}", ""),
        (f"predict + in-graph min/max on {len(layout)} conv inputs, f32", f"{stats_fps:.1f}", ""),
        ("stats time / plain f32 time (target <= 1.5)", "", f"{stats_ratio:.2f}"),
        ("stats time / plain bf16 time (reference)", "", f"{engine_fps / stats_fps:.2f}"),
    ]
    print(f"resnet18 [1,3,224,224], {SAMPLES} in-memory samples, batch 1, CPU, best of {ROUNDS} runs; "
          f"all runs (samples/s): {', '.join(f'{k} {[round(v, 1) for v in r]}' for k, r in runs.items())}\n")
    print("| measurement | samples/s | ratio |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
