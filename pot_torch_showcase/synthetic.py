"""A learnable image data set generated in code, and a small CNN trained on it (demo, tests, benchmarks).

Nothing is downloaded: images of ten pattern classes (disc, square, triangle, cross, ring, three stripe
directions, checkerboard, dots) with random colours, positions and noise, fully determined by a seed.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import nn

CLASSES = ("disc", "square", "triangle", "cross", "ring", "horizontal", "vertical", "diagonal", "checker",
           "dots")
_PALETTE = np.array([
    [0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9], [0.9, 0.9, 0.1], [0.9, 0.1, 0.9],
    [0.1, 0.9, 0.9], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.6, 0.6, 0.6], [0.4, 0.2, 0.1],
], dtype=np.float32)


def _pattern_mask(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A [size, size] mask in {0, 1} of pattern ``cls`` at a random position, scale and phase."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
    r = rng.uniform(size * 0.18, size * 0.32)
    dy, dx = yy - cy, xx - cx
    period = rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, period)
    distance = np.sqrt(dy ** 2 + dx ** 2)
    width = r * 0.3
    masks = {
        0: distance <= r,
        1: (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8),
        2: (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6),
        3: ((np.abs(dy) <= width) & (np.abs(dx) <= r)) | ((np.abs(dx) <= width) & (np.abs(dy) <= r)),
        4: (distance <= r) & (distance >= r * 0.6),
        5: ((yy + phase) % period) < period / 2,
        6: ((xx + phase) % period) < period / 2,
        7: ((xx + yy + phase) % period) < period / 2,
        8: (((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2 == 1,
    }
    if cls in masks:
        return masks[cls].astype(np.float32)
    mask = np.zeros((size, size), dtype=np.float32)
    for _ in range(rng.integers(5, 10)):
        py, px = rng.uniform(2, size - 2, size=2)
        mask = np.maximum(mask, ((yy - py) ** 2 + (xx - px) ** 2 <= 2.5).astype(np.float32))
    return mask


def shape_images(n: int, seed: int, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` labelled images ``[n, 3, size, size]`` (float32, centred near 0) and labels ``[n]`` (int64).

    Colour is not tied to the class and noise is added, so the task is learnable but not trivial.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), size=n)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i, cls in enumerate(labels):
        foreground = _PALETTE[rng.integers(0, len(_PALETTE))] + rng.normal(0, 0.1, 3).astype(np.float32)
        background = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        mask = _pattern_mask(int(cls), rng, size)
        image = background[:, None, None] * (1 - mask) + foreground[:, None, None] * mask
        image += rng.normal(0, 0.25, size=image.shape).astype(np.float32)
        images[i] = (image - 0.5) / 0.3
    return images, labels.astype(np.int64)


def shapes_dataset(n: int, seed: int, size: int = 32) -> torch.utils.data.TensorDataset:
    """``shape_images`` as a torch ``TensorDataset`` of ``(image [3, size, size], label)`` samples."""
    images, labels = shape_images(n, seed, size)
    return torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


def small_cnn(width: int = 32, classes: int = len(CLASSES)) -> nn.Sequential:
    """A small VGG-style CNN: conv-BN-ReLU blocks, two max-pools, global pooling and a linear classifier."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        block(3, width), block(width, width), nn.MaxPool2d(2),
        block(width, 2 * width), block(2 * width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes),
    )


def train_classifier(module: nn.Module, dataset: torch.utils.data.TensorDataset, steps: int, batch: int = 64,
                     seed: int = 0, lr: float = 3e-3,
                     on_step: Optional[Callable[[int, float], None]] = None) -> nn.Module:
    """Train ``module`` with AdamW and a one-cycle schedule for ``steps`` batches, deterministically.

    The same initial weights, ``seed`` and torch thread count give the same weights (build ``module`` after
    ``torch.manual_seed`` for reproducible initial weights; CPU kernels sum in a thread-count dependent order).

    :param on_step: called with ``(step, loss)`` after each step (for progress display).
    :returns: the module, in eval mode.
    """
    torch.manual_seed(seed)
    images, labels = dataset.tensors
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    module.train()
    for step in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        loss = nn.functional.cross_entropy(module(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step, loss.item())
    return module.eval()


def accuracy(module: nn.Module, dataset: torch.utils.data.TensorDataset, batch: int = 256) -> float:
    """Top-1 accuracy of ``module`` on ``dataset`` (evaluated in torch)."""
    images, labels = dataset.tensors
    hits = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            hits += int((module(images[start:start + batch]).argmax(1) == labels[start:start + batch]).sum())
    return hits / len(images)
