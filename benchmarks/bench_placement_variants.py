"""Latency of pot_torch's INT8 placement against variants that leave some layers in floating point, and NNCF's IR.

    HF_HUB_OFFLINE=1 python benchmarks/bench_placement_variants.py                   # the depthwise models
    HF_HUB_OFFLINE=1 python benchmarks/bench_placement_variants.py --models efficientnet_lite0 --rounds 15

Each variant is pot_torch's DefaultQuantization with an ``ignored`` scope chosen on the FP32 model: ``depthwise``
(every depthwise convolution in floating point, input and weights), ``depthwise_before_se`` (those whose output
feeds a squeeze-excitation's ReduceMean) and ``first_conv`` (the first convolution, so no model-input
FakeQuantize). All IRs are timed in interleaved rounds (LATENCY hint, all cores, the CPU's default precision, bf16
here, and f32), with pot_torch's IR timed against itself as the noise band. The table gives each IR's median ms and
its ratio to pot_torch's placement: median [min, max] of the per-round ratio. The question it answers is the one of
issue #12 and docs/int8-placement-findings.md 8.19: can another placement make a depthwise model faster than the
one pot_torch and NNCF share?
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
import model_zoo  # noqa: E402
import real_zoo  # noqa: E402
from bench_quantization import quantize_in_subprocess  # noqa: E402
from pot_torch.utils.latency import example_inputs  # noqa: E402

#: Ops a squeeze-excitation branch is reached through from a depthwise convolution: its batch norm and activation.
_PASS_THROUGH = ("Add", "Multiply", "Clamp", "Relu", "HSwish", "Swish", "HSigmoid", "Sigmoid")


def _reaches_reduce_mean(output: ov.Output) -> bool:
    """Whether ``output`` reaches a ReduceMean through batch-norm and activation ops only."""
    for target in output.get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "ReduceMean" or (
                node.get_type_name() in _PASS_THROUGH and _reaches_reduce_mean(node.output(0))):
            return True
    return False


def _depthwise(model: ov.Model) -> List[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "GroupConvolution"]


def _depthwise_before_se(model: ov.Model) -> List[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "GroupConvolution" and _reaches_reduce_mean(op.output(0))]


def _first_conv(model: ov.Model) -> List[str]:
    return [next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")]


#: variant: the ops it leaves in floating point, chosen on the FP32 model.
VARIANTS: Dict[str, Callable[[ov.Model], List[str]]] = {
    "depthwise": _depthwise, "depthwise_before_se": _depthwise_before_se, "first_conv": _first_conv}
SETTINGS = {"default precision (bf16)": None, "f32": "f32"}


def fp_xml(name: str, work: Path) -> Path:
    """The FP32 IR of real-zoo or zoo model ``name``."""
    if name in real_zoo.BUILDERS:
        return Path(real_zoo.build(name).xml)
    path = work / f"{name}_fp32.xml"
    ov.save_model(model_zoo.build(name).model, path, compress_to_fp16=False)
    return path


def quantize_variants(name: str, work: Path, samples: int) -> Dict[str, ov.Model]:
    """``{label: quantized model}``: pot_torch's placement, NNCF's, and every variant that leaves some op out."""
    source = fp_xml(name, work)
    fp_model = ov.Core().read_model(source)
    runs: Dict[str, Optional[Dict]] = {"pot_torch": None, "nncf": None}
    for variant, choose in VARIANTS.items():
        scope = choose(fp_model)
        if scope:
            runs[variant] = {"ignored": {"scope": scope}}
    models = {}
    for label, params in runs.items():
        method = "nncf" if label == "nncf" else "pot_torch"
        out = work / f"{name}_{label}.xml"
        result = quantize_in_subprocess(method, name, source, out, samples, params)
        if "error" in result:
            print(f"{name} {label}: {result['error']}", file=sys.stderr)
            continue
        models[label] = ov.Core().read_model(out)
    return models


def time_variants(models: Dict[str, ov.Model], rounds: int) -> List[Dict]:
    """One row per IR and setting: median ms and the paired ratio to pot_torch's placement."""
    variants = {**models, "pot_torch (again: noise)": models["pot_torch"]}
    example = example_inputs(models["pot_torch"])
    rows = []
    for setting, precision in SETTINGS.items():
        timings = latency.compare_latency(variants, example, precision=precision, rounds=rounds)
        base = timings["pot_torch"].rounds_ms
        for label, result in timings.items():
            ratios = [ms / ref for ms, ref in zip(result.rounds_ms, base)]
            rows.append({"setting": setting, "label": label, "ms": result.median_ms,
                         "ratio": (statistics.median(ratios), min(ratios), max(ratios))})
    return rows


def markdown_table(name: str, rows: List[Dict]) -> str:
    lines = [f"{name}: LATENCY hint, all cores, batch 1, interleaved rounds; ratio to pot_torch's placement, median "
             "[min, max] over rounds", "", "| setting | IR | ms | / pot_torch |", "|---|---|---|---|"]
    for row in rows:
        median, low, high = row["ratio"]
        lines.append(f"| {row['setting']} | {row['label']} | {row['ms']:.3f} | {median:.3f} [{low:.3f}, {high:.3f}] |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet_lite0,mobilenet_v3_small",
                        help="comma-separated real-zoo or zoo names (default: the depthwise models)")
    parser.add_argument("--samples", type=int, default=300, help="calibration samples (default 300)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved latency rounds (default 9)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            print(markdown_table(name, time_variants(quantize_variants(name, Path(tmp), args.samples), args.rounds)))
            print()


if __name__ == "__main__":
    main()
