"""The abstract data loader of the POT API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pot_torch.utils.config import AttrDict, as_config


class DataLoader(ABC):
    """A map-style data set: ``len(loader)`` items, each read with ``loader[index]``.

    An item is ``(data, annotation)``, ``(data, annotation, metadata)`` or POT's older
    ``((img_id, annotation), data[, metadata])``. ``data`` is a numpy array (or anything ``np.asarray`` takes)
    or a dict keyed by model input name. ``annotation`` may be ``None`` where no metric is used.

    :param config: optional settings; a plain dict is given attribute access (``self.config.data_source``)
        like POT's addict-based configs.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = as_config(config) if config is not None else AttrDict()

    @abstractmethod
    def __len__(self) -> int:
        """Number of items in the data set."""

    @abstractmethod
    def __getitem__(self, index: int) -> Any:
        """Return the item at ``index``."""
