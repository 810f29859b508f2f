"""Quantization time against its floor, one f32 inference pass over the same calibration subset; prints a table.

For each model: the floor is ``IEEngine`` compiling the FP32 model at f32 and running it once over the
``--samples`` calibration inputs (no statistics); the quantization time is pot_torch's ``DefaultQuantization``
(transformer model type for the transformers, else the performance preset) over the same inputs and engine
configuration (its statistics run at f32, the engine's ``stat_inference_precision`` default). Both are measured in
the same process, one after the other, so a machine loaded by other work slows both; ``--repeat N`` measures
N such pairs per model and reports the median ratio and the range (the table header gives the load average).
With ``--nncf`` the table also gives ``nncf.quantize``'s time on the same inputs (TRANSFORMER model type for the
transformers); with ``--two-pass`` the former schedule of the CNN recipe, ActivationChannelAlignment on its own
pass and then MinMax + FastBiasCorrection on another (the parts DefaultQuantization runs, as separate pipeline
steps), timed in the same pair. ``--profile DIR`` runs pot_torch's quantization of each model once more under
cProfile after its pairs (not timed) and writes ``DIR/<model>.prof`` (read it with ``python -m pstats``).

Bars (issue #13): quantization <= 1.5x the floor on every model at 300 samples; all-MiniLM-L6-v2 <= 0.5x NNCF.

Usage: python benchmarks/bench_quantization_time.py [--models resnet18 minilm_static ...] [--samples 300]
[--repeat 3] [--nncf] [--two-pass] [--profile DIR]
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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


#: Seconds of one run: (wall time, CPU time of this process, all its threads).
Timing = Tuple[float, float]


def _timed(run: Callable[[], Any]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def floor_seconds(model: ov.Model, items: List) -> Timing:
    """Compile ``model`` at f32 and run it once over ``items`` through ``IEEngine``."""
    from pot_torch import CompressedModel

    engine = _engine(items)
    return _timed(lambda: (engine.set_model(CompressedModel(model)), engine.predict()))


def _params(name: str, items: List) -> Dict:
    params = {"preset": "performance", "stat_subset_size": len(items)}
    if is_transformer(name):
        params["model_type"] = "transformer"
    return params


def _pipeline_seconds(algorithms: List[Dict], model: ov.Model, items: List) -> Timing:
    from pot_torch import CompressedModel, create_pipeline

    pipeline = create_pipeline(algorithms, _engine(items))
    return _timed(lambda: pipeline.run(CompressedModel(model)))


def pot_torch_seconds(name: str, model: ov.Model, items: List) -> Timing:
    """pot_torch ``DefaultQuantization`` of ``model`` over ``items``."""
    return _pipeline_seconds([{"name": "DefaultQuantization", "params": _params(name, items)}], model, items)


def two_pass_seconds(name: str, model: ov.Model, items: List) -> Optional[Timing]:
    """The CNN recipe's former schedule: ActivationChannelAlignment, then MinMaxQuantization and
    FastBiasCorrection, as pipeline steps with DefaultQuantization's parameters (``None`` for transformers)."""
    from pot_torch.algorithms.params import resolve_params, sub_params

    if is_transformer(name):
        return None
    config = resolve_params("DefaultQuantization", _params(name, items))
    return _pipeline_seconds([{"name": part, "params": dict(sub_params(config, part))} for part in
                              ("ActivationChannelAlignment", "MinMaxQuantization", "FastBiasCorrection")],
                             model, items)


def nncf_seconds(name: str, model: ov.Model, items: List) -> Timing:
    """``nncf.quantize`` of ``model`` over ``items``."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if is_transformer(name) else {}
    return _timed(lambda: nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), **kwargs))


def _median_and_range(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def measure(name: str, samples: int, repeat: int, nncf: bool, two_pass: bool, profile: Optional[Path] = None
            ) -> Dict:
    """``repeat`` pairs (floor, then each quantization) of model ``name``; per pair the seconds of each. With
    ``profile``, one more pot_torch quantization under cProfile, written to ``profile/<name>.prof``."""
    items, model = calibration_data(name, samples), fp_model(name)
    row: Dict = {"model": name, "floor": [], "pot_torch": [], "nncf": [], "two_pass": []}
    for _ in range(repeat):
        row["floor"].append(floor_seconds(model.clone(), items))
        row["pot_torch"].append(pot_torch_seconds(name, model.clone(), items))
        if two_pass and not is_transformer(name):
            row["two_pass"].append(two_pass_seconds(name, model.clone(), items))
        if nncf:
            row["nncf"].append(nncf_seconds(name, model.clone(), items))
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        profiler = cProfile.Profile()
        profiler.runcall(pot_torch_seconds, name, model.clone(), items)
        profiler.dump_stats(str(profile / f"{name}.prof"))
    return row


def _ratios(row: Dict, key: str, base: str = "floor", clock: int = 0) -> List[float]:
    """Per pair, ``key``'s time over ``base``'s, by wall time (``clock`` 0) or process CPU time (1)."""
    return [value[clock] / reference[clock] for value, reference in zip(row[key], row[base])]


def _median_seconds(row: Dict, key: str) -> float:
    return statistics.median(wall for wall, _ in row[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs per model (median and range shown)")
    parser.add_argument("--nncf", action="store_true", help="also time nncf.quantize")
    parser.add_argument("--two-pass", action="store_true",
                        help="also time the former two-pass schedule of the CNN recipe (CNNs only)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one pot_torch quantization per model into DIR/<model>.prof (not timed)")
    args = parser.parse_args()
    logging.getLogger("pot_torch").setLevel(logging.ERROR)
    load_before = os.getloadavg()
    rows: List[Dict] = []
    for name in args.models:
        rows.append(measure(name, args.samples, args.repeat, args.nncf, args.two_pass, args.profile))
        print(rows[-1], file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"\nQuantization time vs one f32 inference pass ({args.samples} samples, {args.repeat} pair(s) per model: "
          "the floor and the quantizations of a model measured in the same process one after the other; median "
          f"(range) of the per-pair ratios of wall time, and of the process's CPU time (all threads; less "
          f"sensitive to other work on the machine); {os.cpu_count()} cores, load average {load_before[0]:.1f} "
          f"before and {load_after[0]:.1f} after)\n")
    header = ("| model | floor: f32 pass (s) | pot_torch (s) | pot_torch / floor | <= 1.5x | CPU time: pot_torch / "
              "floor |")
    if args.two_pass:
        header += " two-pass schedule (s) | two-pass / floor | CPU time: two-pass / floor |"
    if args.nncf:
        header += " nncf (s) | pot_torch / nncf |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    for row in rows:
        ratio = statistics.median(_ratios(row, "pot_torch"))
        line = (f"| {row['model']} | {_median_seconds(row, 'floor'):.1f} | {_median_seconds(row, 'pot_torch'):.1f} | "
                f"{_median_and_range(_ratios(row, 'pot_torch'))} | {'yes' if ratio <= 1.5 else 'no'} | "
                f"{_median_and_range(_ratios(row, 'pot_torch', clock=1))} |")
        if args.two_pass:
            line += (f" {_median_seconds(row, 'two_pass'):.1f} | {_median_and_range(_ratios(row, 'two_pass'))} | "
                     f"{_median_and_range(_ratios(row, 'two_pass', clock=1))} |" if row["two_pass"] else " - | - | - |")
        if args.nncf:
            line += (f" {_median_seconds(row, 'nncf'):.1f} | "
                     f"{_median_and_range(_ratios(row, 'pot_torch', 'nncf'))} |")
        print(line)


if __name__ == "__main__":
    main()
