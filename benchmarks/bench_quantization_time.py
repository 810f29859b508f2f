"""Quantization time against its floor, one f32 inference pass over the same calibration subset; prints a table.

For each model: the floor is ``IEEngine`` compiling the FP32 model at f32 and running it once over the
``--samples`` calibration inputs (no statistics); the quantization time is pot_torch's ``DefaultQuantization``
(transformer model type for the transformers, else the performance preset) over the same inputs and engine
configuration (its statistics run at f32, the engine's ``stat_inference_precision`` default). Both are measured in
the same process, one after the other, so a machine loaded by other work slows both. With ``--nncf`` the
table also gives ``nncf.quantize``'s time on the same inputs (TRANSFORMER model type for the transformers).

Bars (issue #13): quantization <= 1.5x the floor on every model at 300 samples; all-MiniLM-L6-v2 <= 0.5x NNCF.

Usage: python benchmarks/bench_quantization_time.py [--models resnet18 minilm_static ...] [--samples 300] [--nncf]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List

import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_zoo  # noqa: E402
import real_zoo  # noqa: E402
from bench_quantization import calibration_data, is_transformer  # noqa: E402

DEFAULT_MODELS = model_zoo.DEFAULT_MODELS + ("minilm_static", "minilm_dynamic")


def fp_model(name: str) -> ov.Model:
    """The FP32 model of zoo or real-zoo ``name``."""
    return real_zoo.build(name).model if name in real_zoo.BUILDERS else model_zoo.build(name).model


def _engine(items: List) -> "object":
    from pot_torch import DataLoader, IEEngine

    class Items(DataLoader):
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, index: int):
            return items[index], None

    return IEEngine({"device": "CPU", "inference_precision": "f32"}, Items(items))


def floor_seconds(model: ov.Model, items: List) -> float:
    """Compile ``model`` at f32 and run it once over ``items`` through ``IEEngine``."""
    from pot_torch import CompressedModel

    engine = _engine(items)
    start = time.perf_counter()
    engine.set_model(CompressedModel(model))
    engine.predict()
    return time.perf_counter() - start


def pot_torch_seconds(name: str, model: ov.Model, items: List) -> float:
    """pot_torch ``DefaultQuantization`` of ``model`` over ``items``."""
    from pot_torch import CompressedModel, create_pipeline

    params = {"preset": "performance", "stat_subset_size": len(items)}
    if is_transformer(name):
        params["model_type"] = "transformer"
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": params}], _engine(items))
    start = time.perf_counter()
    pipeline.run(CompressedModel(model))
    return time.perf_counter() - start


def nncf_seconds(name: str, model: ov.Model, items: List) -> float:
    """``nncf.quantize`` of ``model`` over ``items``."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if is_transformer(name) else {}
    start = time.perf_counter()
    nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--nncf", action="store_true", help="also time nncf.quantize")
    args = parser.parse_args()
    logging.getLogger("pot_torch").setLevel(logging.ERROR)
    rows: List[Dict] = []
    for name in args.models:
        items = calibration_data(name, args.samples)
        row = {"model": name, "floor": floor_seconds(fp_model(name), items)}
        row["pot_torch"] = pot_torch_seconds(name, fp_model(name), items)
        if args.nncf:
            row["nncf"] = nncf_seconds(name, fp_model(name), items)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    print(f"\nQuantization time vs one f32 inference pass ({args.samples} samples; the floor and the quantization "
          "of a model are measured in the same process one after the other; wall time on a shared machine)\n")
    header = "| model | floor: f32 pass (s) | pot_torch (s) | pot_torch / floor | <= 1.5x |"
    if args.nncf:
        header += " nncf (s) | pot_torch / nncf |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    for row in rows:
        ratio = row["pot_torch"] / row["floor"]
        line = (f"| {row['model']} | {row['floor']:.1f} | {row['pot_torch']:.1f} | {ratio:.2f} | "
                f"{'yes' if ratio <= 1.5 else 'no'} |")
        if args.nncf:
            line += f" {row['nncf']:.1f} | {row['pot_torch'] / row['nncf']:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
