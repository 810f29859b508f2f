"""PyTorch adapters (installed as ``pot_torch.adapters``): the only part of pot_torch that imports torch.

* ``TorchDataLoader``: a torch ``Dataset``, ``DataLoader`` or iterable as a POT ``DataLoader``;
* ``TorchMetric`` / ``FunctionMetric``: a torchmetrics-style object or a function as a POT ``Metric``;
* ``convert_torch_model``: a ``torch.nn.Module`` as a ``CompressedModel`` (``ModelConversionError`` on
  failure);
* ``quantize``: the one-call post-training step (``QuantizationResult`` with the INT8 model, metrics,
  ``save`` and ``module``, an ``OpenVINOModule`` running it from torch).

Importing this package does not import torch; the first use of one of these names does.
"""

from __future__ import annotations

import importlib
from typing import Any, List

_EXPORTS = {
    "TorchDataLoader": "dataset",
    "LoaderBatch": "dataset",
    "TorchMetric": "metric",
    "FunctionMetric": "metric",
    "convert_torch_model": "model",
    "ModelConversionError": "model",
    "OpenVINOModule": "runtime_module",
    "quantize": "post_training",
    "QuantizationResult": "post_training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pot_torch.adapters' has no attribute '{name}'; it exports {__all__}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
