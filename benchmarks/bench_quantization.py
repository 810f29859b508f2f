"""Benchmark pot_torch DefaultQuantization against nncf.quantize on the model zoo; prints one markdown table.

    /work/venv/bin/python benchmarks/bench_quantization.py                 # all zoo models, 300 samples
    /work/venv/bin/python benchmarks/bench_quantization.py --models resnet18 --threads 1
    /work/venv/bin/python benchmarks/bench_quantization.py --zoo real      # real weights (real_bench.py)

Each quantization runs in its own subprocess (``--worker``) so its wall time and peak memory (VmHWM, which
includes the interpreter, openvino and the quantizer's imports) are its own. The FP32 IR is written once to a
work directory; workers read it and regenerate the same calibration data (``model_zoo.CALIBRATION``).

Columns: quality (top-1 accuracy, or mean output cosine similarity to FP32-at-f32 for untrained models) of
the model at the CPU's default precision, its drop from FP32, INT8 latency (LATENCY hint, batch 1, interleaved
rounds, median), pot_torch's latency relative to NNCF's (median over rounds of the paired ratio; < 1 is
faster), speedup over the FP32 IR at the default precision (bf16 on this CPU) and at strict f32, the
quantization wall time and peak RSS, the IR size (xml + bin), the .bin as a percentage of the FP32 .bin and
the number of FakeQuantize nodes in the IR. Both quantizers compress their weights (pot_torch with
``compress_model_weights``); the BERT-style encoders use each tool's transformer model type (both then
default to the mixed preset; pot_torch also to the full BiasCorrection), the CNNs the performance preset.
``--models bert_base`` adds the encoder at BERT-base size (a few minutes) to check time and memory at scale.

If pot_torch's DefaultQuantization is not registered yet the pot_torch rows say so and the rest still runs.
The module also has ``strip_fake_quantize`` for placement experiments (see docs/int8-placement-findings.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from workers import peak_rss_mb, run_json_worker  # noqa: E402
import model_zoo  # noqa: E402
import real_zoo  # noqa: E402
from model_zoo import mean_cosine  # noqa: E402

METHODS = ("pot_torch", "nncf")


# ----------------------------------------------------------------------------------------------- IR helpers
def count_fake_quantize(model: ov.Model) -> int:
    """Number of FakeQuantize ops in ``model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def is_weight_fake_quantize(fq: ov.Node) -> bool:
    """True if ``fq`` quantizes a constant (a weight), possibly through Convert/Reshape."""
    source = fq.input_value(0).get_node()
    while source.get_type_name() in ("Convert", "Reshape"):
        source = source.input_value(0).get_node()
    return source.get_type_name() == "Constant"


def strip_fake_quantize(model: ov.Model, predicate: Callable[[ov.Node], bool]) -> int:
    """Bypass every FakeQuantize ``fq`` with ``predicate(fq)``: its consumers read its input instead.

    Edits ``model`` in place (pass a clone to keep the original) and returns how many were bypassed. Used to
    measure what leaving a category of layers in the FP precision costs or gains.
    """
    count = 0
    for op in list(model.get_ordered_ops()):
        if op.get_type_name() == "FakeQuantize" and predicate(op):
            op.output(0).replace(op.input_value(0))
            count += 1
    model.validate_nodes_and_infer_types()
    return count


def ir_size_bytes(xml: Path) -> int:
    """Size of an IR's .xml plus .bin."""
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


# ------------------------------------------------------------------------------------------------- workers
def is_transformer(name: str) -> bool:
    """Whether zoo or real-zoo model ``name`` is quantized with the transformer model type."""
    return name in model_zoo.TRANSFORMERS or name in real_zoo.TRANSFORMERS


def calibration_data(name: str, samples: int) -> List:
    """``samples`` calibration inputs of zoo model ``name`` (arrays) or real-zoo model ``name`` (feeds by
    input name, from its cache)."""
    return (real_zoo.calibration_items(name, samples) if name in real_zoo.BUILDERS
            else model_zoo.CALIBRATION[name](samples))


def quantize_with_nncf(name: str, fp_xml: Path, out_xml: Path, samples: int, **nncf_options) -> None:
    """``nncf.quantize`` zoo or real-zoo model ``name`` (TRANSFORMER model type for the transformers) and save
    it to ``out_xml``; ``nncf_options`` go to ``nncf.quantize`` (e.g. ``fast_bias_correction``)."""
    import nncf

    model = ov.Core().read_model(fp_xml)
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if is_transformer(name) else {}
    data = calibration_data(name, samples)
    quantized = nncf.quantize(model, nncf.Dataset(data), subset_size=samples, **kwargs, **nncf_options)
    ov.save_model(quantized, out_xml, compress_to_fp16=False)


def pot_torch_unavailable() -> Optional[str]:
    """Why pot_torch's DefaultQuantization cannot run yet, or ``None`` if it can."""
    try:
        import pot_torch
        import pot_torch.algorithms.quantization  # noqa: F401  (registers the algorithms)
        from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
    except ImportError as error:
        return f"pot_torch import failed: {error}"
    missing = [n for n in ("IEEngine", "load_model", "save_model", "compress_model_weights", "create_pipeline")
               if not hasattr(pot_torch, n)]
    if missing:
        return f"pot_torch lacks {', '.join(missing)}"
    if "DefaultQuantization" not in COMPRESSION_ALGORITHMS:
        return "DefaultQuantization is not registered"
    return None


def quantize_with_pot_torch(name: str, fp_xml: Path, out_xml: Path, samples: int,
                            extra_params: Optional[Dict] = None) -> None:
    """pot_torch DefaultQuantization of zoo or real-zoo model ``name`` (transformer model type for the
    transformers, else the performance preset), ``compress_model_weights``, saved to ``out_xml``;
    ``extra_params`` are added to the algorithm's params (e.g. ``use_fast_bias``)."""
    from pot_torch import (DataLoader, IEEngine, compress_model_weights, create_pipeline, load_model,
                           save_model)

    class CalibrationLoader(DataLoader):
        """Zoo calibration inputs as POT items ``(data, annotation)`` without annotations."""

        def __init__(self, items: List[np.ndarray]) -> None:
            super().__init__({})
            self._items = items

        def __len__(self) -> int:
            return len(self._items)

        def __getitem__(self, index: int):
            return self._items[index], None

    model = load_model({"model_name": name, "model": str(fp_xml), "weights": str(fp_xml.with_suffix(".bin"))})
    engine = IEEngine({"device": "CPU"}, CalibrationLoader(calibration_data(name, samples)))
    params = {"target_device": "CPU", "stat_subset_size": samples}
    if is_transformer(name):
        params["model_type"] = "transformer"  # default preset mixed, as NNCF's TRANSFORMER model type
    else:
        params["preset"] = "performance"
    params.update(extra_params or {})
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": params}], engine)
    quantized = pipeline.run(model)
    compress_model_weights(quantized)
    paths = save_model(quantized, str(out_xml.parent), model_name=out_xml.stem)
    written = Path(paths[0]["model"])
    if written != out_xml:
        raise RuntimeError(f"pot_torch save_model wrote {written}, expected {out_xml}")


def run_worker(method: str, name: str, fp_xml: Path, out_xml: Path, samples: int,
               pot_torch_params: Optional[Dict] = None) -> Dict[str, float]:
    """Quantize in this process; returns wall time (s) and peak RSS (MB) of the process."""
    start = time.perf_counter()
    if method == "nncf":
        quantize_with_nncf(name, fp_xml, out_xml, samples)
    else:
        quantize_with_pot_torch(name, fp_xml, out_xml, samples, pot_torch_params)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def quantize_in_subprocess(method: str, name: str, fp_xml: Path, out_xml: Path, samples: int,
                           pot_torch_params: Optional[Dict] = None) -> Dict:
    """Run ``run_worker`` in a fresh interpreter; returns its result dict or ``{'error': message}``."""
    cmd = [sys.executable, __file__, "--worker", method, "--models", name, "--fp-xml", str(fp_xml),
           "--out-xml", str(out_xml), "--samples", str(samples),
           "--pot-torch-params", json.dumps(pot_torch_params or {})]
    return run_json_worker(cmd, method)


# ------------------------------------------------------------------------------------------------- quality
def quality(model: ov.Model, zoo: model_zoo.ZooModel, references: Optional[List[np.ndarray]],
            eval_items, precision: Optional[str] = None) -> float:
    """Top-1 accuracy, or mean cosine similarity of outputs to ``references``, at inference ``precision``."""
    compiled = latency.compile_for(model, precision)
    outputs = [compiled(x)[0].ravel() for x, _ in eval_items]
    if zoo.metric == "accuracy":
        return float(np.mean([np.argmax(y) == label for y, (_, label) in zip(outputs, eval_items)]))
    return mean_cosine(np.stack(outputs), np.stack(references))


# ---------------------------------------------------------------------------------------------------- main
def bench_model(name: str, work: Path, samples: int, eval_samples: Optional[int], threads: Optional[int],
                rounds: int, pot_torch_params: Optional[Dict] = None) -> List[Dict]:
    """Quantize ``name`` with every method and measure it; returns one row dict per method."""
    zoo = model_zoo.build(name)
    fp_xml = work / f"{name}_fp32.xml"
    ov.save_model(zoo.model, fp_xml, compress_to_fp16=False)
    eval_items = zoo.evaluation(eval_samples or zoo.eval_samples)
    references = None
    if zoo.metric == "cosine":
        reference_model = latency.compile_for(zoo.model, "f32")
        references = [reference_model(x)[0].ravel() for x, _ in eval_items]
    fp_quality = quality(zoo.model, zoo, references, eval_items)
    rows, variants = [], {"fp_bf16": zoo.model, "fp_f32": zoo.model}
    for method in METHODS:
        row = {"model": name, "method": method, "fp_quality": fp_quality, "metric": zoo.metric,
               "eval_samples": len(eval_items)}
        reason = pot_torch_unavailable() if method == "pot_torch" else None
        out_xml = work / f"{name}_{method}.xml"
        result = ({"error": f"skipped: {reason}"} if reason else
                  quantize_in_subprocess(method, name, fp_xml, out_xml, samples, pot_torch_params))
        row.update(result)
        if "error" not in result:
            quantized = ov.Core().read_model(out_xml)
            row.update(quality=quality(quantized, zoo, references, eval_items), ir_mb=ir_size_bytes(out_xml) / 2**20,
                       fq=count_fake_quantize(quantized))
            variants[method] = quantized
        rows.append(row)
    example = zoo.calibration(1)[0]
    timings = latency.compare_latency(variants, example, precision=None, rounds=rounds, threads=threads,
                                      precisions={"fp_f32": "f32"})
    fp_bin = fp_xml.with_suffix(".bin").stat().st_size
    for row in rows:
        if row["method"] in timings:
            row["latency_ms"] = timings[row["method"]].median_ms
            row["vs_bf16"] = latency.paired_speedup(timings, row["method"], "fp_bf16")
            row["vs_f32"] = latency.paired_speedup(timings, row["method"], "fp_f32")
            if row["method"] != "nncf" and "nncf" in timings:
                row["vs_nncf"] = 1.0 / latency.paired_speedup(timings, row["method"], "nncf")
            row["bin_pct"] = 100.0 * (work / f"{name}_{row['method']}.bin").stat().st_size / fp_bin
    rows.insert(0, {"model": name, "method": "FP32 IR", "quality": fp_quality, "metric": zoo.metric,
                    "eval_samples": len(eval_items),
                    "fp_quality": fp_quality, "latency_ms": timings["fp_bf16"].median_ms, "vs_bf16": 1.0,
                    "vs_f32": latency.paired_speedup(timings, "fp_bf16", "fp_f32"),
                    "ir_mb": ir_size_bytes(fp_xml) / 2**20, "bin_pct": 100.0, "fq": 0})
    return rows


def fmt(value, spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec`` plus ``suffix``, or an empty table cell for ``None``."""
    return "" if value is None else format(value, spec) + suffix


def markdown_table(rows: List[Dict]) -> str:
    """The benchmark table; a failed or skipped method shows its reason in the last column."""
    header = ("| model | method | quality | drop | latency, ms | latency / NNCF | vs FP (bf16) | vs FP (f32) "
              "| quant time, s | peak RSS, MB | IR, MB | .bin, % of FP32 | FQ nodes | note |")
    lines = [header, "|" + "---|" * 14]
    for r in rows:
        metric, digits = ("acc", ".4f") if r["metric"] == "accuracy" else ("cos", ".6f")
        q = r.get("quality")
        drop = None if q is None else r["fp_quality"] - q
        lines.append(
            f"| {r['model']} | {r['method']} | {metric} {fmt(q, digits)} | {fmt(drop, '+' + digits)} | "
            f"{fmt(r.get('latency_ms'), '.3f')} | {fmt(r.get('vs_nncf'), '.3f')} | "
            f"{fmt(r.get('vs_bf16'), '.2f', 'x')} | "
            f"{fmt(r.get('vs_f32'), '.2f', 'x')} | {fmt(r.get('seconds'), '.1f')} | "
            f"{fmt(r.get('peak_rss_mb'), '.0f')} | {fmt(r.get('ir_mb'), '.2f')} | {fmt(r.get('bin_pct'), '.1f')} | "
            f"{fmt(r.get('fq'), 'd')} | {r.get('error', '')} |")
    return "\n".join(lines)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """``--samples`` (calibration, default 300) and ``--eval-samples`` (default: the zoo model's own, 2,000 for
    the accuracy model and 200 for the others), shared by the benchmarks that quantize zoo models."""
    parser.add_argument("--samples", type=int, default=300, help="calibration samples (default 300)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="evaluation samples (default: 2000 for small_cnn, 200 for the others)")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", choices=("synthetic", "real"), default="synthetic",
                        help="synthetic: model_zoo (default); real: the real-weights zoo of real_zoo.py, timed "
                             "at default precision and f32 on all cores and on 1 thread, evaluated on the "
                             "whole evaluation set unless --eval-samples is given (see real_bench.py)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated names, from {', '.join(model_zoo.ZOO)} (default: "
                             f"{', '.join(model_zoo.DEFAULT_MODELS)}) or with --zoo real from "
                             f"{', '.join(real_zoo.REAL_ZOO)} (default: all)")
    add_sample_arguments(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="INFERENCE_NUM_THREADS for latency (default: all cores; 1 is less noisy on a "
                             "shared machine); --zoo real ignores it and times both")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds (default 15)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where IRs go (default: a temp dir)")
    parser.add_argument("--pot-torch-params", type=json.loads, default={},
                        help='JSON object added to pot_torch\'s DefaultQuantization params, e.g. '
                             '\'{"use_fast_bias": false}\' (default: none)')
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--fp-xml", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-xml", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.models, args.fp_xml, args.out_xml, args.samples,
                                    args.pot_torch_params)))
        return
    zoo = real_zoo.REAL_ZOO if args.zoo == "real" else tuple(model_zoo.ZOO)
    names = args.models.split(",") if args.models else list(real_zoo.REAL_ZOO if args.zoo == "real"
                                                            else model_zoo.DEFAULT_MODELS)
    unknown = [n for n in names if n not in zoo]
    if unknown:
        parser.error(f"unknown {args.zoo}-zoo model(s) {', '.join(unknown)}; valid: {', '.join(zoo)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.zoo == "real":
            import real_bench

            print("\n" + real_bench.run(names, work, args.samples, args.eval_samples, args.rounds,
                                        args.pot_torch_params))
            return
        rows = [row for name in names
                for row in bench_model(name, work, args.samples, args.eval_samples, args.threads, args.rounds,
                                       args.pot_torch_params)]
    threads = args.threads or "all"
    evaluated = {row["model"]: row["eval_samples"] for row in rows}
    print(f"\nLATENCY hint, batch 1, {threads} inference thread(s), {args.rounds} interleaved rounds; quality "
          f"and INT8 latency at the CPU's default precision ({ov.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT').get_type_name()}); "
          f"{args.samples} calibration samples; evaluation samples: "
          f"{', '.join(f'{name} {count}' for name, count in evaluated.items())}"
          f"{'; pot_torch params ' + json.dumps(args.pot_torch_params) if args.pot_torch_params else ''}.\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
