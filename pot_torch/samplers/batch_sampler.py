"""``BatchSampler``: batches of data set items, as POT's engines read them."""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

from pot_torch.samplers.sampler import Sampler
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


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
        for position, index in enumerate(self.subset_indices):
            indices.append(int(index))
            items.append(self._read(int(index), position))
            if len(items) == self.batch_size:
                yield indices, items
                indices, items = [], []
        if items:
            yield indices, items

    def _read(self, index: int, position: int) -> Any:
        """``data_loader[index]``; an exception (also ``KeyboardInterrupt``) gets a note naming the item."""
        try:
            return self._data_loader[index]
        except BaseException as error:
            note = (f"raised while reading data set item {index} (sample {position + 1} of {len(self)} in this "
                    f"pass) from {type(self._data_loader).__name__}")
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(note)
            else:
                logger.error("%s: %s", type(error).__name__, note)
            raise

    def num_samples(self) -> int:
        """Size of the whole data set behind the sampler."""
        return len(self._data_loader)
