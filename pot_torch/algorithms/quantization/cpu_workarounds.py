"""Work around OpenVINO CPU plugin bugs that make a quantized model fail to compile.

Known bug (OpenVINO 2026.4 CPU plugin, reproduced without pot_torch): a rank-4 MatMul of two activations
(attention scores), then a Multiply by a constant that varies along a non-last axis (a batch norm over axis 1
is decomposed into one), then a FakeQuantize: the plugin fuses the scale and the FakeQuantize into the MatMul,
whose output channels are its last axis, and ``compile_model`` fails with
``Check 'any_of(scale.size(), OC, 1U)' failed``.

:func:`drop_uncompilable_fake_quantize` finds FakeQuantize ops in that position (a graph walk, no
compilation). Only when there is one it compiles the model on the CPU; if that fails it removes those
FakeQuantize ops (their consumers then read the floating-point value), logs a warning naming them and checks
the model compiles. Models without the pattern are not compiled, so quantization does not slow down.
"""
from __future__ import annotations

from typing import List, Optional

import openvino as ov

from pot_torch.graph.editor import fake_quantize_ops, remove_fake_quantize
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["fq_sites_at_risk", "drop_uncompilable_fake_quantize"]

#: Elementwise ops with a constant operand the CPU plugin fuses into a MatMul as post-ops.
_SCALE_OPS = ("Multiply", "Add", "Subtract")
#: Ops whose value is a constant once the plugin folds them.
_CONSTANT_OPS = ("Constant", "Convert", "FakeQuantize")


def _is_constant(output: ov.Output) -> bool:
    """Whether ``output`` is a Constant, possibly through Convert / FakeQuantize of a Constant."""
    node = output.get_node()
    if node.get_type_name() == "Constant":
        return True
    return node.get_type_name() in _CONSTANT_OPS[1:] and _is_constant(node.input_value(0))


def _varies_off_last_axis(constant: ov.Output, rank: int) -> bool:
    """Whether ``constant``, broadcast to ``rank``, has more than one value along an axis other than the last."""
    shape = list(constant.get_partial_shape().to_shape())
    dims = [1] * (rank - len(shape)) + shape
    return any(dim > 1 for dim in dims[:-1])


def _activation_matmul_behind(output: ov.Output) -> Optional[ov.Node]:
    """The rank-4 MatMul of two activations that ``output`` is, after per-channel scale ops; else ``None``."""
    scaled = False
    node = output.get_node()
    while node.get_type_name() in _SCALE_OPS + ("BatchNormInference",):
        if node.get_type_name() == "BatchNormInference":
            scaled, node = True, node.input_value(0).get_node()
            continue
        variable = [value for value in node.input_values() if not _is_constant(value)]
        if len(variable) != 1:
            return None
        constants = [value for value in node.input_values() if _is_constant(value)]
        rank = node.get_output_partial_shape(0).rank
        if node.get_type_name() == "Multiply" and rank.is_static:
            scaled = scaled or any(_varies_off_last_axis(value, rank.get_length()) for value in constants)
        node = variable[0].get_node()
    if not scaled or node.get_type_name() != "MatMul":
        return None
    rank = node.get_output_partial_shape(0).rank
    if rank.is_dynamic or rank.get_length() != 4:
        return None
    return node if not any(_is_constant(value) for value in node.input_values()) else None


def fq_sites_at_risk(model: ov.Model) -> List[ov.Node]:
    """FakeQuantize ops of ``model`` in the position of the CPU plugin bug described in this module."""
    return [fq for fq in fake_quantize_ops(model)
            if not _is_constant(fq.input_value(0)) and _activation_matmul_behind(fq.input_value(0)) is not None]


def _compile_error(core: ov.Core, model: ov.Model) -> Optional[str]:
    try:
        core.compile_model(model, "CPU")
    except RuntimeError as error:
        return str(error)
    return None


def drop_uncompilable_fake_quantize(model: ov.Model, device: str) -> List[str]:
    """Remove the FakeQuantize ops that make ``model`` fail to compile on the CPU (edited in place).

    Does nothing unless ``device`` runs on the CPU and :func:`fq_sites_at_risk` finds a site; then the model is
    compiled once to see whether the plugin fails on it.

    :returns: the friendly names of the removed FakeQuantize ops (empty when nothing was removed).
    """
    if "CPU" not in str(device).upper():
        return []
    risky = fq_sites_at_risk(model)
    if not risky:
        return []
    core = ov.Core()
    if _compile_error(core, model) is None:
        return []
    names = [fq.get_friendly_name() for fq in risky]
    for fq in risky:
        remove_fake_quantize(fq)
    model.validate_nodes_and_infer_types()
    logger.warning("The OpenVINO CPU plugin cannot compile FakeQuantize ops after a rank-4 activation MatMul "
                   "scaled per channel (batch norm); left in floating point: %s", ", ".join(names))
    error = _compile_error(core, model)
    if error is not None:
        logger.warning("the quantized model '%s' still does not compile on the CPU: %s",
                       model.get_friendly_name(), error.strip().splitlines()[-1] if error.strip() else error)
    return names
