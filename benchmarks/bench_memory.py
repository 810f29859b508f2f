"""Peak memory of DefaultQuantization against ``stat_subset_size``: does it grow beyond what the data needs?

Each size runs in a fresh process (peak RSS is per process). The data set generates its items on the fly
from their index (nothing is held), so any growth of peak RSS with the subset size is pot_torch's own: the
statistics it keeps per sample. DefaultQuantization's statistics (min / max / mean aggregators) are folded
into running values as batches arrive (``pot_torch.statistics.online``), so the growth should not depend on
the subset size. Each size runs twice: with FastBiasCorrection (POT's default) and with the full
BiasCorrection (``use_fast_bias: False``, the transformer default), which keeps every layer input of its
samples between levels and therefore runs over at most ``MAX_SAMPLES`` (60) samples. Prints a markdown table.

    /work/venv/bin/python benchmarks/bench_memory.py            # 300, 1000, 3000 samples
    /work/venv/bin/python benchmarks/bench_memory.py 300 3000   # chosen sizes

Statistics are collected at f32 inference precision (the engine's default for statistics).
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

SIZES = (300, 1000, 3000)
INPUT_SHAPE = (1, 3, 32, 32)


def _model():
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def weight(*shape):
        return ops.constant((rng.standard_normal(shape) * 0.2).astype(np.float32))

    x = ops.parameter(list(INPUT_SHAPE), np.float32, name="input")
    y = x
    for channels_in, channels_out in ((3, 16), (16, 32), (32, 32)):
        y = ops.relu(ops.add(ops.convolution(y, weight(channels_out, channels_in, 3, 3), [1, 1], [1, 1], [1, 1],
                                             [1, 1]), weight(1, channels_out, 1, 1)))
    pooled = ops.reshape(ops.avg_pool(y, [1, 1], [0, 0], [0, 0], [32, 32], True),
                         ops.constant(np.array([1, 32], np.int64)), False)
    logits = ops.add(ops.matmul(pooled, weight(32, 10), False, False), weight(1, 10))
    return ov.Model([ops.result(logits)], [x], "bench_memory_cnn")


def _measure(size: int, use_fast_bias: bool) -> dict:
    """Run in the child process: quantize on ``size`` generated samples, report peak RSS."""
    from pot_torch import BatchSampler, CompressedModel, DataLoader, IEEngine, create_pipeline

    class GeneratedData(DataLoader):
        def __len__(self) -> int:
            return size

        def __getitem__(self, index: int):
            return np.random.default_rng(index).standard_normal(INPUT_SHAPE).astype(np.float32), None

    model = CompressedModel(_model())
    engine = IEEngine({"device": "CPU"}, GeneratedData())
    engine.set_model(model)
    engine.predict(sampler=BatchSampler(GeneratedData(), subset_indices=range(8)))  # OpenVINO loaded and warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    params = {"stat_subset_size": size, "use_fast_bias": use_fast_bias}
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": params}], engine)
    pipeline.run(model)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "bias": "fast" if use_fast_bias else "full", "before_mib": before / 1024,
            "peak_mib": peak / 1024, "seconds": seconds}


def main(sizes) -> None:
    rows = []
    for bias in ("fast", "full"):
        for size in sizes:
            output = subprocess.run([sys.executable, __file__, "--child", str(size), bias], check=True,
                                    capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    data_mib = np.prod(INPUT_SHAPE) * 4 / 2 ** 20
    print("| bias correction | stat_subset_size | RSS before (MiB) | peak RSS (MiB) | growth (MiB) "
          "| one sample's data (MiB) | all samples' data, if held (MiB) | time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['bias']} | {row['size']} | {row['before_mib']:.0f} | {row['peak_mib']:.0f} | "
              f"{row['peak_mib'] - row['before_mib']:.0f} | {data_mib:.3f} | {data_mib * row['size']:.0f} | "
              f"{row['seconds']:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_measure(int(sys.argv[2]), sys.argv[3] == "fast")))
    else:
        main([int(arg) for arg in sys.argv[1:]] or SIZES)
