"""Parsing POT data items: ``(data, annotation[, metadata])`` and the older ``((img_id, annotation), data[, meta])``.

A batch is the list of items a sampler yields. ``parse_batch`` splits it into annotations, input data and
metadata the way POT's ``IEEngine._process_batch`` did, so engines written for POT get the same lists.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

#: ``[(sample_id, annotation)]``, the annotation list ``IEEngine`` passes around.
Annotations = List[Tuple[Any, Any]]


class DataItemError(ValueError):
    """A data item does not fit the model or the POT item format.

    The engine prefixes the message with the data set indices of the offending batch.
    """


class DataItemTypeError(DataItemError, TypeError):
    """A data item holds values of a type the model input cannot take."""


def is_legacy_item(item: Any) -> bool:
    """Whether ``item`` is in POT's older ``((img_id, annotation), data[, metadata])`` format."""
    return isinstance(item, tuple) and len(item) > 0 and isinstance(item[0], tuple)


def _check_items(batch: Sequence[Any]) -> int:
    """Return the common tuple length (2 or 3) of the items; raise ``DataItemError`` otherwise."""
    if len(batch) == 0:
        raise DataItemError("got an empty batch; the sampler must yield at least one item per batch")
    for position, item in enumerate(batch):
        if not isinstance(item, tuple):
            raise DataItemError(
                f"item {position} of the batch is a {type(item).__name__}, expected a tuple "
                "(data, annotation), (data, annotation, metadata) or ((img_id, annotation), data[, metadata]); "
                "return such a tuple from DataLoader.__getitem__ (annotation may be None)")
        if len(item) not in (2, 3):
            raise DataItemError(
                f"item {position} of the batch is a tuple of {len(item)} elements, expected 2 "
                "(data, annotation) or 3 (data, annotation, metadata)")
    lengths = {len(item) for item in batch}
    if len(lengths) > 1:
        raise DataItemError(
            "inconsistent items in the batch: some have metadata (3 elements) and some do not (2 elements); "
            "return the same tuple length from every DataLoader.__getitem__ call")
    legacy = {is_legacy_item(item) for item in batch}
    if len(legacy) > 1:
        raise DataItemError(
            "inconsistent items in the batch: some use the ((img_id, annotation), data) format and some "
            "(data, annotation); use one format for the whole data set")
    for position, item in enumerate(batch):
        if is_legacy_item(item) and len(item[0]) != 2:
            raise DataItemError(
                f"item {position} of the batch starts with a tuple of {len(item[0])} elements; the older POT "
                "format is ((img_id, annotation), data[, metadata])")
    return lengths.pop()


def parse_batch(batch: Sequence[Any]) -> Tuple[Annotations, List[Any], List[Any]]:
    """Split a batch of POT data items into ``(annotations, data, metadata)``.

    ``annotations`` is ``[(sample_id, annotation)]``: for ``(data, annotation)`` items the id is the position
    in the batch; for ``((img_id, annotation), data)`` items it is ``img_id``. An annotation is passed on as
    the item gives it, dicts included (e.g. detection's ``{'boxes': ..., 'labels': ...}``), as POT 2023.3 did.
    ``metadata`` is one entry per item (``{}`` when the items carry none).

    :raises DataItemError: an item is not a 2- or 3-tuple, or the items of the batch mix formats.
    """
    length = _check_items(batch)
    if is_legacy_item(batch[0]):
        annotations: Annotations = [tuple(item[0]) for item in batch]  # type: ignore[misc]
        data = [item[1] for item in batch]
    else:
        annotations = [(position, item[1]) for position, item in enumerate(batch)]
        data = [item[0] for item in batch]
    metadata = [item[2] for item in batch] if length == 3 else [{} for _ in batch]
    return annotations, data, metadata


def has_own_sample_ids(batch: Sequence[Any]) -> bool:
    """Whether the items name their samples (the older ``((img_id, annotation), data)`` format).

    Otherwise an engine identifies samples by their data set index.
    """
    return bool(batch) and is_legacy_item(batch[0])


def annotations_valid(annotations: Any) -> bool:
    """Whether a metric can be updated with ``annotations``: present, and no annotation is ``None``."""
    return bool(annotations) and all(annotation is not None for _, annotation in annotations)


def indexed_batches(sampler: Any) -> Iterator[Tuple[List[int], List[Any]]]:
    """``(data set indices, items)`` per batch; a sampler without ``iter_indexed`` gets running positions."""
    if hasattr(sampler, "iter_indexed"):
        yield from sampler.iter_indexed()
        return
    position = 0
    for batch in sampler:
        if not isinstance(batch, (list, tuple)):
            raise TypeError(f"IEEngine reads batches (lists of data items) from its sampler, got a "
                            f"{type(batch).__name__}; use BatchSampler (IndexSampler yields indices for engines "
                            "that read items themselves)")
        batch = list(batch)
        yield list(range(position, position + len(batch))), batch
        position += len(batch)


def sorted_records(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per-sample records sorted by ``sample_id`` (stable); kept in sample order if ids do not compare."""
    try:
        return sorted(records, key=lambda record: record["sample_id"])
    except TypeError:
        return list(records)
