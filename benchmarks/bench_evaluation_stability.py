"""Do consecutive ``pipeline.evaluate`` calls of an INT8-weight model agree? (issue #11, docs/cpu-plugin-bugs.md)

Run: ``.venv/bin/python benchmarks/bench_evaluation_stability.py [--models a,b] [--evaluations 20]``.

Each model is quantized with ``DefaultQuantization`` (performance preset, 100 calibration samples), its weights
are stored as INT8 with ``compress_model_weights``, and ``pipeline.evaluate`` runs ``--evaluations`` times on
100 samples at the device's default precision (bf16 on this CPU). The metric is the mean of the model's output
(printed to 10 significant digits), so any change in any output shows. Two modes: ``workaround`` is IEEngine as
shipped; ``no workaround`` replaces ``IEEngine._compile_for_throughput`` by a plain compile (every compile keeps
the plugin's streams), as before the fix. The table gives the number of distinct metric values and the seconds
per evaluation (compiling included).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.model_zoo import build  # noqa: E402
from pot_torch import CompressedModel, IEEngine, compress_model_weights, create_pipeline  # noqa: E402
from tests.test_ie_engine import ListLoader, OutputMean  # noqa: E402

SAMPLES = 100
MODELS = ("mobilenet_v3_small", "resnet18", "pointwise_cnn")


def _pointwise_cnn() -> Tuple[Any, Callable[[int], List[np.ndarray]]]:
    """The regression test's 8-layer pointwise CNN (already INT8 weights), random [1,256,4,4] inputs."""
    from tests.test_regressions import weight_compressed_pointwise_cnn

    rng = np.random.default_rng(0)
    return weight_compressed_pointwise_cnn(), lambda n: [rng.standard_normal((1, 256, 4, 4)).astype(np.float32)
                                                        for _ in range(n)]


def _compressed_model(name: str) -> Tuple[CompressedModel, List[np.ndarray]]:
    if name == "pointwise_cnn":
        model, inputs = _pointwise_cnn()
        return CompressedModel(model), inputs(SAMPLES)
    zoo = build(name)
    calibration = ListLoader([(x[0], 0) for x in zoo.calibration(100)])
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": {"target_device": "CPU", "preset":
                                 "performance", "stat_subset_size": 100}}], IEEngine({"device": "CPU"}, calibration))
    quantized = copy.deepcopy(pipeline.run(CompressedModel(zoo.model)))
    compress_model_weights(quantized)
    return quantized, [x for x, _ in zoo.evaluation(SAMPLES)]


def _evaluations(model: CompressedModel, inputs: List[np.ndarray], count: int, workaround: bool
                 ) -> Tuple[int, float]:
    engine = IEEngine({"device": "CPU"}, ListLoader([(x[0], 0) for x in inputs]), OutputMean())
    if not workaround:
        engine._compile_for_throughput = (  # type: ignore[assignment]
            lambda ov_model, properties: engine._ie.compile_model(ov_model, "CPU", properties))
    pipeline = create_pipeline([], engine)
    start = time.perf_counter()
    values = {f"{pipeline.evaluate(model)['mean']:.10g}" for _ in range(count)}
    return len(values), (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    parser.add_argument("--evaluations", type=int, default=20)
    args = parser.parse_args()
    print(f"{args.evaluations} consecutive pipeline.evaluate calls, {SAMPLES} samples, INT8 weights "
          "(compress_model_weights), CPU default precision (bf16)\n")
    print("| model | mode | distinct metric values | s per evaluation |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        model, inputs = _compressed_model(name)
        for workaround in (False, True):
            distinct, seconds = _evaluations(model, inputs, args.evaluations, workaround)
            mode = "workaround" if workaround else "no workaround"
            print(f"| {name} | {mode} | {distinct} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
