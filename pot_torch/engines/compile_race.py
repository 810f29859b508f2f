"""Compiling around the CPU plugin's multi-stream bugs: find the runtime layers they hit, use one stream.

Two kinds of runtime layers are computed wrongly by some compilations with two or more streams
(docs/cpu-plugin-bugs.md): the constant subgraphs the plugin keeps in its runtime graph (computed once per stream,
in parallel), and snippets ``Subgraph`` layers that fuse MatMuls (a dense chain with FakeQuantize ops, computed
wrongly even by one synchronous inference).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Tuple

import openvino as ov

from pot_torch.graph.constants import constant_ops
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: CPU runtime-graph layers that only pass constant data on (views, transposes, layout or precision reorders of
#: weights, rows picked from a constant table such as the position ids of a static-shape BERT): computing them when
#: a stream starts was never seen to go wrong (docs/cpu-plugin-bugs.md).
_CONSTANT_RELAYS = frozenset({"Const", "Reshape", "Reorder", "Transpose", "Gather", "GatherElements"})


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
    layers = race_prone_layers(compiled, model)
    if not layers:
        return compiled, False
    logger.info("compiling '%s' with one CPU stream instead of %d: its runtime graph has %d layers (e.g. %s '%s') "
                "that the CPU plugin computes wrongly in some compilations with several streams "
                "(docs/cpu-plugin-bugs.md)", model.get_friendly_name(), compiled.get_property("NUM_STREAMS"),
                len(layers), layers[0][1], layers[0][0])
    return core.compile_model(model, device, {**properties, "NUM_STREAMS": 1}), True


def race_prone_layers(compiled: ov.CompiledModel, model: ov.Model) -> List[Tuple[str, str]]:
    """``(name, layer type)`` of the runtime layers of ``compiled`` (a CPU compilation of ``model``) that some
    compilations with several streams compute wrongly: :func:`constant_compute_layers` and
    :func:`fused_matmul_subgraphs`."""
    return constant_compute_layers(compiled) + fused_matmul_subgraphs(compiled, model)


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


#: Element types of quantized weights: a model with a Constant of one of them may run INT8 layers.
_INTEGER_WEIGHTS = frozenset({ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4})


def _may_run_int8(model: ov.Model) -> bool:
    """Whether ``model`` has a FakeQuantize or integer weights (a Constant of ``_INTEGER_WEIGHTS``)."""
    return any(op.get_type_name() == "FakeQuantize"
               or (op.get_type_name() == "Constant" and op.get_output_element_type(0) in _INTEGER_WEIGHTS)
               for op in model.get_ops())


def fused_matmul_subgraphs(compiled: ov.CompiledModel, model: ov.Model) -> List[Tuple[str, str]]:
    """``(name, "Subgraph")`` of the snippets ``Subgraph`` layers of a CPU compiled model that fuse a MatMul of
    ``model`` (the plugin's dense-chain tokenization; its runtime info names the original layers it holds), when
    ``model`` may run INT8 layers (none for a floating-point model).

    Compiled with two streams, an INT8 dense chain with float layers in the middle fused this way computes
    wrongly, in every inference (docs/cpu-plugin-bugs.md); the same chain in floating point was right in 40 of 40
    two-stream compilations, so a floating-point model (the statistics model of a transformer) keeps its streams.
    """
    if not _may_run_int8(model):
        return []
    matmuls = {op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"}
    found = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if _layer_type(op) == "Subgraph" and "originalLayersNames" in info and \
                matmuls.intersection(info["originalLayersNames"].astype(str).split(",")):
            found.append((op.get_friendly_name(), "Subgraph"))
    return found


def _layer_type(op: ov.Node) -> str:
    """The CPU runtime graph's type of ``op`` (``Const``, ``Convolution``, ``Reorder`` ...)."""
    return op.get_rt_info()["layerType"].astype(str)
