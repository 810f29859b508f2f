"""OpenVINO inference engines: ``IEEngine`` and helpers for custom engines."""
from pot_torch.engines.ie_engine import IEEngine

__all__ = ["IEEngine"]
