"""Conversion between torch tensors and numpy arrays inside nested structures (dicts, lists, tuples)."""

from __future__ import annotations

from typing import Any, List

import numpy as np
import torch

# numpy has no bfloat16; such tensors are widened to float32 on the way out.
_WIDENED_DTYPES = {torch.bfloat16: torch.float32}


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` as a numpy array, sharing memory where torch allows it (CPU, no grad, numpy dtype)."""
    if not tensor.requires_grad and tensor.dtype not in _WIDENED_DTYPES and tensor.device.type == "cpu":
        return tensor.numpy()
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    widened = _WIDENED_DTYPES.get(tensor.dtype)
    if widened is not None:
        tensor = tensor.to(widened)
    return tensor.numpy()


def to_numpy(obj: Any) -> Any:
    """Replace every torch tensor in ``obj`` by a numpy array.

    Dicts, lists and tuples (named tuples included) are rebuilt with the same type and keys; numpy arrays,
    numbers, strings, ``None`` and other objects are returned unchanged.
    """
    if isinstance(obj, torch.Tensor):
        return tensor_to_numpy(obj)
    if isinstance(obj, dict):
        return type(obj)((key, to_numpy(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        converted = [to_numpy(value) for value in obj]
        if isinstance(obj, tuple):
            return type(obj)(*converted) if hasattr(obj, "_fields") else tuple(converted)
        return converted
    return obj


def to_torch(obj: Any) -> Any:
    """Replace every numpy array and numpy scalar in ``obj`` by a torch tensor (sharing memory when possible).

    Dicts, lists and tuples are rebuilt; torch tensors, Python numbers and other objects are unchanged.
    """
    if isinstance(obj, np.ndarray):
        if not obj.flags.writeable:
            obj = obj.copy()
        return torch.from_numpy(obj)
    if isinstance(obj, np.generic):
        return torch.as_tensor(obj)
    if isinstance(obj, dict):
        return type(obj)((key, to_torch(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        converted = [to_torch(value) for value in obj]
        return tuple(converted) if isinstance(obj, tuple) else converted
    return obj


def unbind(obj: Any) -> List[Any]:
    """Split a batched structure along its first axis into a list of per-sample structures.

    Arrays and tensors give their rows (a 0-d row becomes a Python number); a dict of batched values gives one
    dict per sample; a list or tuple is taken to be already per sample. Anything else raises ``TypeError``.
    """
    if isinstance(obj, torch.Tensor):
        obj = tensor_to_numpy(obj)
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            raise TypeError(f"cannot split a 0-d array ({obj!r}) into samples: it has no batch axis")
        return [row.item() if row.ndim == 0 else row for row in obj]
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, dict):
        columns = {key: unbind(value) for key, value in obj.items()}
        sizes = {key: len(rows) for key, rows in columns.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"cannot split a batched dict whose entries have different batch sizes: {sizes}")
        count = next(iter(sizes.values()), 0)
        return [{key: rows[i] for key, rows in columns.items()} for i in range(count)]
    raise TypeError(
        f"cannot split a {type(obj).__name__} into samples; expected a tensor, array, list or dict"
    )
