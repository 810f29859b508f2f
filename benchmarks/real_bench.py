"""``bench_quantization.py --zoo real``: pot_torch DefaultQuantization vs nncf.quantize on the real-weights zoo
(``real_zoo``), both at their defaults for the model type, on the same calibration data.

Per model: quality metrics of the FP IR and each INT8 IR at the CPU's default precision (bf16 here) and at f32,
both against the FP32 model at f32; quantization wall time and peak RSS (each in its own worker process, as in
``bench_quantization``); latency with the LATENCY hint (batch 1, what ``benchmark_app -hint latency`` does) in
three settings: default precision on all cores (the headline), f32 on all cores, default precision on 1 thread.
Every setting times all variants in interleaved rounds, including the pot_torch INT8 IR compiled a second time
as its own entry; the row "noise" gives that twin's per-round time ratio to pot_torch as
``median [min, max]``: a pot_torch / NNCF ratio inside that band is a tie.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import openvino as ov

import latency
import real_zoo
from bench_quantization import (METHODS, count_fake_quantize, fmt, ir_size_bytes, pot_torch_unavailable,
                                quantize_in_subprocess)

#: ``label: (INFERENCE_PRECISION_HINT, INFERENCE_NUM_THREADS)``; ``None`` is the plugin default.
SETTINGS: Dict[str, Tuple[Optional[str], Optional[int]]] = {
    "default": (None, None), "f32": ("f32", None), "default_1t": (None, 1)}
TWIN = "pot_torch_twin"


def evaluate(model: ov.Model, real: real_zoo.RealModel, items: List[real_zoo.Item],
             references: List[np.ndarray]) -> Dict[str, Dict[str, float]]:
    """``real.metrics`` of ``model`` on ``items``: ``{'metrics': at the CPU's default precision,
    'metrics_f32': at f32}`` (f32 shows the quantization's own error, without bf16's)."""
    out = {}
    for key, precision in (("metrics", None), ("metrics_f32", "f32")):
        compiled = latency.compile_for(model, precision)
        out[key] = real.metrics([compiled(item)[0] for item in items], references)
    return out


def latency_example(items: List[real_zoo.Item]) -> real_zoo.Item:
    """The evaluation feed of median size (for the dynamic-shape model: a median-length sentence)."""
    sizes = [sum(v.size for v in item.values()) for item in items]
    return items[int(np.argsort(sizes)[len(sizes) // 2])]


def _round_ratios(rounds_ms: Dict[str, List[float]], label: str, baseline: str) -> List[float]:
    """Per-round ``label`` time / ``baseline`` time."""
    return [v / b for v, b in zip(rounds_ms[label], rounds_ms[baseline])]


def bench_real_model(name: str, work: Path, samples: int, eval_samples: Optional[int], rounds: int,
                     pot_torch_params: Optional[Dict] = None) -> List[Dict]:
    """Quantize real-zoo model ``name`` with both tools and measure it; returns the FP row, one row per
    method and the noise row."""
    real = real_zoo.build(name)
    items = real.evaluation[:eval_samples] if eval_samples else real.evaluation
    fp_model = real.model
    reference_model = latency.compile_for(fp_model, "f32")
    references = [reference_model(item)[0] for item in items]
    base = {"model": name, "weights": real.weights, "eval_samples": len(items)}
    rows = [{**base, "method": "FP32 IR", **evaluate(fp_model, real, items, references),
             "ir_mb": ir_size_bytes(real.xml) / 2**20, "fq": 0}]
    variants = {"fp": fp_model}
    for method in METHODS:
        reason = pot_torch_unavailable() if method == "pot_torch" else None
        out_xml = work / f"{name}_{method}.xml"
        result = ({"error": f"skipped: {reason}"} if reason else
                  quantize_in_subprocess(method, name, real.xml, out_xml, samples, pot_torch_params))
        row = {**base, "method": method, **result}
        if "error" not in result:
            quantized = ov.Core().read_model(out_xml)
            row.update(evaluate(quantized, real, items, references), fq=count_fake_quantize(quantized),
                       ir_mb=ir_size_bytes(out_xml) / 2**20)
            variants[method] = quantized
        rows.append(row)
    if "pot_torch" in variants:
        variants[TWIN] = variants["pot_torch"]  # compiled again: the same IR timed as a second entry
    noise = {**base, "method": "noise (pot_torch IR vs itself)"}
    example = latency_example(items)
    by_method = {row["method"]: row for row in rows}
    by_method["fp"] = rows[0]
    for setting, (precision, threads) in SETTINGS.items():
        timings = latency.compare_latency(variants, example, precision=precision, threads=threads, rounds=rounds)
        rounds_ms = {label: result.rounds_ms for label, result in timings.items()}
        for label, result in timings.items():
            if label in by_method:
                by_method[label][f"{setting}_ms"] = result.median_ms
        if "pot_torch" in timings and "nncf" in timings:
            by_method["pot_torch"][f"{setting}_vs_nncf"] = statistics.median(
                _round_ratios(rounds_ms, "pot_torch", "nncf"))
        if TWIN in timings:
            ratios = _round_ratios(rounds_ms, TWIN, "pot_torch")
            noise[f"{setting}_ms"] = timings[TWIN].median_ms
            noise[f"{setting}_band"] = (statistics.median(ratios), min(ratios), max(ratios))
    return rows + [noise]


def _metrics_text(metrics: Optional[Dict[str, float]]) -> str:
    return "" if not metrics else ", ".join(f"{key} {value:.4f}" if value < 0.99 else f"{key} {value:.6f}"
                                            for key, value in metrics.items())


def _ratio_text(row: Dict, setting: str) -> str:
    band = row.get(f"{setting}_band")
    if band is not None:
        return f"{band[0]:.3f} [{band[1]:.3f}, {band[2]:.3f}]"
    return fmt(row.get(f"{setting}_vs_nncf"), ".3f")


def markdown_table(rows: List[Dict]) -> str:
    """The real-zoo table: one line per FP IR, method and noise row."""
    header = ("| model | method | metrics at default precision (vs FP32 at f32) | metrics at f32 "
              "| quant time, s | peak RSS, MB "
              "| ms, default prec., all cores | pot/NNCF (noise: twin/pot) | ms, f32, all cores | pot/NNCF f32 "
              "| ms, default prec., 1 thread | pot/NNCF 1 thread | IR, MB | FQ | note |")
    lines = [header, "|" + "---|" * 15]
    for r in rows:
        cells = [r["model"], r["method"], _metrics_text(r.get("metrics")), _metrics_text(r.get("metrics_f32")),
                 fmt(r.get("seconds"), ".1f"),
                 fmt(r.get("peak_rss_mb"), ".0f")]
        for setting in SETTINGS:
            cells += [fmt(r.get(f"{setting}_ms"), ".3f"), _ratio_text(r, setting)]
        cells += [fmt(r.get("ir_mb"), ".2f"), fmt(r.get("fq"), "d"), r.get("error", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(names: List[str], work: Path, samples: int, eval_samples: Optional[int], rounds: int,
        pot_torch_params: Optional[Dict] = None) -> str:
    """Benchmark the real-zoo models ``names``; returns the heading line and the markdown table."""
    rows = [row for name in names
            for row in bench_real_model(name, work, samples, eval_samples, rounds, pot_torch_params)]
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    weights = "; ".join(dict.fromkeys(f"{r['model']}: {r['weights']} weights, {r['eval_samples']} eval items"
                                      for r in rows))
    return (f"LATENCY hint, batch 1, {rounds} interleaved rounds per setting; default precision here is "
            f"{default}; {samples} calibration samples; {weights}.\n\n{markdown_table(rows)}")
