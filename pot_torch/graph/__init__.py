"""Models: ``CompressedModel``, IR load/save, a networkx view, graph editing and hardware rules.

As POT's ``openvino.tools.pot.graph``, the package re-exports ``load_model``, ``save_model`` and the graph-editing
helpers ``connect_nodes``, ``connect_nodes_by_name``, ``remove_node_by_name`` (``GraphTransformer`` is refused).
"""
from pot_torch.graph.connections import (GraphTransformer, connect_nodes, connect_nodes_by_name,
                                         remove_node_by_name)
from pot_torch.graph.model_io import load_model, save_model

__all__ = ["connect_nodes", "connect_nodes_by_name", "remove_node_by_name", "GraphTransformer", "save_model",
           "load_model"]
