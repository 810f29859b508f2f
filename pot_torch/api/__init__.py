"""The three user-facing abstractions of the POT API: ``DataLoader``, ``Metric`` and ``Engine``."""
from pot_torch.api.data_loader import DataLoader
from pot_torch.api.engine import Engine
from pot_torch.api.metric import Metric
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["DataLoader", "Metric", "Engine"]
