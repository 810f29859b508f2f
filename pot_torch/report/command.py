"""``pot-torch report``: the quantization report of an IR on a folder of images, from the command line.

The metric is top-1 on the images: against labels taken from integer subfolder names (``--metric top1``,
``DIR/3/cat.png`` is class 3), or, with no labels, against the FP model's own top-1 (``--metric agreement``,
the default: the fraction of images whose INT8 top-1 class is the FP model's).
"""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import load_model
from pot_torch.image_folder import ImageFolderLoader, add_model_and_images_arguments, check_subset_size
from pot_torch.report.build import build_report
from pot_torch.report.build import logger as build_logger
from pot_torch.report.render import write_report
from pot_torch.utils.logger import progress_enabled
from pot_torch.utils.output_folder import DATA_FOLDER, OutputFolder

METRICS = ("agreement", "top1")
REPORT_FILES = ("report.html", "report.json")

EPILOG = """\
examples:
  pot-torch report -m model.xml --data images/                  # top-1 agreement with the FP model
  pot-torch report -m model.xml --data labelled/ --metric top1  # labelled/<class index>/<image>
      --max-drop 0.005 -o model_report --overwrite

Writes OUT/report.html (one self-contained page: open it in a browser, no network needed) and OUT/report.json
(the same data). docs/report.md explains how to read it.
"""


def add_report_parser(commands: Any, formatter: Any) -> None:
    """The ``report`` subcommand and its options."""
    report = commands.add_parser("report", help="which layers cost accuracy and what they save in time: an HTML "
                                 "report", description="Quantize an IR with DefaultQuantization and report, per "
                                 "quantizer group, the accuracy it costs, its SQNR, its share of INT8 time and "
                                 "the smallest set of groups to keep in floating point to meet --max-drop.",
                                 epilog=EPILOG, formatter_class=formatter)
    add_model_and_images_arguments(report)
    report.add_argument("--metric", choices=METRICS, default="agreement",
                        help="agreement: top-1 agreement with the FP model (no labels needed; default); top1: "
                        "top-1 against labels from integer subfolder names (DIR/3/img.png is class 3)")
    report.add_argument("--max-drop", type=float, default=0.01, metavar="D",
                        help="the allowed metric drop for the recommendation (default: 0.01)")
    report.add_argument("-o", "--output-dir", metavar="OUT", help="folder for report.html and report.json "
                        "(default: ./<model name>_report)")
    report.add_argument("--overwrite", action="store_true",
                        help="replace a previous report in OUT; a folder holding other files is never replaced")


class _Top1(Metric):
    """Top-1 as a fraction; ``value`` gives the hits of the last batch, one per sample."""

    def __init__(self, name: str) -> None:
        self._name = name
        super().__init__()

    def reset(self) -> None:
        self._hits: List[float] = []
        self._last: List[float] = []

    def update(self, output: Any, target: Any) -> None:
        logits = np.asarray(output[0]).reshape(len(target), -1)
        self._last = (np.argmax(logits, axis=1) == np.asarray(target)).astype(float).tolist()
        self._hits.extend(self._last)

    @property
    def value(self) -> Dict[str, List[float]]:
        return {self._name: list(self._last)}

    @property
    def avg_value(self) -> Dict[str, float]:
        return {self._name: float(np.mean(self._hits)) if self._hits else 0.0}

    def get_attributes(self) -> Dict[str, Dict[str, str]]:
        return {self._name: {"direction": "higher-better", "type": "accuracy"}}


class _Labelled(DataLoader):
    """The images of an ``ImageFolderLoader`` with a class label each."""

    def __init__(self, images: ImageFolderLoader, labels: Sequence[int]) -> None:
        super().__init__({})
        self._images, self._labels = images, list(labels)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        return self._images[index][0], self._labels[index]


def folder_labels(files: Sequence[Path], root: Path) -> List[int]:
    """Class indices from the name of each file's first subfolder under ``root`` (``root/3/x.png`` -> 3).

    :raises ValueError: a file is not in a subfolder named by an integer.
    """
    labels = []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2 or not parts[0].isdigit():
            raise ValueError(f"--metric top1 reads the class of each image from its subfolder's name, a class "
                             f"index, but '{path}' is not in such a folder (expected {root}/<index>/<image>); "
                             "use --metric agreement for unlabelled images")
        labels.append(int(parts[0]))
    return labels


def fp_top1(model: ov.Model, images: ImageFolderLoader) -> List[int]:
    """The FP model's top-1 class of each image (the labels of ``--metric agreement``), at f32."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return [int(np.argmax(compiled([images[i][0][None]])[0])) for i in range(len(images))]


@contextmanager
def _report_log_shown() -> Iterator[None]:
    """Show the report's INFO messages (its cost, stated before it evaluates) on stderr while in the block."""
    logger = build_logger
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_report_command(args: argparse.Namespace) -> Path:
    """Run ``pot-torch report``; returns the path of the HTML page."""
    check_subset_size(args.subset_size)
    name = Path(args.model).stem
    weights = args.weights or str(Path(args.model).with_suffix(".bin"))
    output = OutputFolder.checked(args.output_dir or f"{name}_report", args.overwrite,
                                  inputs=[("input model", args.model), ("input weights", weights),
                                          (DATA_FOLDER, args.data)], expected=REPORT_FILES)
    model = load_model({"model_name": name, "model": args.model, "weights": weights}, target_device="CPU")
    ov_model = model.get_model()
    if len(ov_model.inputs) != 1:
        raise ValueError(f"model '{name}' has {len(ov_model.inputs)} inputs; pot-torch report feeds one image "
                         "input: use pot_torch.report.build_report from Python with your own DataLoader")
    images = ImageFolderLoader(args.data, ov_model.inputs[0], args.channel_order)
    if args.metric == "top1":
        labels = folder_labels(images.files, Path(args.data))
    else:
        _say(f"Labelling {len(images)} images with the FP model's top-1 (metric: agreement with FP)")
        labels = fp_top1(ov_model, images)
    engine = IEEngine({"device": "CPU"}, _Labelled(images, labels), _Top1(args.metric))
    params = {"target_device": "CPU", "preset": args.preset, "stat_subset_size": args.subset_size,
              "maximal_drop": args.max_drop}
    with progress_enabled(True), _report_log_shown():
        report = build_report(model, engine, params)
    with output.staged() as staging:
        write_report(report, staging / REPORT_FILES[0])
    path = output.path / REPORT_FILES[0]
    _say(f"Wrote {path} and {output.path / REPORT_FILES[1]}")
    return path
