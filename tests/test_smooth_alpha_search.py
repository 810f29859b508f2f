"""The 'auto' alpha search of SmoothQuant (smooth_alpha.py) gives the errors and the alpha of the plain per-alpha
computation it was optimised from, bit for bit."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import pytest

from pot_torch.algorithms.quantization import smooth_alpha
from pot_torch.algorithms.quantization.smooth_quant import group_scale

TINY = np.finfo(np.float32).tiny


def _plain_fake_quantize(values: np.ndarray, low: np.ndarray, high: np.ndarray, levels: int) -> np.ndarray:
    step = np.maximum((high - low) / (levels - 1), TINY)
    return np.clip(np.round((values - low) / step), 0, levels - 1) * step + low


def _plain_error(samples: Sequence[np.ndarray], weights: Sequence[np.ndarray], scale: np.ndarray,
                 symmetric: bool) -> float:
    """The search's error as first written: one alpha, every array built afresh."""
    smoothed = [x / scale for x in samples]
    if symmetric:
        high = float(np.mean([np.abs(x).max() for x in smoothed]))
        low = 0.0 if min(float(x.min()) for x in smoothed) >= 0 else -high
    else:
        low = min(float(np.mean([x.min() for x in smoothed])), 0.0)
        high = max(float(np.mean([x.max() for x in smoothed])), 0.0)
    quantized = _plain_fake_quantize(np.concatenate(smoothed), np.float32(low), np.float32(high), 256)
    error = 0.0
    for weight in weights:
        reference = np.concatenate(samples) @ weight.T
        scaled = weight * scale
        bound = np.maximum(np.abs(scaled).max(axis=1, keepdims=True), TINY)
        difference = quantized @ _plain_fake_quantize(scaled, -bound, bound, 255).T - reference
        error += float(np.sum(difference ** 2) / max(float(np.sum(reference ** 2)), TINY))
    return error


def _group(seed: int, channels: int = 24, outputs: Sequence[int] = (16, 40, 8)):
    """Activation rows of 5 samples (some with an outlier channel) and a group of weights ``[O, C]``."""
    rng = np.random.default_rng(seed)
    samples: List[np.ndarray] = []
    for rows in (7, 9, 3, 9, 6):
        x = rng.normal(size=(rows, channels)).astype(np.float32)
        x[:, 3] *= 40.0
        samples.append(x)
    weights = [(rng.normal(size=(o, channels)) * rng.uniform(0.1, 2.0, size=channels)).astype(np.float32)
               for o in outputs]
    act_abs_max = np.max([np.abs(x).max(axis=0) for x in samples], axis=0)
    return samples, weights, act_abs_max


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("symmetric", [False, True])
def test_errors_and_alpha_are_those_of_the_plain_per_alpha_computation(seed, symmetric):
    samples, weights, act_abs_max = _group(seed)
    if symmetric and seed % 2:
        samples = [np.abs(x) for x in samples]  # unsigned activations: the range starts at zero

    def scale_for(alpha: float) -> np.ndarray:
        return group_scale(act_abs_max, weights, alpha)

    plain = [_plain_error(samples, weights, scale_for(alpha), symmetric) for alpha in smooth_alpha.ALPHA_GRID]
    rows = np.concatenate(samples)
    references = [rows @ weight.T for weight in weights]
    assert [smooth_alpha.quantized_output_error(samples, weights, references, scale_for(alpha), symmetric)
            for alpha in smooth_alpha.ALPHA_GRID] == plain
    assert smooth_alpha.choose_alpha(samples, weights, scale_for, symmetric) == \
        smooth_alpha.ALPHA_GRID[int(np.argmin(plain))]


def test_the_search_leaves_its_inputs_unchanged():
    samples, weights, act_abs_max = _group(7)
    before = [x.copy() for x in samples], [w.copy() for w in weights]
    smooth_alpha.choose_alpha(samples, weights, lambda alpha: group_scale(act_abs_max, weights, alpha), False)
    for given, kept in zip(samples + weights, before[0] + before[1]):
        np.testing.assert_array_equal(given, kept)
