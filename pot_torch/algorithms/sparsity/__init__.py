"""Sparsity algorithms (POT's ``algorithms/sparsity``); importing this package registers each of them."""
from pot_torch.algorithms.sparsity import magnitude_sparsity  # noqa: F401
from pot_torch.algorithms.sparsity import weight_sparsity  # noqa: F401
