"""Fast vs full bias correction on the BERT-style encoder, over weight seeds; pot_torch and NNCF; one table.

    /work/venv/bin/python benchmarks/bench_bias_correction.py                # seeds 0-4, both tools
    /work/venv/bin/python benchmarks/bench_bias_correction.py --seeds 0 --methods pot_torch_fast,pot_torch_full

Why: the encoder's output quality is a 2-logit vector, so its cosine similarity to FP32 on one weight seed
moves by 1e-6 with which biases a threshold lets through (docs/int8-placement-findings.md, section 7). This
script shows, over several random-weight encoders of the same architecture, what ``use_fast_bias`` changes
(pot_torch's ``model_type: transformer`` default is the full ``BiasCorrection``) and how NNCF's
``fast_bias_correction`` compares on the same data. Everything runs in this process with 300 calibration
sequences and 200 evaluation sequences.

Columns per seed and method: mean output cosine similarity to the FP32 model run at f32, and the output's
relative mean squared error (``mean((y - y_fp)^2) / mean(y_fp^2)``), both with the quantized model at the
CPU's default inference precision (bf16 here) and at f32 (quantization error alone); quantization wall time.
The last rows give each method's mean relative error over the seeds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
import model_zoo  # noqa: E402
from bench_quantization import (add_sample_arguments, mean_cosine, quantize_with_nncf,  # noqa: E402
                                quantize_with_pot_torch)

#: method label -> (tool, its bias correction setting)
METHODS = {
    "pot_torch_fast": ("pot_torch", {"use_fast_bias": True}),
    "pot_torch_full": ("pot_torch", {"use_fast_bias": False}),
    "nncf_fast": ("nncf", {"fast_bias_correction": True}),
    "nncf_full": ("nncf", {"fast_bias_correction": False}),
}


def output_errors(model: ov.Model, items, references: np.ndarray, precision: Optional[str]) -> Dict[str, float]:
    """Mean cosine similarity and relative MSE of ``model``'s outputs against ``references``."""
    compiled = latency.compile_for(model, precision)
    outputs = np.stack([compiled(x)[0].ravel() for x, _ in items])
    return {"cos": mean_cosine(outputs, references),
            "rel_mse": float(np.mean((outputs - references) ** 2) / np.mean(references ** 2))}


def bench_seed(seed: int, methods: List[str], work: Path, samples: int, eval_samples: Optional[int]) -> List[Dict]:
    """Quantize the encoder built from weight ``seed`` with every method; one row dict per method."""
    zoo = model_zoo.build_bert_tiny(seed=seed)
    fp_xml = work / f"bert_s{seed}_fp32.xml"
    ov.save_model(zoo.model, fp_xml, compress_to_fp16=False)
    items = zoo.evaluation(eval_samples or zoo.eval_samples)
    reference = latency.compile_for(zoo.model, "f32")
    references = np.stack([reference(x)[0].ravel() for x, _ in items])
    rows = []
    for method in methods:
        tool, setting = METHODS[method]
        out_xml = work / f"bert_s{seed}_{method}.xml"
        start = time.perf_counter()
        if tool == "nncf":
            quantize_with_nncf("bert_tiny", fp_xml, out_xml, samples, **setting)
        else:
            quantize_with_pot_torch("bert_tiny", fp_xml, out_xml, samples, setting)
        seconds = time.perf_counter() - start
        quantized = ov.Core().read_model(out_xml)
        default = output_errors(quantized, items, references, None)
        strict = output_errors(quantized, items, references, "f32")
        rows.append({"seed": seed, "method": method, "seconds": seconds, "cos": default["cos"],
                     "rel_mse": default["rel_mse"], "cos_f32": strict["cos"], "rel_mse_f32": strict["rel_mse"]})
    return rows


def markdown_table(rows: List[Dict]) -> str:
    """Per-seed rows, then each method's mean relative errors over the seeds."""
    lines = ["| seed | method | cos (bf16) | rel. MSE (bf16) | cos (f32) | rel. MSE (f32) | quant time, s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['method']} | {r['cos']:.7f} | {r['rel_mse']:.3e} | {r['cos_f32']:.7f} | "
                     f"{r['rel_mse_f32']:.3e} | {r['seconds']:.1f} |")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        lines.append(f"| mean | {method} | {np.mean([r['cos'] for r in mine]):.7f} | "
                     f"{np.mean([r['rel_mse'] for r in mine]):.3e} | {np.mean([r['cos_f32'] for r in mine]):.7f} | "
                     f"{np.mean([r['rel_mse_f32'] for r in mine]):.3e} | "
                     f"{np.mean([r['seconds'] for r in mine]):.1f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated weight seeds (default 0-4)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)} (default: all)")
    add_sample_arguments(parser)
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    rows: List[Dict] = []
    with tempfile.TemporaryDirectory(prefix="pot_torch_bc_") as work:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += bench_seed(seed, methods, Path(work), args.samples, args.eval_samples)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
