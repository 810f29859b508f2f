"""PyTorch adapters (installed as ``pot_torch.adapters``): the only part of pot_torch that imports torch."""
