"""Synthetic calibration images for ``DataFreeQuantization``, generated in memory, as POT's data-free mode did.

POT drew fractals of random iterated function systems (IFS), colourized them, and augmented them (flips, a
rotation of up to 30 degrees, a background colour, a Gaussian blur). This module follows those steps with
numpy only:

- *categories*: an IFS of 2 to 7 random affine maps, drawn again until its attractor covers at least 20 % of a
  test canvas (POT's threshold); each category has 25 *variants*, the category itself and each of its six
  map parameters scaled by 0.2, 0.6, 1.4 or 1.8 (POT's variant table);
- *drawing*: many points iterated through randomly chosen maps in parallel, rescaled onto the image and drawn
  as random 3x3 patterns;
- *colour*: POT colourized with a neural model downloaded at run time; here a random colour gradient along a
  random direction colours the pattern (nothing is downloaded);
- *augmentation*: POT's flips, rotation, background colour and blur (kernel 1 to 15, OpenCV's sigma rule).

Image ``i`` depends only on ``(seed, i)``, so a data set is reproducible and items can be made in any order.
Pixel values are 0..255 (float32), like the images POT read from disk.
"""
from __future__ import annotations

import functools
from typing import Dict, Tuple

import numpy as np

from pot_torch.api.data_loader import DataLoader

#: POT's coverage threshold for an IFS category, and the variants per category.
COVERAGE_THRESHOLD = 0.2
VARIANTS_PER_CATEGORY = 25
_VARIANT_FACTORS = (0.2, 0.6, 1.4, 1.8)
_MAX_ATTEMPTS = 200


def _iterate(maps: np.ndarray, points: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """``points`` points of the IFS ``maps`` (rows ``a, b, c, d, e, f, probability``) after ``steps`` steps."""
    xy = rng.uniform(-1.0, 1.0, (points, 2))
    cumulative = np.cumsum(maps[:, 6])
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            chosen = maps[np.minimum(np.searchsorted(cumulative, rng.random(points) * cumulative[-1]),
                                     len(maps) - 1)]
            xy = np.stack([xy[:, 0] * chosen[:, 0] + xy[:, 1] * chosen[:, 1] + chosen[:, 4],
                           xy[:, 0] * chosen[:, 2] + xy[:, 1] * chosen[:, 3] + chosen[:, 5]], axis=1)
    return xy[np.all(np.isfinite(xy), axis=1)]


def _to_pixels(xy: np.ndarray, height: int, width: int, margin: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the points rescaled into the image, ``margin`` pixels from the borders."""
    low, span = xy.min(axis=0), np.ptp(xy, axis=0)
    unit = (xy - low) / np.where(span > 0, span, 1.0)
    rows = (unit[:, 1] * max(height - 1 - 2 * margin, 0) + margin).astype(np.int64)
    cols = (unit[:, 0] * max(width - 1 - 2 * margin, 0) + margin).astype(np.int64)
    return rows, cols


@functools.lru_cache(maxsize=64)
def _category(seed: int, category: int) -> np.ndarray:
    """The IFS maps of a category: redrawn until the attractor covers the threshold (the best one tried after
    the last attempt)."""
    rng = np.random.default_rng([seed, category, 0])
    best, best_coverage = None, -1.0
    for _ in range(_MAX_ATTEMPTS):
        count = int(rng.integers(2, 8))
        maps = np.zeros((count, 7))
        maps[:, :6] = rng.uniform(-1.0, 1.0, (count, 6))
        maps[:, 6] = np.abs(maps[:, 0] * maps[:, 3] - maps[:, 1] * maps[:, 2]) + 1e-5
        xy = _iterate(maps, 6000, 30, rng)
        if len(xy) == 0:
            continue
        canvas = np.zeros((128, 128), bool)
        canvas[_to_pixels(xy, 128, 128, 0)] = True
        coverage = float(canvas.mean())
        if coverage > best_coverage:
            best, best_coverage = maps, coverage
        if coverage >= COVERAGE_THRESHOLD:
            break
    return best


def _variant(maps: np.ndarray, variant: int) -> np.ndarray:
    """POT's variant table: 0 is the category; ``1 + 4 p + k`` scales parameter ``p`` by factor ``k``."""
    if variant == 0:
        return maps
    scaled = maps.copy()
    parameter, factor = divmod(variant - 1, len(_VARIANT_FACTORS))
    scaled[:, parameter] *= _VARIANT_FACTORS[factor]
    return scaled


def _blur(image: np.ndarray, size: int) -> np.ndarray:
    """Gaussian blur with an odd kernel ``size`` (sigma by OpenCV's rule), edges reflected."""
    if size <= 1:
        return image
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(size) - size // 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    half = size // 2
    for axis in (0, 1):
        pad = [(0, 0)] * image.ndim
        pad[axis] = (half, half)
        padded = np.pad(image, pad, mode="reflect" if image.shape[axis] > half else "edge")
        length = image.shape[axis]
        image = sum(weight * np.take(padded, np.arange(k, k + length), axis=axis) for k, weight in enumerate(kernel))
    return image


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation about the centre, nearest neighbour; pixels from outside the image are 0."""
    height, width = image.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
    angle = np.deg2rad(degrees)
    src_r = np.rint(np.cos(angle) * (rows - centre_r) - np.sin(angle) * (cols - centre_c) + centre_r).astype(int)
    src_c = np.rint(np.sin(angle) * (rows - centre_r) + np.cos(angle) * (cols - centre_c) + centre_c).astype(int)
    inside = (src_r >= 0) & (src_r < height) & (src_c >= 0) & (src_c < width)
    rotated = np.zeros_like(image)
    rotated[inside] = image[src_r[inside], src_c[inside]]
    return rotated


def synthetic_image(seed: int, index: int, height: int, width: int) -> np.ndarray:
    """Image ``index`` of the synthetic data set ``seed``: ``[height, width, 3]`` uint8."""
    maps = _variant(_category(seed, index // VARIANTS_PER_CATEGORY), index % VARIANTS_PER_CATEGORY)
    rng = np.random.default_rng([seed, index, 1])
    margin = max(0, min(6, (min(height, width) - 4) // 4))
    rows, cols = _to_pixels(_iterate(maps, max(height * width // 2, 1000), 20, rng), height - 2, width - 2, margin)
    pattern = np.zeros((height, width), bool)
    bits = rng.random((len(rows), 9)) < 0.5
    for bit in range(9):
        row_offset, col_offset = divmod(bit, 3)
        pattern[rows[bits[:, bit]] + row_offset, cols[bits[:, bit]] + col_offset] = True
    direction = rng.normal(size=2)
    ramp = (np.mgrid[0:height, 0:width] * direction[:, None, None]).sum(axis=0)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = np.where(pattern[..., None], start + (end - start) * ramp[..., None], 0.0)
    if rng.random() >= 0.5:
        image = image[:, ::-1]
    if rng.random() >= 0.5:
        image = image[::-1]
    image = _rotate(np.ascontiguousarray(image), rng.uniform(-30, 30))
    image[~np.any(image > 0, axis=-1)] = rng.uniform(40, 200, 3)
    image = _blur(image, int(rng.choice(np.arange(1, 16, 2))))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class SyntheticImageLoader(DataLoader):
    """``count`` synthetic images as ``(image, None)`` items laid out for a model input.

    :param shape: the input shape with its batch axis (``[N, C, H, W]``, ``[N, H, W, C]``) or without it.
    :param layout: ``'NCHW'``, ``'NHWC'``, ``'CHW'`` or ``'HWC'``; ``C`` must be 1 (grey) or 3 (BGR).
    :param seed: the data set's seed: the same seed gives the same images.
    """

    def __init__(self, shape: Tuple[int, ...], layout: str, count: int, seed: int = 0) -> None:
        super().__init__({"subset_size": count, "shape": list(shape), "layout": layout})
        axes = dict(zip(layout, shape[len(shape) - len(layout):]))
        self._height, self._width, self._channels = int(axes["H"]), int(axes["W"]), int(axes["C"])
        self._channels_first = layout.endswith("CHW")
        self._count, self._seed = int(count), int(seed)
        self._cache: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> Tuple[np.ndarray, None]:
        if not 0 <= index < self._count:
            raise IndexError(f"synthetic image index {index} out of range 0..{self._count - 1}")
        if index not in self._cache:
            image = synthetic_image(self._seed, index, self._height, self._width)
            if self._channels == 1:
                image = np.rint(image.mean(axis=-1, keepdims=True)).astype(np.uint8)
            self._cache[index] = image.transpose(2, 0, 1) if self._channels_first else image
        return np.ascontiguousarray(self._cache[index], dtype=np.float32), None
