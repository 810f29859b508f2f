"""Models: ``CompressedModel``, IR load/save, a networkx view, graph editing and hardware rules."""
