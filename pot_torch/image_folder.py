"""``ImageFolderLoader``: a folder of images as calibration data, as POT's simplified mode read it.

Images are found in the folder and its subfolders (sorted paths, so the order is reproducible), read with
Pillow, resized to the model input's height and width and laid out as the input expects (``NCHW`` or
``NHWC``, from the input's layout when the model has one, else from where the 1- or 3-sized channel axis is).
Pixel values stay in 0..255 with no normalization and channels in BGR order by default, as POT (OpenCV)
gave them: an IR converted by Model Optimizer carries its mean/scale and channel order itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.api.data_loader import DataLoader

#: File name endings read as images.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")
CHANNEL_ORDERS = ("bgr", "rgb")


def collect_image_files(folder: Path) -> List[Path]:
    """Image files (by name ending) in ``folder`` and its subfolders, sorted.

    :raises FileNotFoundError: ``folder`` does not exist.
    :raises NotADirectoryError: ``folder`` is not a folder.
    :raises ValueError: it holds no image files.
    """
    if not folder.exists():
        raise FileNotFoundError(f"data folder '{folder}' does not exist; give a folder of calibration images")
    if not folder.is_dir():
        raise NotADirectoryError(f"data source '{folder}' is not a folder; give a folder of calibration images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"data folder '{folder}' holds no images (looked for {', '.join(IMAGE_SUFFIXES)} "
                         "files, also in subfolders); put a few hundred representative images there")
    return files


def image_layout(model_input: ov.Output) -> str:
    """``'NCHW'`` or ``'NHWC'`` for a 4D image input (``'CHW'``/``'HWC'`` for 3D).

    The model's own layout wins when it has one; otherwise the axis of size 3 or 1 is the channel axis.

    :raises ValueError: the input is not a 3D/4D image input or its layout cannot be told.
    """
    name = model_input.get_any_name() if model_input.get_names() else model_input.get_node().get_friendly_name()
    shape = model_input.get_partial_shape()
    layout = ov.layout_helpers.get_layout(model_input)
    if not layout.empty:
        text = layout.to_string().strip("[]").replace(",", "")
        if sorted(text) in (sorted("NCHW"), sorted("CHW")):
            return text
    if shape.rank.is_dynamic or shape.rank.get_length() not in (3, 4):
        raise ValueError(f"model input '{name}' has shape {shape}; the image folder loader feeds image inputs "
                         "[N, C, H, W] or [N, H, W, C]; quantize other models with the Python API (a DataLoader)")
    rank = shape.rank.get_length()
    first, last = shape[rank - 3], shape[rank - 1]
    if first.is_static and first.get_length() in (1, 3):
        return "NCHW"[4 - rank:]
    if last.is_static and last.get_length() in (1, 3):
        return "NHWC"[4 - rank:]
    raise ValueError(f"cannot tell the channel axis of model input '{name}' with shape {shape}: neither axis "
                     f"{rank - 3} nor {rank - 1} has 1 or 3 channels; set the input's layout in the IR "
                     "(openvino.layout_helpers.set_layout) or use the Python API")


class ImageFolderLoader(DataLoader):
    """The images of a folder as ``(image, None)`` items fitting a model's single image input.

    :param folder: the image folder (subfolders are read too).
    :param model_input: the model input the images feed (an ``openvino.Output`` of the model's inputs).
    :param channel_order: ``'bgr'`` (POT's default, OpenCV order) or ``'rgb'``.
    """

    def __init__(self, folder: Any, model_input: ov.Output, channel_order: str = "bgr") -> None:
        super().__init__({"data_source": str(folder)})
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        self._files = collect_image_files(Path(folder))
        self._layout = image_layout(model_input)
        shape = model_input.get_partial_shape()
        axes = {axis: shape[len(shape) - len(self._layout) + i] for i, axis in enumerate(self._layout)}
        self._channels = axes["C"].get_length() if axes["C"].is_static else 3
        self._size: Optional[Tuple[int, int]] = None
        if axes["H"].is_static and axes["W"].is_static:
            self._size = (axes["W"].get_length(), axes["H"].get_length())
        self._channel_order = channel_order

    @property
    def files(self) -> List[Path]:
        """The image files, in item order."""
        return list(self._files)

    @property
    def layout(self) -> str:
        """The layout images are given in (``'NCHW'``, ``'NHWC'``, ``'CHW'`` or ``'HWC'``)."""
        return self._layout

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, None]:
        return self.read(self._files[index]), None

    def read(self, path: Path) -> np.ndarray:
        """One image as a float32 array in the input's layout without the batch axis.

        :raises ValueError: the file is not a readable image.
        """
        try:
            from PIL import Image, UnidentifiedImageError  # Pillow is needed only when images are read
        except ImportError as error:
            raise ImportError("reading calibration images needs Pillow: pip install pillow") from error
        try:
            with Image.open(path) as image:
                image = image.convert("L" if self._channels == 1 else "RGB")
                if self._size is not None and image.size != self._size:
                    image = image.resize(self._size, Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot read image '{path}': {error}; remove or replace the file") from error
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if self._channel_order == "bgr" and pixels.shape[2] == 3:
            pixels = pixels[:, :, ::-1]
        if self._layout.endswith("CHW"):
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels)


def check_subset_size(count: int) -> None:
    """Refuse a ``--subset-size`` below 1 (``ValueError`` naming the option and how to fix it)."""
    if count < 1:
        raise ValueError(f"--subset-size must be a positive number of images, got {count}")


def add_model_and_images_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that reads an IR and a folder of calibration images (``pot-torch quantize``,
    ``pot-torch report``): ``-m``, ``-w``, ``--data``, ``--preset``, ``--subset-size``, ``--channel-order``."""
    parser.add_argument("-m", "--model", required=True, metavar="XML", help="the model .xml, e.g. -m net.xml")
    parser.add_argument("-w", "--weights", metavar="BIN",
                        help="the weights .bin (default: the .bin next to the .xml), e.g. -w net.bin")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of calibration images (subfolders too), e.g. --data images/")
    parser.add_argument("--preset", choices=("performance", "mixed"), default="performance",
                        help="performance: symmetric weights and activations (fastest); mixed: asymmetric "
                        "activations (for activations not centred on 0). Default: performance")
    parser.add_argument("--subset-size", type=int, default=300, metavar="N",
                        help="how many images to collect statistics on (default: 300)")
    parser.add_argument("--channel-order", choices=CHANNEL_ORDERS, default="bgr",
                        help="channel order the model expects (default: bgr, as POT read images)")
