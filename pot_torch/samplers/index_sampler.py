"""``IndexSampler``: yields data set indices one by one."""
from __future__ import annotations

from typing import Iterator, Sequence

from pot_torch.samplers.sampler import Sampler


class IndexSampler(Sampler):
    """Yields the given data set indices in order (for engines that read items themselves)."""

    def __init__(self, subset_indices: Sequence[int]) -> None:
        super().__init__(None, 1, list(subset_indices))

    def __len__(self) -> int:
        return len(self.subset_indices)

    def __iter__(self) -> Iterator[int]:
        return iter(int(i) for i in self.subset_indices)
