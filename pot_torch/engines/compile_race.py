"""Compiling around the CPU plugin's stream race: find runtime layers that compute constants, use one stream.

The CPU plugin computes the constant subgraphs it keeps in its runtime graph once per stream, in parallel, and
some compilations with two or more streams come out with wrong weights (docs/cpu-plugin-bugs.md).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Set, Tuple

import openvino as ov

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
    constant: Set[str] = set()
    found = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        kind = op.get_rt_info()["layerType"].astype(str)
        inputs = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
        if kind != "Const" and not (inputs and constant.issuperset(inputs)):
            continue
        constant.add(op.get_friendly_name())
        if kind not in _CONSTANT_RELAYS:
            found.append((op.get_friendly_name(), kind))
    return found
