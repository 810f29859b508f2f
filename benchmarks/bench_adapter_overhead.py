"""Overhead of the torch dataset adapter against a plain numpy POT DataLoader.

A calibration set of torch tensors [3,224,224] (a ``TensorDataset``) is served by ``TorchDataLoader``; the
same tensors as numpy arrays are served by a plain ``pot_torch.DataLoader`` subclass. Timed paths (best of
``--repeats`` alternating runs):

* ``IEEngine.predict`` over all items (the loader-to-engine path; pass/fail: adapter overhead <= 10%),
  when ``pot_torch.engines.ie_engine`` exists;
* reading every item only (``loader[i]``), informative: the absolute cost per item of the conversion.

Run: ``.venv/bin/python benchmarks/bench_adapter_overhead.py [--samples 300] [--repeats 15]
[--precision bf16|f32]``. Prints a markdown table; exits 1 when the engine overhead is over the limit.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, List, Tuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pot_torch import CompressedModel, DataLoader
from pot_torch.adapters import TorchDataLoader, convert_torch_model

MAX_OVERHEAD = 0.10


class NumpyLoader(DataLoader):
    """The baseline: a plain POT data loader over numpy arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._images = images
        self._labels = labels
        super().__init__(None)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Any:
        return self._images[index], int(self._labels[index])


def tiny_cnn() -> torch.nn.Module:
    """A cheap 224x224 classifier, so that inference does not hide the data path."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 7, stride=4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()


def best_seconds(
    baseline: Callable[[], Any], adapted: Callable[[], Any], repeats: int
) -> Tuple[float, float]:
    """Best (minimum) wall times of the two, run alternately so that other processes' load hits both."""
    baseline()  # warm-up: compilation, caches
    adapted()
    times: Tuple[List[float], List[float]] = ([], [])
    for _ in range(repeats):
        for fn, record in ((baseline, times[0]), (adapted, times[1])):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def read_all(loader: DataLoader) -> None:
    for index in range(len(loader)):
        loader[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--precision",
        choices=["bf16", "f32"],
        default=None,
        help="engine inference precision (default: the device default, bf16 on this CPU)",
    )
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.samples, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 10, (args.samples,), generator=generator)
    model: CompressedModel = convert_torch_model(tiny_cnn(), images[:1])
    adapter = TorchDataLoader(TensorDataset(images, labels), model=model)
    baseline = NumpyLoader(images.numpy(), labels.numpy())

    rows = []
    read_base, read_adapter = best_seconds(
        lambda: read_all(baseline), lambda: read_all(adapter), args.repeats
    )
    rows.append(("read items (loader[i])", read_base, read_adapter, None))
    try:
        from pot_torch.engines.ie_engine import IEEngine
    except ImportError:
        IEEngine = None
    if IEEngine is not None:
        config = {"device": "CPU"}
        if args.precision:
            config["inference_precision"] = args.precision

        def predict(loader: DataLoader) -> Callable[[], Any]:
            engine = IEEngine(config=config, data_loader=loader)
            engine.set_model(model)
            return lambda: engine.predict()

        engine_base, engine_adapter = best_seconds(predict(baseline), predict(adapter), args.repeats)
        rows.append(("IEEngine.predict", engine_base, engine_adapter, MAX_OVERHEAD))

    precision = args.precision or "device default (bf16 on this CPU)"
    print(
        f"\n{args.samples} samples of [3,224,224] float32, best of {args.repeats} alternating runs, "
        f"inference precision: {precision}, torch threads: {torch.get_num_threads()}\n"
    )
    print("| path | numpy DataLoader (s) | TorchDataLoader (s) | per item overhead (us) | overhead | limit |")
    print("|---|---|---|---|---|---|")
    failed = False
    for name, base, adapted, limit in rows:
        overhead = adapted / base - 1.0
        per_item = (adapted - base) / args.samples * 1e6
        verdict = "-" if limit is None else ("pass" if overhead <= limit else "FAIL")
        failed |= verdict == "FAIL"
        limit_text = "-" if limit is None else f"<= {limit:.0%} ({verdict})"
        print(f"| {name} | {base:.4f} | {adapted:.4f} | {per_item:.1f} | {overhead:+.1%} | {limit_text} |")
    if IEEngine is None:
        print("\npot_torch.engines.ie_engine is not available: only item reading was timed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
