"""Models: ``CompressedModel``, IR load/save, a networkx view, graph editing and hardware rules.

As POT's ``openvino.tools.pot.graph``, the package re-exports ``load_model`` and ``save_model``.
"""
from pot_torch.graph.model_io import load_model, save_model

__all__ = ["load_model", "save_model"]
