"""Compiling around the CPU plugin's stream race: find runtime layers that compute constants, use one stream.

The CPU plugin computes the constant subgraphs it keeps in its runtime graph once per stream, in parallel, and
some compilations with two or more streams come out with wrong weights (docs/cpu-plugin-bugs.md).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Tuple

import openvino as ov

from pot_torch.graph.constants import constant_ops
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: CPU runtime-graph layers that only pass constant data on (views, transposes, layout or precision reorders of
#: weights): computing them when a stream starts was never seen to go wrong (docs/cpu-plugin-bugs.md).
_CONSTANT_RELAYS = frozenset({"Const", "Reshape", "Reorder", "Transpose"})


def compile_avoiding_stream_race(core: ov.Core, model: ov.Model, device: str,
                                 properties: Mapping[str, Any]) -> Tuple[ov.CompiledModel, bool]:
    """``model`` compiled with ``properties``, again with one stream when the CPU plugin's stream race can hit it.

    A CPU compilation with two or more streams whose runtime graph computes constant layers
    (:func:`constant_compute_layers`) can come out with wrong weights (docs/cpu-plugin-bugs.md); such a model is
    compiled again with ``NUM_STREAMS`` 1 and that is logged.

    :returns: the compiled model and whether it was compiled again with one stream.
    """
    compiled = core.compile_model(model, device, dict(properties))
    if device != "CPU" or compiled.get_property("NUM_STREAMS") < 2:
        return compiled, False
    layers = constant_compute_layers(compiled)
    if not layers:
        return compiled, False
    logger.info("compiling '%s' with one CPU stream instead of %d: its runtime graph computes %d constant "
                "layers (e.g. %s '%s') when each stream starts, which the CPU plugin does wrongly at random "
                "with several streams (docs/cpu-plugin-bugs.md)", model.get_friendly_name(),
                compiled.get_property("NUM_STREAMS"), len(layers), layers[0][1], layers[0][0])
    return core.compile_model(model, device, {**properties, "NUM_STREAMS": 1}), True


def constant_compute_layers(compiled: ov.CompiledModel) -> List[Tuple[str, str]]:
    """``(name, layer type)`` of the layers of a CPU compiled model's runtime graph that compute values from
    constants only (such as a weight decompression ``Convert`` and ``Multiply``), in graph order.

    The CPU plugin computes them when each stream's graph is initialised; with several streams that races
    (docs/cpu-plugin-bugs.md). Layers that only relay constants (``Reshape``, ``Reorder``, ``Transpose``) are
    not listed.
    """
    ordered = compiled.get_runtime_model().get_ordered_ops()
    constant = constant_ops(ordered, _layer_type, "Const")
    return [(op.get_friendly_name(), _layer_type(op)) for op in ordered
            if op.get_friendly_name() in constant and _layer_type(op) not in _CONSTANT_RELAYS]


def _layer_type(op: ov.Node) -> str:
    """The CPU runtime graph's type of ``op`` (``Const``, ``Convolution``, ``Reorder`` ...)."""
    return op.get_rt_info()["layerType"].astype(str)
