"""Accuracy-control benchmark: pot_torch AccuracyAwareQuantization beside nncf.quantize_with_accuracy_control.

    /work/venv/bin/python benchmarks/bench_accuracy_control.py              # train, quantize, print the table
    /work/venv/bin/python benchmarks/bench_accuracy_control.py --work-dir /tmp/acc   # keep the IRs, then
    /work/venv/bin/python benchmarks/bench_accuracy_control.py --model-xml /tmp/acc/narrow_cnn_fp32.xml  # reuse

The model is trained here with fixed seeds (about 80 s on an idle 2-core machine, a few minutes on a busy
one): a narrow CNN without BatchNorm on the synthetic shapes data (``pot_torch_showcase.synthetic``). Two of
its activations are then given an outlier channel by an exact, function-preserving rescaling (one ReLU output
channel multiplied by ``OUTLIER_SCALE``, the next convolution's weights for that channel divided by it), the
pattern networks without normalisation show. 8-bit per-tensor activation quantization then loses about ten
points of top-1, and the accuracy search has to find the two layers responsible.

Each tool runs in its own subprocess (``--worker``) on the same FP IR, the same data (validation = the
``--samples`` items; calibration = their first ``--subset``, ``stat_subset_size`` = ``subset_size`` =
``--subset``), the same metric (top-1 as a fraction; pot_torch through a POT ``Metric`` with per-sample values,
NNCF through a ``validation_fn`` returning the value and per-item hits) and ``maximal_drop`` = ``max_drop`` =
0.01 absolute. pot_torch evaluates at the CPU's default precision (bf16 here); NNCF compiles the candidates it
hands to ``validation_fn`` at f32 itself. Wall time is the quantization call only (model read, data built and
library imported before the clock starts); peak RSS is the worker's VmHWM (interpreter and imports, torch
included for the data generator, in both workers).

Columns: FP and INT8 top-1 re-measured here on the validation set at the CPU's default precision (bf16),
their drop, whether it meets 0.01, layers left in floating point (Convolution/MatMul-type ops not all of whose
inputs are quantized, counted the same way on both tools' saved IRs: an input is quantized when it comes from
a FakeQuantize or an INT8 weight constant, through MaxPool/Reshape-like ops), FakeQuantize ops + INT8 weight
constants, INT8 latency (LATENCY hint, batch 1, bf16, ``--threads`` inference threads, default 1, interleaved
rounds, median), quantization wall time, peak RSS and how many samples went through the metric (statistics
passes included). Below the table, issue 4's bars are checked with their figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import openvino as ov

from pot_torch.engines.ie_engine import compile_avoiding_stream_race

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from workers import peak_rss_mb, run_json_worker  # noqa: E402

MAX_DROP = 0.01
OUTLIER_SCALE = 100.0
TRAIN_SAMPLES, TRAIN_SEED, VALIDATION_SEED = 4000, 11, 12
TOOLS = ("pot_torch_default", "pot_torch", "nncf")
#: Ops that run in INT8 when all their inputs are quantized; the others of a model never do.
QUANTIZABLE = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
               "MatMul")
#: Ops a FakeQuantize output may pass through on its way to the layer it quantizes (INT8 flows through them).
PASS_THROUGH = ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "MaxPool")


# --------------------------------------------------------------------------------------------------- model
def build_model(steps: int) -> ov.Model:
    """Train the narrow no-BatchNorm CNN, give two activations an outlier channel, convert to OpenVINO."""
    import torch
    from torch import nn

    from pot_torch_showcase.synthetic import shapes_dataset, train_classifier

    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
        nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10),
    )
    train_classifier(net, shapes_dataset(TRAIN_SAMPLES, TRAIN_SEED), steps=steps, seed=0, lr=4e-3)
    with torch.no_grad():
        for producer, consumer in ((net[0], net[2]), (net[4], net[7])):  # (a max-pool between keeps it exact)
            channel = int(producer.weight.abs().sum(dim=(1, 2, 3)).argmax())  # an active channel
            producer.weight[channel] *= OUTLIER_SCALE
            producer.bias[channel] *= OUTLIER_SCALE
            consumer.weight[:, channel] /= OUTLIER_SCALE
    model = ov.convert_model(net, example_input=torch.zeros(1, 3, 32, 32), input=[1, 3, 32, 32])
    model.set_friendly_name("narrow_cnn_outliers")
    return model


def validation_data(samples: int):
    """``(images [n, 1, 3, 32, 32], labels [n])``: the validation set both tools use (batch-1 items)."""
    from pot_torch_showcase.synthetic import shape_images

    images, labels = shape_images(samples, VALIDATION_SEED)
    return images[:, None], labels


def top1(compiled: ov.CompiledModel, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample hit (1.0/0.0) of ``compiled``, one inference per image on the compiled model's optimal number
    of parallel requests (no Python callbacks: they deadlock when NNCF calls this from its own threads)."""
    requests = [compiled.create_infer_request()
                for _ in range(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))]
    hits = np.zeros(len(images))
    for first in range(0, len(images), len(requests)):
        batch = range(first, min(first + len(requests), len(images)))
        for request, index in zip(requests, batch):
            request.start_async({0: images[index]})
        for request, index in zip(requests, batch):
            request.wait()
            hits[index] = float(np.argmax(request.get_output_tensor(0).data) == labels[index])
    return hits


def compile_default(model: ov.Model, core: Optional[ov.Core] = None) -> ov.CompiledModel:
    """Compile for evaluation: throughput hint, the CPU's default inference precision (bf16 here); one stream
    where the CPU plugin's stream race could give wrong weights (NNCF's INT8-weight models, docs/cpu-plugin-bugs.md)."""
    return compile_avoiding_stream_race(core or ov.Core(), model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})[0]


# ------------------------------------------------------------------------------------------- IR counting
def _quantized_source(source: ov.Output) -> bool:
    """True if ``source`` is a FakeQuantize output or an INT8 weight (int8/uint8 Constant -> Convert -> ...),
    possibly through ops INT8 data flows through."""
    node = source.get_node()
    while node.get_type_name() in PASS_THROUGH or (node.get_type_name() in ("Subtract", "Multiply") and  # dequantize
                                                   node.input_value(1).get_node().get_type_name() == "Constant"):
        if node.get_type_name() == "Convert" and node.input_value(0).get_node().get_type_name() == "Constant":
            return node.input_value(0).get_element_type() in (ov.Type.i8, ov.Type.u8)
        node = node.input_value(0).get_node()
    return node.get_type_name() == "FakeQuantize"


def layers_left_in_fp(model: ov.Model) -> List[str]:
    """Quantizable ops (Convolution, MatMul, ...) not all of whose inputs are quantized, in a saved IR (weights
    of quantized layers stored as INT8 constants, activations through FakeQuantize)."""
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZABLE
            and not all(_quantized_source(op.input_value(i)) for i in range(op.get_input_size()))]


def count_quantizers(model: ov.Model) -> str:
    """``'<FakeQuantize ops>+<INT8 weight constants>'`` of a saved IR."""
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    weights = sum(op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.i8, ov.Type.u8)
                  for op in model.get_ops())
    return f"{fake_quantize}+{weights}"


# ------------------------------------------------------------------------------------------------ workers
def _quantize_nncf(model: ov.Model, images: np.ndarray, labels: np.ndarray, subset: int) -> Dict:
    import nncf

    core = ov.Core()
    evaluations = []

    def validation_fn(candidate: ov.Model, items) -> tuple:
        # NNCF hands over the model compiled by itself (at f32, latency hint); run it on an async queue
        compiled = candidate if isinstance(candidate, ov.CompiledModel) else compile_default(candidate, core)
        data = list(items)
        hits = top1(compiled, np.stack([x for x, _ in data]), np.array([y for _, y in data]))
        evaluations.append(len(data))
        return float(hits.mean()), hits.tolist()

    calibration = nncf.Dataset([images[i] for i in range(subset)])
    validation = nncf.Dataset(list(zip(images, labels)))
    start = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        model, calibration_dataset=calibration, validation_dataset=validation, validation_fn=validation_fn,
        max_drop=MAX_DROP, drop_type=nncf.DropType.ABSOLUTE, subset_size=subset)
    seconds = time.perf_counter() - start
    return {"model": quantized, "seconds": seconds, "evaluated_samples": int(sum(evaluations))}


def _pot_torch_engine(images: np.ndarray, labels: np.ndarray, config: Optional[Dict] = None):
    from pot_torch import DataLoader, IEEngine, Metric

    class Loader(DataLoader):
        """Validation items ``(image, label)``."""

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int):
            return images[index], int(labels[index])

    class Top1(Metric):
        """Top-1 accuracy as a fraction; ``value`` gives the hits of the last batch, one per sample."""

        def __init__(self) -> None:
            self.evaluated = 0
            super().__init__()

        def reset(self) -> None:
            self._hits: List[float] = []
            self._last: List[float] = []

        def update(self, output, target) -> None:
            self._last = (np.argmax(output[0].reshape(len(target), -1), axis=1) == np.asarray(target)).tolist()
            self._hits.extend(self._last)
            self.evaluated += len(self._last)

        @property
        def value(self):
            return {"accuracy": [float(v) for v in self._last]}

        @property
        def avg_value(self):
            return {"accuracy": float(np.mean(self._hits))}

        def get_attributes(self):
            return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}

    metric = Top1()
    return IEEngine({"device": "CPU", **(config or {})}, Loader({}), metric), metric


def _quantize_pot_torch(model: ov.Model, images: np.ndarray, labels: np.ndarray, subset: int,
                        accuracy_aware: bool = True) -> Dict:
    from pot_torch import CompressedModel, compress_model_weights, create_pipeline

    engine, metric = _pot_torch_engine(images, labels)
    params = {"target_device": "CPU", "preset": "performance", "stat_subset_size": subset}
    if accuracy_aware:
        algorithm = {"name": "AccuracyAwareQuantization",
                     "params": {**params, "maximal_drop": MAX_DROP, "drop_type": "absolute"}}
    else:
        algorithm = {"name": "DefaultQuantization", "params": params}
    start = time.perf_counter()
    pipeline = create_pipeline([algorithm], engine)
    quantized = pipeline.run(CompressedModel(model))
    seconds = time.perf_counter() - start
    compress_model_weights(quantized)  # INT8 weights in the IR, as a POT script saves them (and NNCF returns)
    return {"model": quantized.get_model(), "seconds": seconds, "evaluated_samples": metric.evaluated}


def run_worker(tool: str, fp_xml: Path, out_xml: Path, samples: int, subset: int) -> Dict:
    """Quantize with ``tool`` in this process, save the IR; returns the figures of the run."""
    import logging

    if tool == "nncf":
        import nncf  # noqa: F401  (imported before the clock starts, like pot_torch below)
        logging.getLogger("nncf").setLevel(logging.WARNING)
    else:
        import pot_torch  # noqa: F401
    model = ov.Core().read_model(fp_xml)
    images, labels = validation_data(samples)
    if tool == "nncf":
        result = _quantize_nncf(model, images, labels, subset)
    else:
        result = _quantize_pot_torch(model, images, labels, subset, accuracy_aware=tool == "pot_torch")
    ov.save_model(result.pop("model"), out_xml, compress_to_fp16=False)  # weights of FakeQuantize become INT8
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def quantize_in_subprocess(tool: str, fp_xml: Path, out_xml: Path, samples: int, subset: int) -> Dict:
    """``run_worker`` in a fresh interpreter; its result dict, or ``{'error': message}``."""
    cmd = [sys.executable, __file__, "--worker", tool, "--fp-xml", str(fp_xml), "--out-xml", str(out_xml),
           "--samples", str(samples), "--subset", str(subset)]
    return run_json_worker(cmd, tool)


# --------------------------------------------------------------------------------------------------- main
def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown_table(rows: Sequence[Dict]) -> str:
    """The benchmark table, one row per tool."""
    lines = ["| model | tool | FP top-1 | INT8 top-1 | drop | met (<= 0.01)? | layers left in FP | FakeQuantize + INT8 weights "
             "| INT8 latency, ms | quantization wall time, s | peak RSS, MB | samples through the metric | note |",
             "|" + "---|" * 13]
    for r in rows:
        drop = None if r.get("int8") is None else r["fp"] - r["int8"]
        met = "" if drop is None or r["tool"] == "FP32 IR" else ("yes" if drop <= MAX_DROP + 1e-12 else "no")
        layers = r.get("layers_fp")
        names = f" ({', '.join(layers)})" if layers and r["tool"] != "FP32 IR" else ""
        lines.append(
            f"| {r['model']} | {r['tool']} | {_fmt(r.get('fp'), '.4f')} | {_fmt(r.get('int8'), '.4f')} | "
            f"{_fmt(drop, '+.4f')} | {met} | "
            f"{'' if layers is None else len(layers)}{names} | "
            f"{r.get('fq', '')} | {_fmt(r.get('latency_ms'), '.3f')} | {_fmt(r.get('seconds'), '.1f')} | "
            f"{_fmt(r.get('peak_rss_mb'), '.0f')} | {_fmt(r.get('evaluated_samples'), 'd')} | "
            f"{r.get('error', '')} |")
    return "\n".join(lines)


def bar_lines(rows: Sequence[Dict], latency_ratio: Optional[float]) -> List[str]:
    """issue 4's bars for pot_torch AccuracyAwareQuantization against NNCF, each with its figures."""
    by_tool = {r["tool"]: r for r in rows}
    pot, nncf = by_tool.get("pot_torch", {}), by_tool.get("nncf", {})
    if "int8" not in pot or "int8" not in nncf:
        return ["bars: not evaluated (a tool failed)"]
    drop = pot["fp"] - pot["int8"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"- drop within maximal_drop: {drop:+.4f} <= {MAX_DROP}: {verdict(drop <= MAX_DROP + 1e-12)}",
        f"- layers left in FP: pot_torch {len(pot['layers_fp'])}, NNCF {len(nncf['layers_fp'])}: "
        f"{verdict(len(pot['layers_fp']) <= len(nncf['layers_fp']))}",
        f"- INT8 latency pot_torch / NNCF (median over rounds of the same-round ratio): {latency_ratio:.3f}: "
        f"{verdict(latency_ratio <= 1.05)}",
        f"- wall time: pot_torch {pot['seconds']:.1f} s, NNCF {nncf['seconds']:.1f} s: "
        f"{verdict(pot['seconds'] <= nncf['seconds'])}",
    ]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="validation samples (default 1000)")
    parser.add_argument("--subset", type=int, default=300, help="calibration samples (default 300)")
    parser.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="INFERENCE_NUM_THREADS for latency (default 1)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where IRs go (default: a temp dir)")
    parser.add_argument("--model-xml", type=Path, default=None,
                        help="reuse the FP IR an earlier run wrote to --work-dir instead of training again")
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--fp-xml", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-xml", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.fp_xml, args.out_xml, args.samples, args.subset)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp_xml = work / "narrow_cnn_fp32.xml"
        if args.model_xml is not None:
            fp_model = ov.Core().read_model(args.model_xml)
        else:
            start = time.perf_counter()
            fp_model = build_model(args.steps)
            print(f"trained and converted the model in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        ov.save_model(fp_model, fp_xml, compress_to_fp16=False)
        images, labels = validation_data(args.samples)
        core = ov.Core()
        fp_top1 = float(top1(compile_default(fp_model, core), images, labels).mean())
        rows: List[Dict] = [{"model": "narrow_cnn_outliers", "tool": "FP32 IR", "fp": fp_top1, "int8": fp_top1,
                             "layers_fp": layers_left_in_fp(fp_model), "fq": "0+0"}]
        variants = {"FP32 IR": fp_model}
        for tool in TOOLS:
            out_xml = work / f"narrow_cnn_{tool}.xml"
            row = {"model": "narrow_cnn_outliers", "tool": tool, "fp": fp_top1,
                   **quantize_in_subprocess(tool, fp_xml, out_xml, args.samples, args.subset)}
            if "error" not in row:
                quantized = core.read_model(out_xml)
                row["int8"] = float(top1(compile_default(quantized, core), images, labels).mean())
                row.update(layers_fp=layers_left_in_fp(quantized), fq=count_quantizers(quantized))
                variants[tool] = quantized
            rows.append(row)
            print(f"{tool} done", file=sys.stderr)
        timings = latency.compare_latency(variants, images[0], precision="bf16", rounds=args.rounds,
                                          threads=args.threads)
        for row in rows:
            if row["tool"] in timings:
                row["latency_ms"] = timings[row["tool"]].median_ms
        ratio = latency.paired_speedup(timings, "nncf", "pot_torch") if {"nncf", "pot_torch"} <= set(timings) \
            else None
        bars = bar_lines(rows, ratio)
    names = {"pot_torch_default": "pot_torch DefaultQuantization", "pot_torch": "pot_torch AccuracyAwareQuantization",
             "nncf": "nncf.quantize_with_accuracy_control"}
    for row in rows:
        row["tool"] = names.get(row["tool"], row["tool"])
    print(f"\n{args.samples} validation samples (also the data of the accuracy search), first {args.subset} for "
          f"calibration; maximal_drop {MAX_DROP} absolute on top-1 (fraction). Accuracy measured at the CPU's "
          f"default precision ({core.get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}); latency: LATENCY hint, "
          f"batch 1, bf16, {args.threads} inference thread(s), {args.rounds} interleaved rounds, median.\n")
    print(markdown_table(rows))
    print("\nissue 4 bars (pot_torch AccuracyAwareQuantization vs nncf.quantize_with_accuracy_control):")
    print("\n".join(bars))


if __name__ == "__main__":
    main()
