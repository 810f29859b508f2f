"""Compression algorithms, registered by their POT names in ``COMPRESSION_ALGORITHMS``."""
from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS, Registry
from pot_torch.algorithms import quantization  # noqa: F401  (registers the algorithms)
from pot_torch.algorithms import sparsity  # noqa: F401  (registers the sparsity algorithms)

__all__ = ["Algorithm", "Registry", "COMPRESSION_ALGORITHMS"]
