"""A networkx view of an ``openvino.Model`` for algorithms to query."""
from __future__ import annotations

import networkx as nx
import openvino as ov


def build_graph(model: ov.Model) -> nx.MultiDiGraph:
    """Return a ``MultiDiGraph`` of ``model``: nodes are ops keyed by friendly name, edges carry ports.

    Node attributes: ``type`` (op type name) and ``op`` (the ``openvino.Node``). Edge attributes:
    ``out_port`` (output index on the source) and ``in_port`` (input index on the destination).
    Friendly names must be unique (``CompressedModel`` makes them so).
    """
    graph = nx.MultiDiGraph(name=model.get_friendly_name())
    ops = model.get_ordered_ops()
    for op in ops:
        graph.add_node(op.get_friendly_name(), type=op.get_type_name(), op=op)
    for op in ops:
        for in_port, node_input in enumerate(op.inputs()):
            source = node_input.get_source_output()
            graph.add_edge(source.get_node().get_friendly_name(), op.get_friendly_name(),
                           out_port=source.get_index(), in_port=in_port)
    return graph
