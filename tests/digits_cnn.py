"""Issue #12's training post-step model: a small BatchNorm CNN trained a few epochs on real digits.

scikit-learn's digits (1,797 8x8 images, bundled with scikit-learn, nothing downloaded) upsampled to 16x16;
a fixed shuffle puts 1,200 in training and the other 597 in validation. Shared by tests/test_accuracy_aware.py
and benchmarks/bench_post_step.py.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import nn

TRAIN_SIZE = 1200


def digits_datasets() -> Tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """``(train, validation)``: images ``[1, 16, 16]`` (float32, roughly centred) and labels 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = nn.functional.interpolate(torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None],
                                       size=(16, 16), mode="bilinear", align_corners=False)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    images, labels = (images[order] - 0.3) / 0.4, torch.from_numpy(digits.target)[order]
    return (torch.utils.data.TensorDataset(images[:TRAIN_SIZE], labels[:TRAIN_SIZE]),
            torch.utils.data.TensorDataset(images[TRAIN_SIZE:], labels[TRAIN_SIZE:]))


def bn_cnn(width: int = 8) -> nn.Sequential:
    """Three conv-BatchNorm-ReLU blocks (two max-pools between), global average pooling, a linear classifier."""

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(1, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2),
                         *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4 * width, 10))


def trained_digits_cnn(epochs: int = 6, seed: int = 0
                       ) -> Tuple[nn.Sequential, torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """``(module in eval mode, train, validation)``: ``bn_cnn`` trained ``epochs`` epochs (SGD, momentum 0.9,
    lr 0.01, batch 64) on one thread, so the weights are the same on every run (top-1 about 0.88)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        train, validation = digits_datasets()
        module = bn_cnn()
        optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
        loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        module.train()
        for _ in range(epochs):
            for images, labels in loader:
                loss = nn.functional.cross_entropy(module(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return module.eval(), train, validation
