"""Quantization algorithms; importing this package registers each of them."""
