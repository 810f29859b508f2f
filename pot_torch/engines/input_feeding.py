"""Filling model inputs from a batch of data items, following the rules of POT's ``IEEngine._fill_input``.

* ``data`` given as a dict is keyed by input name: the Parameter's friendly name (``/sink_port_N`` stripped)
  or any of its tensor names. Every model input must be given.
* Otherwise a one-input model takes ``data`` directly. A two-input model whose one rank-2 input is an
  ``image_info`` input gets that input filled with ``(height, width, channels)`` of each image. Other models
  need dict data.
* An item whose rank equals the input's rank is already batched by the data loader. If its batch dimension
  (engine config ``batch_dim``, default 0) is 1 it is treated as one sample; otherwise the sampler must not
  batch as well. Items are stacked along ``batch_dim``; an input with a static shape then receives the stack
  reshaped to that shape (as POT did; a warning says so when that reorders the data's axes), an input with a
  dynamic shape receives it as it is.

This is the one place where data items are checked against the model inputs (rank, shape, element type) and
cast: data loaders (``pot_torch.adapters.TorchDataLoader`` too) hand over items as they are.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.engines.data_items import DataItemError, DataItemTypeError
from pot_torch.engines.shape_hints import rank_hint, shape_hint, without_axis
from pot_torch.engines.utils import get_clean_name
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Numpy dtype kinds a model input can be filled from: bool, signed, unsigned, float.
_NUMERIC_KINDS = "biuf"


def input_name(port: Any) -> str:
    """The name a data item uses for model input ``port``: its Parameter's friendly name, cleaned."""
    return get_clean_name(port.get_node().get_friendly_name())


def _describe_inputs(ports: Sequence[Any]) -> str:
    parts = []
    for port in ports:
        names = sorted(set(port.get_names()) - {input_name(port)})
        extra = f" (tensor names {names})" if names else ""
        parts.append(f"'{input_name(port)}' {port.get_partial_shape()}{extra}")
    return ", ".join(parts)


def _numpy_dtype(port: Any) -> Optional[np.dtype]:
    element_type = port.get_element_type()
    if element_type == ov.Type.bf16 or element_type.is_dynamic():
        return None  # numpy has no bfloat16: OpenVINO converts from float32 itself
    return np.dtype(element_type.to_dtype())


def as_input_array(value: Any, port: Any) -> np.ndarray:
    """``value`` as a numpy array of ``port``'s element type (numeric values are cast as POT's runtime did)."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DataItemTypeError(
            f"data for model input '{input_name(port)}' cannot be turned into a numpy array ({error}); give a "
            "numpy array or nested lists of numbers") from error
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise DataItemTypeError(
            f"data for model input '{input_name(port)}' has dtype {array.dtype}, expected numbers for element "
            f"type {port.get_element_type().get_type_name()}; convert the data to a numeric numpy array")
    dtype = _numpy_dtype(port)
    if dtype is None:
        dtype = np.dtype(np.float32)
    if array.dtype != dtype:
        array = array.astype(dtype)
    return array


def batch_input(port: Any, items: Sequence[Any], batch_dim: int = 0) -> np.ndarray:
    """Stack the per-item values of one model input into the array fed to ``port``.

    :param port: the model input (``openvino.Output`` of a Parameter, or a compiled model's input).
    :param items: the values of this input, one per item of the batch.
    :param batch_dim: the batch axis.
    :raises DataItemError: the items cannot form an input of ``port``'s rank and shape; the message names the
        input, both shapes and what to do about it.
    """
    name = input_name(port)
    arrays = [as_input_array(item, port) for item in items]
    partial_shape = port.get_partial_shape()
    if partial_shape.rank.is_dynamic:
        return arrays[0] if len(arrays) == 1 else _stack(arrays, batch_dim, name)
    rank = partial_shape.rank.get_length()
    dims = [dim.get_length() if dim.is_static else None for dim in partial_shape]
    shapes = sorted({a.shape for a in arrays})
    wrong_rank = [a.ndim for a in arrays if a.ndim not in (rank, rank - 1)]
    if wrong_rank:
        raise DataItemError(
            f"model input '{name}' has rank {rank} (shape {partial_shape}) but the data item has shape "
            f"{_shapes_text(shapes)}; {rank_hint(dims, batch_dim, wrong_rank[0])}")
    loader_batched = arrays[0].ndim == rank
    if loader_batched and arrays[0].ndim > batch_dim and arrays[0].shape[batch_dim] == 1:
        arrays = [np.squeeze(a, batch_dim) if a.ndim == rank else a for a in arrays]
        loader_batched = False
    if loader_batched and len(arrays) > 1:
        raise DataItemError(
            f"the data items of model input '{name}' are already batched (shape {_shapes_text(shapes)} has the "
            f"input's rank {rank}) and the sampler batches {len(arrays)} of them as well; batch either in "
            "DataLoader.__getitem__ or with the sampler's batch_size (stat_batch_size), not both")
    if loader_batched:
        batched = arrays[0]
    elif len(arrays) == 1:
        batched = np.expand_dims(arrays[0], batch_dim)
    else:
        batched = _stack(arrays, batch_dim, name)
    if partial_shape.is_dynamic:
        if batched.ndim != rank or not partial_shape.compatible(ov.PartialShape(list(batched.shape))):
            hint = shape_hint(name, dims, _numpy_dtype(port), batched.shape, batch_dim)
            raise DataItemError(
                f"model input '{name}' takes shape {partial_shape} but the batch of {len(arrays)} item(s) gives "
                f"{tuple(batched.shape)} (item shape {_shapes_text(shapes)}); {hint}")
        return batched
    return _reshape_to_static(batched, port, batch_dim, len(arrays), shapes)


def _stack(arrays: List[np.ndarray], batch_dim: int, name: str) -> np.ndarray:
    try:
        return np.stack(arrays, axis=batch_dim)
    except ValueError as error:
        raise DataItemError(
            f"the items of a batch for model input '{name}' have different shapes "
            f"{_shapes_text(sorted({a.shape for a in arrays}))} and cannot be stacked ({error}); give every item "
            "the same shape or use batch_size 1") from error


def _reshape_to_static(batched: np.ndarray, port: Any, batch_dim: int, count: int, item_shapes: list) -> np.ndarray:
    name = input_name(port)
    target = tuple(int(d) for d in port.get_partial_shape().to_shape())
    if batched.shape == target:
        return batched
    if batched.size != math.prod(target):
        hint = shape_hint(name, target, _numpy_dtype(port), batched.shape, batch_dim)
        raise DataItemError(
            f"model input '{name}' has the static shape {list(target)} but the batch of {count} item(s) of shape "
            f"{_shapes_text(item_shapes)} gives {tuple(batched.shape)}; {hint}")
    if _non_unit(batched.shape) != _non_unit(target):
        _warn_reordering_reshape(name, tuple(batched.shape), target, tuple(without_axis(target, batch_dim)))
    logger.debug("reshaping data of shape %s to the static shape %s of input '%s'", batched.shape, target, name)
    return batched.reshape(target)


def _non_unit(shape: Sequence[int]) -> Tuple[int, ...]:
    return tuple(size for size in shape if size != 1)


@functools.lru_cache(maxsize=64)
def _warn_reordering_reshape(name: str, shape: Tuple[int, ...], target: Tuple[int, ...], sample: Tuple[int, ...]
                             ) -> None:
    """Warn (once per input and shapes) that POT's reshape to a static shape mixes up the data's axes."""
    logger.warning(
        "data of shape %s for model input '%s' is reshaped to its static shape %s as POT did, which mixes up the "
        "values if the axes are in another order (e.g. height, width, channels images for a channels-first "
        "input); if that is not intended, give items of shape %s (transpose them in the data loader)",
        shape, name, list(target), list(sample))


def _shapes_text(shapes: list) -> str:
    return " / ".join(str(tuple(s)) for s in shapes)


def _resolve_keys(ports: Sequence[Any], keys: Sequence[Any]) -> Dict[Any, int]:
    lookup: Dict[str, int] = {}
    for index, port in enumerate(ports):
        for name in port.get_names():
            lookup.setdefault(name, index)
        lookup[input_name(port)] = index
    resolved = {}
    for key in keys:
        if key not in lookup:
            raise DataItemError(
                f"data item key {key!r} is not a model input; the model's inputs are {_describe_inputs(ports)}")
        resolved[key] = lookup[key]
    missing = [input_name(p) for i, p in enumerate(ports) if i not in set(resolved.values())]
    if missing:
        raise DataItemError(
            f"the data item dict has no value for model input(s) {missing}; it has keys {list(keys)} and the "
            f"model's inputs are {_describe_inputs(ports)}")
    return resolved


def _fill_from_dicts(ports: Sequence[Any], data_batch: Sequence[Any], batch_dim: int) -> Dict[int, np.ndarray]:
    keys = list(data_batch[0].keys())
    for position, data in enumerate(data_batch):
        if not isinstance(data, Mapping) or list(data.keys()) != keys:
            raise DataItemError(
                f"item {position} of the batch does not have the same input keys as item 0 ({keys}); give every "
                "item a dict with the same keys")
    resolved = _resolve_keys(ports, keys)
    return {index: batch_input(ports[index], [data[key] for data in data_batch], batch_dim)
            for key, index in resolved.items()}


def _fill_with_image_info(ports: Sequence[Any], data_batch: Sequence[Any], batch_dim: int) -> Dict[int, np.ndarray]:
    ranks = [p.get_partial_shape().rank for p in ports]
    info = [i for i, r in enumerate(ranks) if r.is_static and r.get_length() == 2]
    if len(info) != 1:
        raise DataItemError(
            f"the model has two inputs {_describe_inputs(ports)}; without dict data only a model whose second "
            "input is a rank-2 image_info input can be fed; give each item's data as a dict "
            "{input name: array}")
    info_index, image_index = info[0], 1 - info[0]
    image_port = ports[image_index]
    feed = {image_index: batch_input(image_port, data_batch, batch_dim)}
    rows = []
    for data in data_batch:
        shape = np.shape(data)
        image_rank = image_port.get_partial_shape().rank
        if image_rank.is_static and len(shape) == image_rank.get_length():
            shape = shape[:batch_dim] + shape[batch_dim + 1:]
        if len(shape) < 3:
            raise DataItemError(
                f"cannot fill image_info input '{input_name(ports[info_index])}' from an image of shape {shape}; "
                "the image must be (channels, height, width), or give dict data")
        channels, height, width = shape[-3:]
        rows.append((height, width, channels))
    feed[info_index] = batch_input(ports[info_index], [np.array(rows)], batch_dim)
    return feed


def fill_inputs(ports: Sequence[Any], data_batch: Sequence[Any], batch_dim: int = 0) -> Dict[int, np.ndarray]:
    """Return ``{input index: batched array}`` for model inputs ``ports`` from the data of a batch.

    :param ports: the model's inputs (``model.inputs`` of an ``openvino.Model`` or ``CompiledModel``).
    :param data_batch: the ``data`` part of each item of the batch.
    :param batch_dim: the batch axis (engine config ``batch_dim``).
    :raises DataItemError: the data does not fit the model; the message names the input and both shapes.
    """
    if isinstance(data_batch[0], Mapping):
        return _fill_from_dicts(ports, data_batch, batch_dim)
    if len(ports) == 1:
        return {0: batch_input(ports[0], data_batch, batch_dim)}
    if len(ports) == 2:
        return _fill_with_image_info(ports, data_batch, batch_dim)
    raise DataItemError(
        f"the model has {len(ports)} inputs {_describe_inputs(ports)}; give each item's data as a dict "
        "{input name: array}")
