"""The abstract sampler of the POT API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator, Optional, Sequence


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
