"""Training post-step benchmark (issue #12): pot_torch beside NNCF on a BatchNorm CNN trained on real digits.

    .venv/bin/python benchmarks/bench_post_step.py                 # train (a few seconds), quantize, print the table
    .venv/bin/python benchmarks/bench_post_step.py --work-dir /tmp/post_step   # keep the IRs

The model is ``tests/digits_cnn.py``'s: three conv-BatchNorm-ReLU blocks, global average pooling and a linear
classifier, trained 6 epochs with fixed seeds on scikit-learn's digits (8x8 upsampled to 16x16; 1,200 images to
train, 597 held out). It is converted with a static batch of 1 and given to each tool in its own subprocess:
calibration = the first ``--subset`` training images (``stat_subset_size`` = ``subset_size``), validation = the
597 held-out images, top-1 as a fraction, ``maximal_drop`` = ``max_drop`` = 0.01 absolute.

- pot_torch: ``pot_torch.adapters.quantize(model, calibration, validation, metric=MulticlassAccuracy, ...)``,
  with and without ``maximal_drop`` (AccuracyAwareQuantization / DefaultQuantization); it evaluates at the CPU's
  default precision (bf16 here).
- NNCF: ``nncf.quantize`` and ``nncf.quantize_with_accuracy_control`` (``validation_fn`` returning the value and
  per-item hits); it compiles the candidates it evaluates at f32 itself.

Columns: FP and INT8 top-1 re-measured here on the 597 held-out images at the CPU's default precision (bf16), the
drop, whether it meets 0.01, layers left in floating point and FakeQuantize ops + INT8 weight constants (counted
the same way on both tools' saved IRs, see ``bench_accuracy_control.py``), the quantization wall time (the
call only; other processes on a loaded machine make it noisy) and the worker's peak RSS. The latency and
samples columns of the shared table are left empty here.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_accuracy_control import (MAX_DROP, compile_default, count_quantizers, layers_left_in_fp,  # noqa: E402
                                    markdown_table, top1)
from workers import peak_rss_mb, run_json_worker  # noqa: E402

TOOLS = ("pot_torch_default", "pot_torch", "nncf_default", "nncf")
NAMES = {"pot_torch_default": "pot_torch DefaultQuantization", "pot_torch": "pot_torch AccuracyAwareQuantization",
         "nncf_default": "nncf.quantize", "nncf": "nncf.quantize_with_accuracy_control"}
MODEL_NAME = "digits_bn_cnn"


def build_model() -> ov.Model:
    """Train ``tests/digits_cnn.py``'s CNN and convert it with input shape [1, 1, 16, 16]."""
    import torch
    from digits_cnn import trained_digits_cnn

    module, _, _ = trained_digits_cnn()
    model = ov.convert_model(module, example_input=torch.zeros(1, 1, 16, 16), input=[1, 1, 16, 16])
    model.set_friendly_name(MODEL_NAME)
    return model


def data(subset: int):
    """``(calibration images [n, 1, 1, 16, 16], validation images [m, 1, 1, 16, 16], validation labels [m])``."""
    from digits_cnn import digits_datasets

    train, validation = digits_datasets()
    images, labels = validation.tensors
    return train.tensors[0][:subset, None].numpy(), images[:, None].numpy(), labels.numpy()


def _quantize_pot_torch(model: ov.Model, subset: int, accuracy_aware: bool) -> Dict:
    import torch
    from torchmetrics.classification import MulticlassAccuracy

    from pot_torch import compress_model_weights
    from pot_torch.adapters import quantize

    calibration, images, labels = data(subset)
    calibration_set = torch.utils.data.TensorDataset(torch.from_numpy(calibration[:, 0]),
                                                     torch.zeros(len(calibration), dtype=torch.int64))
    validation_set = torch.utils.data.TensorDataset(torch.from_numpy(images[:, 0]), torch.from_numpy(labels))
    start = time.perf_counter()
    metric = MulticlassAccuracy(num_classes=10, average="micro")
    result = quantize(model, calibration_set, validation_set, metric=metric, subset_size=subset,
                      maximal_drop=MAX_DROP if accuracy_aware else None)
    seconds = time.perf_counter() - start
    compress_model_weights(result.model)  # INT8 weights in the IR, as NNCF returns them
    return {"model": result.model.get_model(), "seconds": seconds}


def _quantize_nncf(model: ov.Model, subset: int, accuracy_aware: bool) -> Dict:
    import nncf

    calibration, images, labels = data(subset)
    core = ov.Core()

    def validation_fn(candidate: ov.Model, items) -> tuple:
        compiled = candidate if isinstance(candidate, ov.CompiledModel) else compile_default(candidate, core)
        batch = list(items)
        hits = top1(compiled, np.stack([x for x, _ in batch]), np.array([y for _, y in batch]))
        return float(hits.mean()), hits.tolist()

    calibration_set = nncf.Dataset(list(calibration))
    start = time.perf_counter()
    if accuracy_aware:
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration_dataset=calibration_set, validation_dataset=nncf.Dataset(list(zip(images, labels))),
            validation_fn=validation_fn, max_drop=MAX_DROP, drop_type=nncf.DropType.ABSOLUTE, subset_size=subset)
    else:
        quantized = nncf.quantize(model, calibration_set, subset_size=subset)
    return {"model": quantized, "seconds": time.perf_counter() - start}


def run_worker(tool: str, fp_xml: Path, out_xml: Path, subset: int) -> Dict:
    """Quantize with ``tool`` in this process and save the IR; returns the wall time and peak RSS."""
    import logging

    if tool.startswith("nncf"):
        import nncf  # noqa: F401  (imported before the clock starts, like pot_torch below)
        logging.getLogger("nncf").setLevel(logging.WARNING)
        quantize = _quantize_nncf
    else:
        import pot_torch.adapters  # noqa: F401
        quantize = _quantize_pot_torch
    result = quantize(ov.Core().read_model(fp_xml), subset, accuracy_aware=not tool.endswith("_default"))
    ov.save_model(result.pop("model"), out_xml, compress_to_fp16=False)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=300, help="calibration samples (default 300)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where IRs go (default: a temp dir)")
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--fp-xml", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-xml", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.fp_xml, args.out_xml, args.subset)))
        return
    core = ov.Core()
    _, images, labels = data(args.subset)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp_xml = work / f"{MODEL_NAME}_fp32.xml"
        fp_model = build_model()
        ov.save_model(fp_model, fp_xml, compress_to_fp16=False)
        fp_top1 = float(top1(compile_default(fp_model, core), images, labels).mean())
        rows = [{"model": MODEL_NAME, "tool": "FP32 IR", "fp": fp_top1, "int8": fp_top1,
                 "layers_fp": layers_left_in_fp(fp_model), "fq": "0+0"}]
        for tool in TOOLS:
            out_xml = work / f"{MODEL_NAME}_{tool}.xml"
            cmd = [sys.executable, __file__, "--worker", tool, "--fp-xml", str(fp_xml), "--out-xml", str(out_xml),
                   "--subset", str(args.subset)]
            row = {"model": MODEL_NAME, "tool": NAMES[tool], "fp": fp_top1, **run_json_worker(cmd, tool)}
            if "error" not in row:
                quantized = core.read_model(out_xml)
                row["int8"] = float(top1(compile_default(quantized, core), images, labels).mean())
                row.update(layers_fp=layers_left_in_fp(quantized), fq=count_quantizers(quantized))
            rows.append(row)
            print(f"{tool} done", file=sys.stderr)
    precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    print(f"\n{len(labels)} held-out digits for validation, the first {args.subset} training images for calibration; "
          f"maximal_drop {MAX_DROP} absolute on top-1 (fraction). Top-1 re-measured here at the CPU's default "
          f"precision ({precision}); wall time of the quantization call, on a machine other processes may load.\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
