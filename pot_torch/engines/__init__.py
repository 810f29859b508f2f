"""OpenVINO inference engines: ``IEEngine``, ``RayEngine`` (extra ``ray``) and helpers for custom engines."""
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.engines.ray_engine import RayEngine

__all__ = ["IEEngine", "RayEngine"]
