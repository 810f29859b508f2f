"""The abstract sampler of the POT API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Iterator, List, Optional, Sequence

import numpy as np


class Sampler(ABC):
    """Chooses items of a data loader and groups them into batches.

    :param data_loader: the data set to draw from.
    :param batch_size: items per batch (at least 1).
    :param subset_indices: data set indices to draw, in order; ``None`` means all of them.
    """

    def __init__(self, data_loader: Any = None, batch_size: int = 1,
                 subset_indices: Optional[Sequence[int]] = None) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Sampler batch_size must be a positive integer, got {batch_size!r}")
        if subset_indices is not None and data_loader is not None:
            subset_indices = checked_indices(subset_indices, len(data_loader),
                                             f"{type(self).__name__} subset_indices")
        self._data_loader = data_loader
        self.batch_size = batch_size
        self._subset_indices = subset_indices

    @property
    def subset_indices(self) -> Sequence[int]:
        """The data set indices this sampler draws, in order."""
        if self._subset_indices is not None:
            return self._subset_indices
        if self._data_loader is None:
            raise ValueError("a Sampler without a data_loader needs subset_indices")
        return range(len(self._data_loader))

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples (not batches) the sampler yields."""

    @abstractmethod
    def __iter__(self) -> Iterator[Any]:
        """Yield the sampler's batches or indices."""


def checked_indices(indices: Any, size: int, where: str) -> List[int]:
    """``indices`` as a list of ints, each an index of a data set of ``size`` items (``0`` to ``size - 1``).

    :param where: what holds them, for the message (e.g. ``"Pipeline.evaluate: subset_indices"``).
    :raises ValueError: not a sequence of indices, or one of them is not an index of the data set (a negative
        one too: it would read an item from the end without a word).
    """
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise ValueError(f"{where} must be a list of data set indices such as [0, 5, 9], got {indices!r}")
    indices = list(indices)
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < size:
            raise ValueError(f"{where} holds {index!r}, which is not an index of the data set ({size} items: "
                             f"0 to {size - 1})")
    return [int(index) for index in indices]
