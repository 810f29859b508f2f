"""``BatchSampler``: batches of data set items, as POT's engines read them."""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

from pot_torch.samplers.sampler import Sampler


class BatchSampler(Sampler):
    """Yields lists of ``batch_size`` items (the last may be shorter) read from the data loader.

    ``len()`` counts samples, not batches, as POT's ``BatchSampler`` does.
    """

    def __init__(self, data_loader: Any, batch_size: int = 1,
                 subset_indices: Optional[Sequence[int]] = None) -> None:
        if data_loader is None:
            raise ValueError("BatchSampler needs a data_loader to read items from")
        super().__init__(data_loader, batch_size, subset_indices)

    def __len__(self) -> int:
        return len(self.subset_indices)

    def __iter__(self) -> Iterator[List[Any]]:
        for _, items in self.iter_indexed():
            yield items

    def iter_indexed(self) -> Iterator[Tuple[List[int], List[Any]]]:
        """Yield ``(data set indices, items)`` per batch."""
        indices: List[int] = []
        items: List[Any] = []
        for index in self.subset_indices:
            indices.append(int(index))
            items.append(self._data_loader[int(index)])
            if len(items) == self.batch_size:
                yield indices, items
                indices, items = [], []
        if items:
            yield indices, items

    def num_samples(self) -> int:
        """Size of the whole data set behind the sampler."""
        return len(self._data_loader)
