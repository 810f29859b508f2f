"""RayEngine against IEEngine: the overhead of sharding ``predict`` over Ray actors, and what it projects for
AccuracyAwareQuantization on a 50,000-sample validation set.

Run: ``python benchmarks/bench_scale_out.py`` (about 2 minutes on 2 cores; needs the ``ray`` extra). Options:
``--precision f32`` (default: the CPU's default, bf16 here), ``--rounds``, ``--samples``, ``--groups`` and
``--steps`` (the AAQ projection's quantizer groups and revert steps).

Model: a 5-convolution CNN built with OpenVINO ops (input [1,3,64,64], seeded random weights; about 1 ms
per sample at bf16 on this machine) and its DefaultQuantization INT8 version; 1,000 random in-memory samples
with labels and a top-1 accuracy metric with per-sample values. Each timed evaluation is what
AccuracyAwareQuantization does: ``set_model`` with another model than the last (so every engine ships and
compiles it), then ``predict(metric_per_sample=True)``, alternating the FP and the INT8 model; rounds are
interleaved over the engines, and the table shows medians. A local Ray instance runs the actors, at the
driver's priority (Ray's default worker niceness is 15), with 6 logical CPUs so that every engine's actors stay
up while the engines take turns on the machine's 2 cores.

The projection: a validation pass over N samples with A actors takes ``F + ceil(N / chunk / A) * (chunk * c
+ o)``, all measured with one actor of 2 CPUs (one machine like this one): the per-chunk overhead o from
chunks of 50 against chunks of 100, the per-sample cost c and the pass's fixed cost F (shipping and compiling
the model) from 1,000 against 250 samples, and the driver's merging cost per sample d (statistics merge and
metric update, which do not scale out: a pass takes at least N * d). AAQ runs ``2 + steps`` such passes (FP, INT8, each revert step)
and ranks ``groups`` candidates on 300 samples, several candidates at once across the actors (each actor
compiles the candidates it evaluates).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any, Dict, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch import BatchSampler, CompressedModel, DataLoader, IEEngine, Metric, create_pipeline
from pot_torch.engines import RayEngine

CHUNK = 100
RANKING_SAMPLES = 300
PROJECTED_SAMPLES = 50_000


class _Images(DataLoader):
    def __init__(self, count: int) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self._images = rng.standard_normal((count, 3, 64, 64), dtype=np.float32)
        self._labels = rng.integers(0, 10, count)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Any:
        return self._images[index], int(self._labels[index])


class _Top1(Metric):
    def reset(self) -> None:
        self.hits: List[float] = []
        self.last: List[float] = []

    def update(self, output: Any, target: Any) -> None:
        self.last = (np.argmax(output[0], axis=-1) == np.asarray(target)).astype(float).tolist()
        self.hits.extend(self.last)

    @property
    def value(self) -> Dict[str, List[float]]:
        return {"top1": self.last}

    @property
    def avg_value(self) -> Dict[str, float]:
        return {"top1": float(np.mean(self.hits))}


def _cnn(seed: int = 0) -> ov.Model:
    rng = np.random.default_rng(seed)
    image = ops.parameter([1, 3, 64, 64], np.float32, name="input")
    node: Any = image
    channels = 3
    for number, (out, stride) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]):
        weights = (rng.standard_normal((out, channels, 3, 3)) * (2.0 / (9 * channels)) ** 0.5).astype(np.float32)
        node = ops.convolution(node, ops.constant(weights), [stride, stride], [1, 1], [1, 1], [1, 1])
        node.set_friendly_name(f"conv{number}")
        node = ops.relu(ops.add(node, ops.constant(rng.standard_normal((1, out, 1, 1)).astype(np.float32) * 0.1)))
        channels = out
    node = ops.reduce_mean(node, np.array([2, 3]), keep_dims=False)
    node = ops.matmul(node, ops.constant((rng.standard_normal((channels, 10)) * 0.1).astype(np.float32)), False, False)
    return ov.Model([ops.result(node)], [image], "scale_out_cnn")


def _evaluate(engine: Any, model: CompressedModel, samples: int) -> float:
    """Seconds for ``set_model`` + ``predict`` with per-sample metrics over the first ``samples`` items."""
    start = time.perf_counter()
    engine.set_model(model)
    engine.predict(sampler=BatchSampler(engine.data_loader, subset_indices=range(samples)), metric_per_sample=True)
    return time.perf_counter() - start


def _median_times(engines: Dict[str, Any], models: List[CompressedModel], samples: int, rounds: int) -> Dict[str, float]:
    times: Dict[str, List[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for model in models:
            for name, engine in engines.items():
                times[name].append(_evaluate(engine, model, samples))
    return {name: statistics.median(values) for name, values in times.items()}


def _projection(fixed: float, per_sample: float, per_chunk: float, driver: float, actors: int, groups: int,
                steps: int) -> List[float]:
    """Seconds of one validation pass, of the ranking, and of AAQ's evaluations, on ``actors`` actors; the
    driver's per-sample merging cost ``driver`` bounds a pass from below, however many actors run it."""
    chunk_time = CHUNK * per_sample + per_chunk
    validation = fixed + max(math.ceil(math.ceil(PROJECTED_SAMPLES / CHUNK) / actors) * chunk_time,
                             PROJECTED_SAMPLES * driver)
    ranking_chunks = groups * math.ceil(RANKING_SAMPLES / CHUNK)
    ranking = math.ceil(groups / actors) * fixed + max(math.ceil(ranking_chunks / actors) * chunk_time,
                                                       groups * RANKING_SAMPLES * driver)
    return [validation, ranking, (2 + steps) * validation + ranking]


class _MergeClock:
    """Adds up the time ``RayEngine._merge`` takes on the driver (statistics merge, metric updates)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.samples = 0
        self._merge = RayEngine._merge

    def __enter__(self) -> "_MergeClock":
        clock = self

        def timed(engine: RayEngine, run: Any, result: Any) -> None:
            start = time.perf_counter()
            clock._merge(engine, run, result)
            clock.seconds += time.perf_counter() - start
            clock.samples += sum(len(annotations) for _, annotations in result.metric_batches)

        RayEngine._merge = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: Any) -> None:
        RayEngine._merge = self._merge  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=["bf16", "f32"], default=None,
                        help="evaluation precision (default: the CPU's default, bf16 on this machine)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=50, help="quantizer groups ranked in the AAQ projection")
    parser.add_argument("--steps", type=int, default=10, help="revert steps in the AAQ projection")
    args = parser.parse_args()

    import ray
    # 6 logical CPUs: every engine's actors stay up and the engines take turns on the machine's 2 cores. Ray runs
    # its workers at niceness 15; on a machine shared with other jobs that would time the actors at a lower
    # priority than IEEngine in this process, so they run at 0 here, as the driver does.
    ray.init(num_cpus=6, include_dashboard=False, object_store_memory=300 * 1024 ** 2, log_to_driver=False,
             _system_config={"worker_niceness": 0})
    loader, config = _Images(args.samples), {"inference_precision": args.precision}
    fp = CompressedModel(_cnn())
    int8 = create_pipeline([{"name": "DefaultQuantization", "params": {"stat_subset_size": 300}}],
                           IEEngine({}, loader)).run(fp)

    def ray_engine(actors: int, cpus: int, chunk: int) -> RayEngine:
        return RayEngine({**config, "num_actors": actors, "cpus_per_actor": cpus, "chunk_size": chunk}, loader,
                         _Top1())

    engines: Dict[str, Any] = {
        "IEEngine": IEEngine(config, loader, _Top1()),
        "RayEngine, 1 actor x 2 CPUs": ray_engine(1, 2, CHUNK),
        "RayEngine, 2 actors x 1 CPU": ray_engine(2, 1, CHUNK),
        "half chunks": ray_engine(1, 2, CHUNK // 2),  # for the per-chunk overhead
    }
    for engine in engines.values():
        _evaluate(engine, fp, 50)  # start the actors, warm up
    times = _median_times(engines, [fp, int8], args.samples, args.rounds)
    with _MergeClock() as clock:
        _median_times({"one": engines["RayEngine, 1 actor x 2 CPUs"]}, [fp, int8], args.samples, 1)
    driver = clock.seconds / clock.samples
    one_actor = "RayEngine, 1 actor x 2 CPUs"
    quarter = _median_times({one_actor: engines[one_actor]}, [fp, int8], args.samples // 4, args.rounds)[one_actor]
    for engine in engines.values():
        if isinstance(engine, RayEngine):
            engine.close()
    ray.shutdown()

    chunks = math.ceil(args.samples / CHUNK)
    per_chunk = (times["half chunks"] - times[one_actor]) / (math.ceil(args.samples / (CHUNK // 2)) - chunks)
    per_sample_and_chunk = (times[one_actor] - quarter) / (args.samples - args.samples // 4)
    per_sample = per_sample_and_chunk - per_chunk / CHUNK
    fixed = times[one_actor] - args.samples * per_sample_and_chunk
    print(f"\n{args.samples} samples, set_model + predict(metric_per_sample=True), precision "
          f"{args.precision or 'bf16 (CPU default)'}, median of {args.rounds} rounds x 2 models (FP, INT8), "
          f"chunks of {CHUNK} samples\n")
    print("| engine | time, s | / IEEngine |")
    print("|---|---|---|")
    for label in list(engines)[:3]:
        print(f"| {label} | {times[label]:.3f} | {times[label] / times['IEEngine']:.3f} |")
    print(f"\nMeasured on 1 actor x 2 CPUs: per-sample cost c = {per_sample * 1e3:.3f} ms, fixed cost per pass "
          f"F = {fixed * 1e3:.1f} ms (ship and compile the model, start the pass), per-chunk overhead "
          f"o = {per_chunk * 1e3:.2f} ms (chunks of {CHUNK // 2} vs {CHUNK}; negative = below the noise), driver's "
          f"merge and metric update per sample d = {driver * 1e6:.1f} us")
    print(f"\nProjection: AccuracyAwareQuantization on {PROJECTED_SAMPLES:,} samples, {2 + args.steps} validation "
          f"passes, {args.groups} groups ranked on {RANKING_SAMPLES} samples; A actors of 2 CPUs "
          "(one per machine like this one); evaluation time only (statistics passes excluded)\n")
    print("| actors | validation pass, s | ranking, s | AAQ evaluations, s | speed-up |")
    print("|---|---|---|---|---|")
    base = None
    for actors in (1, 2, 4, 8, 16, 32):
        validation, ranking, total = _projection(fixed, per_sample + min(0.0, per_chunk) / CHUNK, max(0.0, per_chunk),
                                                 driver, actors, args.groups, args.steps)
        base = base or total
        print(f"| {actors} | {validation:.1f} | {ranking:.1f} | {total:.1f} | {base / total:.2f}x |")


if __name__ == "__main__":
    main()
