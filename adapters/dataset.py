"""``TorchDataLoader``: a POT ``DataLoader`` over a torch data set, a torch ``DataLoader`` or any iterable."""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import openvino as ov
import torch
from torch.utils.data import DataLoader as TorchBatchLoader
from torch.utils.data import IterableDataset, TensorDataset

from pot_torch.adapters.tensors import to_numpy, to_torch, unbind
from pot_torch.api import DataLoader
from pot_torch.engines.input_feeding import input_name
from pot_torch.graph.nx_model import CompressedModel

_SPLIT_HINT = (
    "pass transform_fn=lambda item: <model input> (and target_fn=lambda item: <annotation> for "
    "metrics) to say how to read the item"
)


class LoaderBatch(list):
    """The annotation of an item its source had already batched: a list with one annotation per sample.

    ``TorchMetric`` and ``FunctionMetric`` expand it into per-sample annotations; any other metric sees a
    plain list of the batch's annotations.
    """


def model_input_names(model: Union[ov.Model, CompressedModel]) -> List[str]:
    """The input names of ``model`` (an ``openvino.Model`` or single ``CompressedModel``) in order, as items
    name them (``IEEngine`` feeds dict data by these names)."""
    if isinstance(model, CompressedModel):
        model = model.get_model()
    if not isinstance(model, ov.Model):
        raise TypeError(
            f"model must be an openvino.Model or a CompressedModel, got {type(model).__name__}; "
            "convert a torch module first with pot_torch.adapters.convert_torch_model"
        )
    return [input_name(port) for port in model.inputs]


class TorchDataLoader(DataLoader):
    """Serves a torch data source as a POT data loader: items ``(data, annotation)`` of numpy arrays.

    Sources:

    * a map-style ``torch.utils.data.Dataset`` (torchvision ``ImageFolder``, ``FakeData``, ``TensorDataset``
      ..., or anything with ``__len__`` and ``__getitem__``): one item per sample;
    * a ``torch.utils.data.DataLoader``: one item per batch, already batched (its batches are fixed when the
      adapter is built, so a shuffling loader gives a stable order);
    * any other iterable (``transform_fn`` as in ``nncf.Dataset``): read once, in order, as items are
      asked for.

    By default a sample ``(input, target)`` becomes ``(data, annotation)``, ``(input, target, metadata_dict)``
    keeps the metadata and a lone input gets annotation ``None``. With ``transform_fn`` the model input is
    ``transform_fn(item)`` and the annotation ``target_fn(item)`` (``None`` without ``target_fn``).

    The input may be a tensor (one model input), a tuple/list (inputs by position) or a dict (inputs by name).
    Tensors become numpy arrays as they are: one sample without a batch axis, or the batch a batching torch
    ``DataLoader`` made (POT's loader-batched item). Given ``model``, the inputs are mapped to its input names
    (count and names are checked; a clear ``ValueError`` names the item and the inputs); ``data`` is an array
    for a one-input model, else a dict keyed by input name. Shapes and element types are checked, and samples
    stacked into batches and cast, where every POT data loader's items go: ``IEEngine``'s input feeding
    (``pot_torch.engines.input_feeding``), whose errors name the item, the input, both shapes and the fix.

    :param source: the data source.
    :param model: the ``openvino.Model`` or ``CompressedModel`` the items are for (recommended).
    :param input_names: names of the inputs for tuple inputs when ``model`` is not given (a string: one name).
    :param transform_fn: reads the model input from a raw item.
    :param target_fn: reads the annotation from a raw item (used with ``transform_fn``).
    :param batched: whether items already carry the batch axis (default: True for a batching torch
        ``DataLoader``, else False). Decides the annotation layout and ``example_input``.
    :param max_items: use at most this many items of the source.
    """

    def __init__(
        self,
        source: Any,
        model: Union[ov.Model, CompressedModel, None] = None,
        input_names: Union[str, Sequence[str], None] = None,
        transform_fn: Optional[Callable[[Any], Any]] = None,
        target_fn: Optional[Callable[[Any], Any]] = None,
        batched: Optional[bool] = None,
        max_items: Optional[int] = None,
    ) -> None:
        self._source, source_batched = make_source(source, max_items)
        self._batched = source_batched if batched is None else bool(batched)
        self._transform_fn = transform_fn
        self._target_fn = target_fn
        self._names = _resolve_names(model, input_names)
        super().__init__(None)

    @property
    def batched(self) -> bool:
        """Whether items carry the batch axis as the source gives them."""
        return self._batched

    @property
    def input_names(self) -> Optional[List[str]]:
        """The model input names items are mapped to, or ``None`` when not known."""
        return list(self._names) if self._names is not None else None

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Tuple[Any, ...]:
        data, annotation, metadata = self._split(self._source[index], index)
        data = self._model_data(to_numpy(data), index)
        annotation = to_numpy(annotation)
        if isinstance(annotation, np.generic) or (isinstance(annotation, np.ndarray) and annotation.ndim == 0):
            annotation = (
                annotation.item()
            )  # a class index as a plain number, as torchvision data sets give it
        elif self._batched and annotation is not None:
            annotation = LoaderBatch(unbind(annotation))
        return (data, annotation) if metadata is None else (data, annotation, metadata)

    def example_input(self, index: int = 0) -> Any:
        """The model input of item ``index`` as torch tensors with a batch axis (for ``convert_model``).

        A tensor for one input, a tuple for inputs by position, a dict for inputs by name.
        """
        data, _, _ = self._split(self._source[index], index)
        inputs = to_torch(_checked_arrays(to_numpy(data), index))
        if isinstance(inputs, dict):
            return {key: self._with_batch_axis(value) for key, value in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return tuple(self._with_batch_axis(value) for value in inputs)
        return self._with_batch_axis(inputs)

    def for_model(self, model: Union[ov.Model, CompressedModel]) -> "TorchDataLoader":
        """This loader with its items mapped to ``model``'s inputs; the source is shared, not read again."""
        loader = copy.copy(self)
        loader._names = _resolve_names(model, None)
        return loader

    def _with_batch_axis(self, value: Any) -> torch.Tensor:
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        return tensor if self._batched else tensor.unsqueeze(0)

    def _split(self, item: Any, index: int) -> Tuple[Any, Any, Optional[dict]]:
        """Return ``(model input, annotation, metadata)`` of a raw item."""
        if self._transform_fn is not None:
            target = self._target_fn(item) if self._target_fn is not None else None
            return self._transform_fn(item), target, None
        if self._target_fn is not None:
            raise ValueError(
                "target_fn is used together with transform_fn; pass transform_fn=lambda item: "
                "<model input> as well"
            )
        if not isinstance(item, (tuple, list)):
            return item, None, None
        if len(item) == 1:
            return item[0], None, None
        if len(item) == 2:
            return item[0], item[1], None
        if len(item) == 3 and isinstance(item[2], dict):
            return item[0], item[1], item[2]
        raise ValueError(
            f"data set item {index} is a {type(item).__name__} of {len(item)} elements; expected "
            f"(input, target), (input, target, metadata dict) or a lone input; {_SPLIT_HINT}"
        )

    def _model_data(self, inputs: Any, index: int) -> Any:
        """Map the item's inputs to model input names when they are known; arrays stay as they are."""
        names = self._names
        if isinstance(inputs, dict):
            named = _named_from_dict(inputs, names, index)
        elif isinstance(inputs, (list, tuple)):
            if names is None:
                if len(inputs) == 1:
                    return _as_array(inputs[0], "input 0", index)
                raise ValueError(
                    f"data set item {index} gives {len(inputs)} inputs by position but their names "
                    "are not known; pass model=<the converted model> or input_names=[...]"
                )
            named = _named_from_sequence(inputs, names, index)
        else:
            if names is not None and len(names) != 1:
                raise ValueError(
                    f"data set item {index} gives 1 input but the model has {len(names)} inputs "
                    f"{names}; return a tuple or a dict of them, or {_SPLIT_HINT}"
                )
            return _as_array(inputs, "input", index)
        arrays = {name: _as_array(value, f"input '{name}'", index) for name, value in named.items()}
        return next(iter(arrays.values())) if names is not None and len(names) == 1 else arrays


def _resolve_names(model: Any, input_names: Union[str, Sequence[str], None]) -> Optional[List[str]]:
    if isinstance(input_names, str):
        input_names = [input_names]
    if model is None:
        return [str(name) for name in input_names] if input_names is not None else None
    names = model_input_names(model)
    if input_names is not None and list(input_names) != names:
        raise ValueError(
            f"input_names {list(input_names)} differ from the model's inputs {names}; give one of model or "
            "input_names"
        )
    return names


def _named_from_dict(inputs: Dict[Any, Any], names: Optional[List[str]], index: int) -> Dict[str, Any]:
    """The item's dict of inputs keyed by input name, in the model's input order when that is known."""
    if names is None:
        return {str(key): value for key, value in inputs.items()}
    missing = [name for name in names if name not in inputs]
    unexpected = [key for key in inputs if key not in names]
    if missing or unexpected:
        raise ValueError(
            f"data set item {index} gives inputs {list(inputs)} but the model's inputs are {names} "
            f"(missing: {missing}, unexpected: {unexpected}); rename the keys, or {_SPLIT_HINT}"
        )
    return {name: inputs[name] for name in names}


def _named_from_sequence(inputs: Sequence[Any], names: List[str], index: int) -> Dict[str, Any]:
    if len(inputs) != len(names):
        raise ValueError(
            f"data set item {index} gives {len(inputs)} inputs but the model has {len(names)} inputs "
            f"{names}; {_SPLIT_HINT}"
        )
    return dict(zip(names, inputs))


def _as_array(value: Any, what: str, index: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float, np.generic)):
        return np.asarray(value)
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    raise TypeError(
        f"data set item {index}: {what} is a {name}, not a tensor or array; add a "
        "transform that makes tensors (e.g. torchvision.transforms.ToTensor()) or "
        f"{_SPLIT_HINT}"
    )


def _checked_arrays(inputs: Any, index: int) -> Any:
    """``inputs`` (a value, tuple/list or dict of model inputs) with every value checked by ``_as_array``."""
    if isinstance(inputs, dict):
        return {key: _as_array(value, f"input '{key}'", index) for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return tuple(_as_array(value, f"input {position}", index) for position, value in enumerate(inputs))
    return _as_array(inputs, "input", index)


def make_source(source: Any, max_items: Optional[int] = None) -> Tuple[Any, bool]:
    """Wrap ``source`` for random access; return ``(source view, whether its items are batched)``."""
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}")
    if isinstance(source, (str, bytes, os.PathLike)):
        raise TypeError(
            f"source is the path or string {source!r}, not a data set; give a torch Dataset (e.g. "
            "torchvision.datasets.ImageFolder(path, transform=transforms.ToTensor())), a torch DataLoader or an "
            "iterable of items"
        )
    if isinstance(source, TorchBatchLoader):
        batching = source.batch_sampler is not None
        if not isinstance(source.dataset, IterableDataset):
            return _TorchLoaderSource(source, max_items), batching
        return _IterableSource(source, max_items), batching
    if isinstance(source, IterableDataset) or not (
        hasattr(source, "__getitem__") and hasattr(source, "__len__")
    ):
        if not hasattr(source, "__iter__"):
            raise TypeError(
                f"source must be a torch Dataset, a torch DataLoader or an iterable, got "
                f"{type(source).__name__}"
            )
        return _IterableSource(source, max_items), False
    if isinstance(source, TensorDataset) and all(_shares_memory(t) for t in source.tensors):
        return _ArraySource(source, max_items), False
    return _MapSource(source, max_items), False


def _shares_memory(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu" and not tensor.requires_grad and tensor.dtype != torch.bfloat16


class _MapSource:
    """Random access to a map-style data set."""

    def __init__(self, data: Any, max_items: Optional[int]) -> None:
        self._data = data
        self._len = len(data) if max_items is None else min(len(data), max_items)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self._len:
            raise IndexError(f"item index {index} is out of range for a data set of {self._len} items")
        return self._data[index]


class _ArraySource(_MapSource):
    """A ``TensorDataset`` read through numpy views of its tensors (no copy; indexing numpy is cheaper)."""

    def __init__(self, data: TensorDataset, max_items: Optional[int]) -> None:  # noqa: D107
        self._data = tuple(tensor.numpy() for tensor in data.tensors)
        self._len = len(data) if max_items is None else min(len(data), max_items)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self._len:
            raise IndexError(f"item index {index} is out of range for a data set of {self._len} items")
        return tuple(array[index] for array in self._data)


class _TorchLoaderSource(_MapSource):
    """A torch ``DataLoader`` over a map-style data set: item ``i`` is its batch ``i``, built on request.

    The batches' sample indices are drawn once here, so a shuffling loader keeps one order. Samples are read
    in this process (the loader's workers are not used).
    """

    def __init__(self, loader: TorchBatchLoader, max_items: Optional[int]) -> None:
        self._dataset = loader.dataset
        self._collate = loader.collate_fn
        self._auto_batch = loader.batch_sampler is not None
        groups = loader.batch_sampler if self._auto_batch else loader.sampler
        super().__init__([list(group) if self._auto_batch else group for group in groups], max_items)

    def __getitem__(self, index: int) -> Any:
        indices = super().__getitem__(index)
        if self._auto_batch:
            return self._collate([self._dataset[i] for i in indices])
        return self._collate(self._dataset[indices])


class _IterableSource:
    """Random access to an iterable: items are read in order as they are first asked for, then kept."""

    def __init__(self, iterable: Any, max_items: Optional[int]) -> None:
        self._iterable = iterable
        self._iterator: Optional[Iterator[Any]] = None
        self._items: List[Any] = []
        self._exhausted = False
        self._max_items = max_items

    def __len__(self) -> int:
        if hasattr(self._iterable, "__len__") and not self._exhausted:
            length = len(self._iterable)
            return length if self._max_items is None else min(length, self._max_items)
        self._read_until(None)
        return len(self._items)

    def __getitem__(self, index: int) -> Any:
        self._read_until(index)
        if not 0 <= index < len(self._items):
            raise IndexError(
                f"item index {index} is out of range: the iterable gave {len(self._items)} items"
            )
        return self._items[index]

    def _read_until(self, index: Optional[int]) -> None:
        """Read items until ``index`` is available (``None``: until the end or ``max_items``)."""
        limit = self._max_items if index is None else index + 1
        if self._max_items is not None and limit is not None:
            limit = min(limit, self._max_items)
        if self._iterator is None:
            self._iterator = iter(self._iterable)
        while not self._exhausted and (limit is None or len(self._items) < limit):
            try:
                self._items.append(next(self._iterator))
            except StopIteration:
                self._exhausted = True

