"""What to tell a user whose data does not fit a model input's shape, fitting the kind of data.

Used by ``input_feeding`` (the one place where data items are checked against model inputs). The hints name
the fixes of both routes into pot_torch: a torch module converted by ``pot_torch.adapters`` (``input_shapes``,
``dynamic_batch``) and an ``openvino.Model`` (``model.reshape``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

#: ``None`` is a dynamic dimension.
Dims = Sequence[Optional[int]]

#: Numpy dtype kinds of integer data (token ids, attention masks, boolean masks).
_INTEGER_KINDS = "iub"


def format_dims(dims: Dims) -> str:
    """``[1,3,?,?]``: dimensions as OpenVINO prints a partial shape."""
    return "[" + ",".join("?" if dim is None else str(dim) for dim in dims) + "]"


def without_axis(dims: Dims, axis: int) -> List[Optional[int]]:
    """``dims`` without ``axis`` (the shape of one sample when ``axis`` is the batch axis)."""
    return [dim for position, dim in enumerate(dims) if position != axis]


def _matches(shape: Sequence[int], dims: Dims) -> bool:
    return len(shape) == len(dims) and all(dim is None or dim == size for size, dim in zip(shape, dims))


def rank_hint(dims: Dims, batch_dim: int, item_rank: int) -> str:
    """What to do about items whose number of axes fits neither a sample nor a batch of the input."""
    sample = format_dims(without_axis(dims, batch_dim))
    return (f"give each item the input's shape without the batch axis ({sample}) or with it "
            f"({format_dims(dims)}); the item has {item_rank} axes, the input {len(dims)}: check the data set's "
            "transforms")


def shape_hint(name: str, dims: Dims, dtype: Optional[np.dtype], batched: Sequence[int], batch_dim: int) -> str:
    """What to do about a batch of shape ``batched`` that input ``name`` of shape ``dims`` does not take.

    :param name: the input's name.
    :param dims: the input's dimensions (``None``: dynamic).
    :param dtype: the input's element type as numpy sees it (``None``: unknown or bfloat16).
    :param batched: the shape of the stacked batch (the input's rank).
    :param batch_dim: the batch axis.
    """
    if len(batched) != len(dims):
        return rank_hint(dims, batch_dim, len(batched) - 1)
    if _matches(without_axis(batched, batch_dim), without_axis(dims, batch_dim)):
        size = dims[batch_dim]
        return (f"the model has a static batch of {size}: use batch_size {size} (the sampler's batch_size or "
                "stat_batch_size, or the torch DataLoader's batch_size) or make the model's batch axis dynamic "
                "(convert_torch_model(..., dynamic_batch=True); for an openvino.Model, model.reshape)")
    axes = [axis for axis, dim in enumerate(dims) if axis != batch_dim and dim is not None and dim != batched[axis]]
    dynamic = [-1 if axis == batch_dim or axis in axes or dim is None else dim
               for axis, dim in enumerate(dims)]
    convert = (f"or convert the model with {'that axis' if len(axes) == 1 else 'those axes'} dynamic: "
               f"quantize(..., input_shapes={{'{name}': {dynamic}}}) (or convert_torch_model's input_shapes; "
               f"for an openvino.Model, model.reshape({{'{name}': {dynamic}}}))")
    if dtype is not None and dtype.kind in _INTEGER_KINDS and axes:
        lengths = ", ".join(f"{dims[axis]} on axis {axis}" for axis in axes)
        return (f"'{name}' takes integer data (token ids, masks) of a fixed length ({lengths}); pad or "
                "truncate every item to that length (e.g. tokenizer(..., padding='max_length', "
                f"max_length={dims[axes[-1]]}, truncation=True)), {convert}")
    if len(dims) == 4 and (dtype is None or dtype.kind == "f") and None not in dims[-2:]:
        return ("resize the images to the model's input size (e.g. torchvision.transforms.Resize("
                f"({dims[-2]}, {dims[-1]})) or cv2.resize), {convert}")
    return f"give items of the model's input size, {convert}"
