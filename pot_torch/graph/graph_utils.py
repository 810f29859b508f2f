"""POT's ``graph/graph_utils.py`` entry points: ``load_graph`` and ``save_graph`` on one ``openvino.Model``
(POT's graphs were Model Optimizer graphs; pot_torch's are ``openvino.Model`` objects)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, List, Optional

import openvino as ov

from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.nx_model import CompressedModel


def load_graph(model_config: Mapping, target_device: str = "ANY") -> ov.Model:
    """Read the IR of ``model_config`` (``model`` .xml, optional ``weights`` .bin) into an ``openvino.Model``.

    Errors are ``load_model``'s (missing files, unreadable IR, unsupported ``target_device``); a ``cascade``
    config is refused: load it with ``load_model``.
    """
    if not isinstance(model_config, Mapping):
        raise TypeError(f"load_graph: model_config must be a dict with 'model' (and 'weights'), got "
                        f"{type(model_config).__name__}")
    if model_config.get("cascade"):
        raise ValueError("load_graph reads one model; read a cascade with load_model(model_config)")
    return load_model({"model_name": "model", **model_config}, target_device).get_model()


def save_graph(graph: ov.Model, save_path: str | os.PathLike, model_name: Optional[str] = None
               ) -> List[Dict[str, str]]:
    """Write ``graph`` as IR into the folder ``save_path`` (created if missing) as ``<model_name>.xml`` / ``.bin``
    (default name: the model's friendly name), as ``save_model`` writes it; returns the paths."""
    if not isinstance(graph, ov.Model):
        raise TypeError(f"save_graph expects an openvino.Model, got {type(graph).__name__}; save a "
                        "CompressedModel with save_model")
    return save_model(CompressedModel(graph), save_path, model_name or graph.get_friendly_name())
