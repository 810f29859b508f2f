"""``Pipeline`` and ``create_pipeline``: algorithms applied in order through one engine.

The modules are POT's: ``pipeline.pipeline`` holds ``Pipeline``, ``pipeline.initializer`` ``create_pipeline``.
"""
from pot_torch.pipeline.initializer import create_pipeline
from pot_torch.pipeline.pipeline import Pipeline

__all__ = ["Pipeline", "create_pipeline"]
