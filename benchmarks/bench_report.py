"""Quantization report benchmark (issue #15's bars) on outlier-channel CNNs.

    .venv/bin/python benchmarks/bench_report.py --model-xml /tmp/acc/narrow_cnn_fp32.xml   # reuse a trained IR
    .venv/bin/python benchmarks/bench_report.py                                            # train it first

Two models, both the narrow no-BatchNorm CNN of bench_accuracy_control.py (trained there, or read with
``--model-xml``):

- ``outliers x100``: as bench_accuracy_control.py made it: two ReLU outputs with an outlier channel (x100);
- ``graded outliers``: the same network with four outlier channels of graded scales (``GRADED_SCALES``, one per
  pair of consecutive convolutions), made by the same exact rescaling applied to the IR's constants (a ReLU
  output channel and its convolution's weights and bias times ``s``, the next convolution's weights for that
  channel divided by ``s``; outputs equal to 1e-7), so that several groups each cost a clear amount.

For each: the report (``pot_torch.report.build_report``); the effect of reverting each quantizer group alone on
the whole validation set (per sample, metric and outputs, so the rank correlation of other ranking samples can be
computed from it: AccuracyAwareQuantization's hardest samples, and the report's design drawn with 20 other seeds,
ranked by output closeness to FP as the report does and by the top-1 estimate); and AccuracyAwareQuantization
with the same data, metric and ``maximal_drop``. The cost bar compares the report's own evaluations (besides FP
and INT8 on all items, which a caller such as AccuracyAwareQuantization hands over) with one
AccuracyAwareQuantization ranking step. Calibration statistics come from a
metric-free engine over the first ``--subset`` validation items, so "samples through the metric" counts
evaluations only. Metric at the CPU's
default precision (bf16 here); latency at bf16, LATENCY hint, 1 thread. The bars are checked on the graded model.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy_control import MAX_DROP, _pot_torch_engine, build_model, validation_data  # noqa: E402

#: The convolutions of the narrow CNN, in order; each consecutive pair shares one outlier channel.
CONVS = [f"__module.{i}/aten::_convolution/Convolution" for i in (0, 2, 4, 7, 10)]
#: bench_accuracy_control.py's outliers: pairs 0 and 2 at x100.
BASE_SCALES = {0: 100.0, 2: 100.0}
#: The graded model's outlier scale per pair.
GRADED_SCALES = {0: 300.0, 1: 200.0, 2: 120.0, 3: 60.0}
RANDOM_DRAWS = 20  # other seeds of the report's ranking sample


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values: Sequence[float]) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        result = np.empty(len(values))
        result[np.argsort(values, kind="stable")] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):
            result[values == value] = result[values == value].mean()
        return result

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def graded_outliers(model: ov.Model, scales: Dict[int, float]) -> ov.Model:
    """A clone of the narrow CNN whose pair ``p`` (``CONVS[p]`` -> ``CONVS[p + 1]``) has outlier scale
    ``scales[p]`` on the producer's channel with the largest weights (an exact rescaling of the constants)."""
    from pot_torch.graph.constants import constant_source
    from pot_torch.graph.editor import find_op, replace_constant
    from pot_torch.graph.layer_patterns import find_bias_add

    model = model.clone()
    for pair, scale in scales.items():
        producer, consumer = find_op(model, CONVS[pair]), find_op(model, CONVS[pair + 1])
        weights = constant_source(producer.input_value(1))
        channel = int(np.abs(weights.get_data()).sum(axis=(1, 2, 3)).argmax())
        factor = scale / BASE_SCALES.get(pair, 1.0)
        values = weights.get_data().copy()
        values[channel] *= factor
        replace_constant(weights, values)
        bias = find_bias_add(producer)
        per_channel = bias.per_channel().copy()
        per_channel[channel] *= factor
        bias.set_value(per_channel)
        consumer_weights = constant_source(consumer.input_value(1))
        values = consumer_weights.get_data().copy()
        values[:, channel] /= factor
        replace_constant(consumer_weights, values)
    return model


def run_model(label: str, fp_model: ov.Model, images: np.ndarray, labels: np.ndarray, subset: int,
              html: Optional[Path], engine_config: Optional[Dict] = None, report_seeds: int = 0) -> Dict:
    """The report, the measured revert-alone effects, AccuracyAwareQuantization, and ``report_seeds`` more
    reports (seeds 1..) on one model."""
    from pot_torch import CompressedModel, DataLoader, IEEngine
    from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization, Candidate
    from pot_torch.algorithms.quantization.accuracy_evaluation import choose_metric, evaluate, hardest_samples
    from pot_torch.algorithms.quantization.layer_revert import reverted
    from pot_torch.report import build_report, write_report
    from pot_torch.report.build import _groups
    from pot_torch.report.impact import cosine, evaluate_outputs, ranking_sample

    class Calibration(DataLoader):
        """The first ``subset`` validation images, no metric."""

        def __len__(self) -> int:
            return subset

        def __getitem__(self, index: int):
            return images[index], int(labels[index])

    model = CompressedModel(fp_model)
    calibration = IEEngine({"device": "CPU"}, Calibration({}))
    params = {"target_device": "CPU", "preset": "performance", "stat_subset_size": subset,
              "maximal_drop": MAX_DROP, "drop_type": "absolute"}

    def one_report(seed: int):
        engine, metric = _pot_torch_engine(images, labels, engine_config)
        start = time.perf_counter()
        report = build_report(model, engine, {**params, "seed": seed}, calibration,
                              latency_rounds=5 if seed == 0 else 1)
        return report, time.perf_counter() - start, metric.evaluated

    report, seconds, evaluated = one_report(0)
    result = {"label": label, "report": report, "report_seconds": seconds, "report_samples": evaluated}
    if html:
        write_report(report, html, overwrite=True)
    others = [one_report(seed)[0] for seed in range(1, report_seeds + 1)]

    engine, metric = _pot_torch_engine(images, labels, engine_config)
    search = AccuracyAwareQuantization(params, engine, calibration)
    spec = choose_metric(engine, None)
    int8 = search.default_quantization(model, {})
    biases = search.biases_before_correction(model, Candidate(int8, 0.0, 0.0))
    indices = list(range(len(images)))
    # the measured effect at the evaluation precision; outputs (the report's ranking) at the statistics precision
    models = [model, int8] + [reverted(int8, [group], biases) for group in _groups(search, int8)]
    values = [evaluate(engine, m, spec, indices, per_sample=True)[1] for m in models]
    fp, quantized, *alone = [evaluate_outputs(engine, m, spec, indices) for m in models]
    deltas = np.array([v - values[1] for v in values[2:]])
    measured = deltas.mean(axis=1)
    ranked = np.array([r.values - quantized.values for r in alone])
    closer = np.array([cosine(r.outputs, fp.outputs) - cosine(quantized.outputs, fp.outputs) for r in alone])
    hardest = hardest_samples(spec, values[0], values[1], indices, 300)
    draws, draws_metric = [], []
    for seed in range(1, RANDOM_DRAWS + 1):  # the report's design with other seeds
        sample = ranking_sample(hardest, indices, report.ranking_samples, seed)
        draws.append(spearman([sample.estimate(dict(enumerate(row))) for row in closer], measured))
        draws_metric.append(spearman([sample.estimate(dict(enumerate(row))) for row in ranked], measured))

    def measured_drop(r) -> float:  # the recommended set on all items, measured here (not counted as the report's)
        chosen = reverted(int8, [_groups(search, int8)[i] for i in r.recommended], biases)
        return r.drop(evaluate(engine, chosen, spec, indices)[0])

    result.update(rec_drop=measured_drop(report), seeds=[
        {"rho": spearman([g.closeness for g in r.groups], measured), "groups": len(r.recommended),
         "drop": measured_drop(r), "basis": r.recommended_basis, "own": r.own_evaluations} for r in others])
    result.update(measured=measured, rho=spearman([g.closeness for g in report.groups], measured),
                  rho_metric=spearman([g.impact for g in report.groups], measured),
                  rho_hardest=spearman(deltas[:, hardest].mean(axis=1), measured), rho_draws=draws,
                  rho_draws_metric=draws_metric)

    engine, metric = _pot_torch_engine(images, labels, engine_config)
    aaq = AccuracyAwareQuantization(params, engine, calibration)
    start = time.perf_counter()
    aaq.run(model)
    result.update(aaq_seconds=time.perf_counter() - start, aaq_samples=metric.evaluated,
                  aaq_groups=len(aaq.reverted_layers), aaq_drop=aaq.final_drop,
                  aaq_ranking=len(_groups(search, int8)) * len(hardest))
    with tempfile.TemporaryDirectory() as folder:  # the report of an AccuracyAwareQuantization run (report_path)
        engine, metric = _pot_torch_engine(images, labels, engine_config)
        path = Path(folder) / "report.html"
        AccuracyAwareQuantization({**params, "report_path": str(path)}, engine, calibration).run(model)
        result["aaq_report"] = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return result


def _error(report) -> str:
    return "" if report.recommended_error is None else f" +- {report.recommended_error:.4f}"


def print_model(result: Dict) -> None:
    """The per-group table of one model and its bars."""
    report = result["report"]
    print(f"\n### {result['label']}\n")
    print("| group | layers | SQNR, dB | report: output closeness to FP gained (est., the ranking) | report: top-1 "
          "gained (est.) | measured revert-alone top-1 effect (all) | INT8 µs | saved vs FP, µs | outlier ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g, effect in zip(report.groups, result["measured"]):
        print(f"| #{g.index} | {', '.join(g.layers)} | {g.sqnr_db:.1f} | {g.closeness:+.4f} | {g.impact:+.4f} | "
              f"{effect:+.4f} | {g.int8_us:.1f} | {g.saved_us:+.1f} | {g.outlier_ratio:.3g} |")
    draws = result["rho_draws"]

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    print("\n| bar | figure | met? |\n|---|---|---|")
    print(f"| DefaultQuantization loses > 1 pt | FP {report.fp_metric:.4f}, INT8 {report.int8_metric:.4f}, drop "
          f"{report.int8_drop:+.4f} | {met(report.int8_drop > 0.01)} |")
    metric_draws = result["rho_draws_metric"]
    print(f"| Spearman(report ranking, measured effect) >= 0.8 | {result['rho']:.3f} over {len(report.groups)} "
          f"groups ({report.ranking_samples} samples, seed 0); the same design with seeds 1-{RANDOM_DRAWS}: mean "
          f"{np.mean(draws):.3f}, min {np.min(draws):.3f}, {sum(d >= 0.8 for d in draws)} of {len(draws)} >= 0.8. "
          "Ranking by the top-1 estimate of the same samples "
          f"instead: {result['rho_metric']:.3f} (seeds 1-{RANDOM_DRAWS}: mean {np.mean(metric_draws):.3f}, min "
          f"{np.min(metric_draws):.3f}, {sum(d >= 0.8 for d in metric_draws)} >= 0.8); AccuracyAwareQuantization's "
          f"hardest samples: {result['rho_hardest']:.3f} "
          f"| {met(result['rho'] >= 0.8)} |")
    print(f"| recommendation meets the drop (measured on all samples here) | {len(report.recommended)} group(s), "
          f"drop {result['rec_drop']:+.4f} (the report's figure: {report.recommended_drop:+.4f}, "
          f"{report.recommended_basis}{_error(report)}) | {met(result['rec_drop'] <= MAX_DROP)} |")
    print(f"| no more groups than AccuracyAwareQuantization | report {len(report.recommended)}, AAQ "
          f"{result['aaq_groups']} (drop {result['aaq_drop']:+.4f}) | "
          f"{met(len(report.recommended) <= result['aaq_groups'])} |")
    own = report.own_evaluations
    print(f"| samples through the metric: the report's own <= one AAQ ranking step | report {own} besides FP and "
          f"INT8 on all ({report.evaluations}; {result['report_samples']} in all; check on all samples "
          f"{'planned' if report.check_planned else 'not planned'}); budget = AAQ's ranking step "
          f"{report.aaq_ranking_evaluations} ({result['aaq_ranking']} counted here), whole AAQ run "
          f"{result['aaq_samples']} | {met(own <= report.aaq_ranking_evaluations)} |")
    aaq = result["aaq_report"]
    print(f"| from an AccuracyAwareQuantization run (report_path) | own {aaq['own_evaluations']} of "
          f"{aaq['aaq_ranking_evaluations']} ({aaq['evaluations']}); recommendation {len(aaq['recommended'])} "
          f"group(s), drop {aaq['recommended_drop']:+.4f} ({aaq['recommended_basis']}) | "
          f"{met(aaq['own_evaluations'] <= aaq['aaq_ranking_evaluations'])} |")
    seeds = result["seeds"]
    if seeds:
        rhos, drops = [s["rho"] for s in seeds], [s["drop"] for s in seeds]
        fits = sum(s["drop"] <= MAX_DROP and s["groups"] <= result["aaq_groups"] for s in seeds)
        print(f"\nreports with seeds 1-{len(seeds)}: Spearman mean {np.mean(rhos):.3f}, min {np.min(rhos):.3f}, "
              f"{sum(r >= 0.8 for r in rhos)} >= 0.8; recommendation meets the drop (measured here) in "
              f"{sum(d <= MAX_DROP for d in drops)}, and with no more groups than AAQ in {fits}; groups mean "
              f"{np.mean([s['groups'] for s in seeds]):.2f}, max {max(s['groups'] for s in seeds)}; drop max "
              f"{max(drops):+.4f}; figure an estimate in {sum(s['basis'] == 'estimate' for s in seeds)}; own "
              f"evaluations max {max(s['own'] for s in seeds)} of {report.aaq_ranking_evaluations}")
    print(f"\nwall time: report {result['report_seconds']:.1f} s (statistics, profiling and latency included), AAQ "
          f"{result['aaq_seconds']:.1f} s; latency: recommended {report.recommended_latency_ms:.3f} ms, INT8 "
          f"{report.int8_latency_ms:.3f} ms, FP {report.fp_latency_ms:.3f} ms")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="validation samples (default 1000)")
    parser.add_argument("--subset", type=int, default=300, help="calibration samples (default 300)")
    parser.add_argument("--steps", type=int, default=800, help="training steps when training (default 800)")
    parser.add_argument("--model-xml", type=Path, default=None, help="the FP IR bench_accuracy_control wrote")
    parser.add_argument("--html-dir", type=Path, default=None, help="also write each report there")
    parser.add_argument("--precision", choices=("default", "f32"), default="default",
                        help="inference precision of every evaluation (default: the CPU's, bf16 here)")
    parser.add_argument("--report-seeds", type=int, default=0, metavar="K",
                        help="also build the report with seeds 1..K and summarise its bars over them")
    args = parser.parse_args(argv)
    engine_config = {} if args.precision == "default" else {"inference_precision": args.precision}

    base = ov.Core().read_model(args.model_xml) if args.model_xml else build_model(args.steps)
    images, labels = validation_data(args.samples)
    results = []
    for label, model in (("outliers x100 (bench_accuracy_control.py)", base),
                         ("graded outliers x300, x200, x120, x60", graded_outliers(base, GRADED_SCALES))):
        html = args.html_dir / f"report_{len(results)}.html" if args.html_dir else None
        results.append(run_model(label, model, images, labels, args.subset, html, engine_config, args.report_seeds))
    precision = results[0]["report"].precision
    print(f"\n{args.samples} validation samples, first {args.subset} for calibration (metric-free engine); "
          f"maximal_drop {MAX_DROP} absolute on top-1; precision: {precision}; "
          "latency: bf16, LATENCY hint, 1 thread, median of interleaved rounds. The bars are the graded model's.")
    for result in results:
        print_model(result)


if __name__ == "__main__":
    main()
