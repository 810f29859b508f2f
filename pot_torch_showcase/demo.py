"""``pot-torch demo``: train a small CNN on generated images, quantize it two ways, compare FP32 and INT8.

Nothing is downloaded: the images come from ``pot_torch_showcase.synthetic`` (ten pattern classes, fully
determined by the seed). The CNN is converted with ``openvino.convert_model`` and quantized with
``DefaultQuantization`` and with ``AccuracyAwareQuantization``; accuracy is measured in OpenVINO on held-out
images and latency with ``pot_torch.utils.latency`` (batch 1, interleaved rounds). The FP32 model runs at the
CPU's default inference precision (bf16 on CPUs that have it, which the table states).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import openvino as ov
import torch
from tqdm import tqdm

from pot_torch.adapters.model import convert_torch_model
from pot_torch.adapters.post_training import QuantizationResult, quantize
from pot_torch_showcase.synthetic import CLASSES, accuracy, shapes_dataset, train_classifier
from pot_torch.graph.model_io import save_model
from pot_torch.utils.latency import measure_latency, median_ms, paired_speedup
from pot_torch.utils.output_folder import OutputFolder


def demo_cnn(width: int) -> torch.nn.Sequential:
    """The demo's CNN: 3x3 conv-BN-ReLU blocks, narrow at full resolution and widening to ``32 * width``.

    The first blocks run at full resolution with few channels (the stripe and checker classes have 4-7 px
    periods, which a strided stem would blur); most of the work is in the wide blocks at 8x8 and 4x4, where
    INT8 kernels are clearly faster than bf16 ones at batch 1.
    """
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        block(3, width), block(width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.MaxPool2d(2),
        block(4 * width, 8 * width), block(8 * width, 16 * width), nn.MaxPool2d(2),
        block(16 * width, 32 * width), block(32 * width, 32 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32 * width, len(CLASSES)),
    )


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run."""

    image_size: int
    width: int
    train_images: int
    validation_images: int
    steps: int
    batch: int
    subset_size: int
    maximal_drop: float
    latency_rounds: int
    latency_iterations: int


#: The full demo: about a minute of training on 2 CPU cores; a CNN wide enough for INT8 to pay off.
FULL = DemoSettings(image_size=32, width=16, train_images=8000, validation_images=1000, steps=500, batch=64,
                    subset_size=300, maximal_drop=0.005, latency_rounds=9, latency_iterations=40)
#: ``--quick``: a tiny run for CI (well under 30 s); its accuracy and speed figures mean little.
QUICK = DemoSettings(image_size=32, width=2, train_images=640, validation_images=200, steps=20, batch=32,
                     subset_size=64, maximal_drop=0.01, latency_rounds=3, latency_iterations=10)


#: What the demo writes into its output folder.
OUTPUT_ENTRIES = ("fp32", "int8_default", "int8_accuracy_aware", "results.md", "report.html", "report.json")


@dataclass
class DemoRow:
    """One line of the result table."""

    label: str
    precision: str
    accuracy: float
    latency_ms: float
    speedup: float
    ir_bytes: int
    seconds: float
    note: str = ""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def runtime_default_precision() -> str:
    """The CPU plugin's default inference precision as text (``'bf16'`` or ``'f32'``)."""
    value = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return value.to_string() if hasattr(value, "to_string") else str(value)


def _ir_bytes(entries: List[Dict[str, str]]) -> int:
    return sum(Path(entry[key]).stat().st_size for entry in entries for key in ("model", "weights"))


def _top1(preds: torch.Tensor, target: torch.Tensor) -> float:
    return float((preds.argmax(-1) == target).float().mean())


def _train(settings: DemoSettings, seed: int) -> tuple:
    train = shapes_dataset(settings.train_images, seed=seed, size=settings.image_size)
    validation = shapes_dataset(settings.validation_images, seed=seed + 1, size=settings.image_size)
    torch.manual_seed(seed)
    module = demo_cnn(settings.width)
    started = time.perf_counter()
    with tqdm(total=settings.steps, desc="Training", unit="step", file=sys.stderr) as bar:
        def on_step(_: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

        train_classifier(module, train, settings.steps, batch=settings.batch, seed=seed, on_step=on_step)
    return module, train, validation, time.perf_counter() - started


def format_table(rows: List[DemoRow], precision_note: str) -> str:
    """The result table as markdown."""
    lines = ["| model | inference precision | accuracy | latency (ms, batch 1) | speedup | IR size | time |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        note = f" ({row.note})" if row.note else ""
        lines.append(f"| {row.label}{note} | {row.precision} | {row.accuracy * 100:.1f} % | {row.latency_ms:.3f} "
                     f"| {row.speedup:.2f}x | {row.ir_bytes / 1024:.0f} KiB | {row.seconds:.1f} s |")
    lines.append("")
    lines.append(precision_note)
    return "\n".join(lines)


def run_demo(output_dir: Any = "pot_torch_demo", quick: bool = False, overwrite: bool = False, seed: int = 0,
             settings: Optional[DemoSettings] = None) -> List[DemoRow]:
    """Run the demo, print the table (stdout; progress on stderr) and write the IR files to ``output_dir``.

    :param output_dir: the folder for ``fp32/``, ``int8_default/``, ``int8_accuracy_aware/``, ``results.md``
        and the quantization report ``report.html`` (+ ``report.json``); an existing one is replaced only with ``overwrite`` and only if it holds nothing
        else (the current, home and root folders and their parents are refused).
    :param quick: use the tiny :data:`QUICK` settings.
    :param seed: seed of the data, weights and training.
    :param settings: explicit sizes (overrides ``quick``).
    :returns: the table rows (FP32, DefaultQuantization, AccuracyAwareQuantization).
    """
    settings = settings or (QUICK if quick else FULL)
    output = OutputFolder.checked(output_dir, overwrite, expected=OUTPUT_ENTRIES)
    total_started = time.perf_counter()
    _say(f"[1/6] Generating {settings.train_images} training and {settings.validation_images} validation images "
         f"({settings.image_size}x{settings.image_size}, 10 classes) and training a CNN (width {settings.width}) "
         f"for {settings.steps} steps")
    module, train, validation, train_seconds = _train(settings, seed)
    torch_accuracy = accuracy(module, validation)
    _say(f"      trained in {train_seconds:.1f} s; accuracy in PyTorch (f32): {torch_accuracy * 100:.1f} %")

    _say("[2/6] Converting to OpenVINO")
    started = time.perf_counter()
    example = torch.zeros(1, 3, settings.image_size, settings.image_size)
    fp_model = convert_torch_model(module, example_input=example, input_names=["image"], model_name="demo_cnn")
    convert_seconds = time.perf_counter() - started
    calibration = torch.utils.data.Subset(train, range(settings.subset_size))
    common = dict(subset_size=settings.subset_size, seed=seed, progress=True, metric=_top1)

    _say("[3/6] Quantizing with DefaultQuantization")
    default = quantize(fp_model, calibration, validation, **common)
    _say(f"[4/6] Quantizing with AccuracyAwareQuantization (maximal_drop {settings.maximal_drop * 100:.1f} points)")
    aware = quantize(fp_model, calibration, validation, maximal_drop=settings.maximal_drop, **common)

    _say("[5/6] Measuring latency (batch 1, interleaved rounds) and writing IR files")
    models = {"fp32": fp_model.get_model(), "default": default.model.get_model(), "aware": aware.model.get_model()}
    rounds = measure_latency(models, rounds=settings.latency_rounds, iterations=settings.latency_iterations)
    default_precision = runtime_default_precision()
    with output.staged() as staging:
        sizes = {"fp32": _ir_bytes(save_model(fp_model, str(staging / "fp32"), model_name="demo_cnn"))}
        for label, result in (("default", default), ("aware", aware)):
            folder = "int8_default" if label == "default" else "int8_accuracy_aware"
            sizes[label] = _ir_bytes(result.save(staging / folder))
        rows = _rows(default, aware, rounds, sizes, convert_seconds, str(default_precision))
        _say("[6/6] Writing the quantization report: which layers cost accuracy, and how much time each saves")
        default.report(staging / "report.html", maximal_drop=settings.maximal_drop)
        note = (f"Accuracy on {settings.validation_images} held-out images, measured in OpenVINO. Latency: median "
                f"of {settings.latency_rounds} interleaved rounds x {settings.latency_iterations} synchronous "
                f"inferences, CPU, LATENCY hint. FP32 runs at the CPU default inference precision "
                f"({default_precision}); INT8 runs its quantized layers in INT8 and the rest in "
                f"{default_precision}. Training: {train_seconds:.1f} s ({settings.steps} steps, PyTorch accuracy "
                f"{torch_accuracy * 100:.1f} %). Total: {time.perf_counter() - total_started:.1f} s.")
        table = format_table(rows, note)
        (staging / "results.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"\nIR files written to {output.path}/ (fp32/, int8_default/, int8_accuracy_aware/)")
    print(f"Quantization report: {output.path / 'report.html'} (data: report.json)")
    return rows


def _rows(default: QuantizationResult, aware: QuantizationResult, rounds: Dict[str, List[float]],
          sizes: Dict[str, int], convert_seconds: float, precision: str) -> List[DemoRow]:
    reverted = len(aware.reverted_layers)
    return [
        DemoRow("FP32", f"{precision} (CPU default)", float(default.fp32_metric), median_ms(rounds["fp32"]), 1.0,
                sizes["fp32"], convert_seconds, "conversion time"),
        DemoRow("INT8 DefaultQuantization", f"int8 + {precision}", float(default.int8_metric),
                median_ms(rounds["default"]), paired_speedup(rounds, "default", "fp32"), sizes["default"],
                default.quantization_time),
        DemoRow("INT8 AccuracyAwareQuantization", f"int8 + {precision}", float(aware.int8_metric),
                median_ms(rounds["aware"]), paired_speedup(rounds, "aware", "fp32"), sizes["aware"],
                aware.quantization_time, f"{reverted} layer group(s) kept in FP" if reverted else ""),
    ]
