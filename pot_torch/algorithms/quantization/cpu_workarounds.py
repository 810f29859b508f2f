"""Work around OpenVINO CPU plugin bugs that make a quantized model fail to compile or compute wrong values.

Both bugs (OpenVINO 2026.4 CPU plugin, reproduced without pot_torch) are about a rank-4 MatMul of two
activations (attention scores) whose inputs are FakeQuantized, followed by a scale:

1. a Multiply by a constant that varies along a non-last axis (a batch norm over axis 1 is decomposed into
   one), then a FakeQuantize: the plugin fuses the scale and the FakeQuantize into the MatMul, whose output
   channels are its last axis, and ``compile_model`` fails with ``Check 'any_of(scale.size(), OC, 1U)'
   failed``. :func:`drop_uncompilable_fake_quantize` finds FakeQuantize ops in that position (a graph walk).
   Only when there is one it compiles the model on the CPU; if that fails it removes those FakeQuantize ops
   (their consumers then read the floating-point value), logs a warning naming them and checks the model
   compiles. Models without the pattern are not compiled, so quantization does not slow down.
2. a Multiply by a constant that varies along the last axis only (one scale per output column, shape ``[N]``
   or ``[1, 1, 1, N]``): the model compiles but its outputs are wrong (errors of the size of the outputs, or
   garbage such as 1e9; a scalar, a ``[1, C, 1, 1]`` or a ``[M, N]`` constant are computed correctly).
   Whether it shows depends on the ranges (seen with pot_torch's symmetric ranges, low = -high * 128 / 127),
   so :func:`drop_miscomputed_fake_quantize` removes the activation FakeQuantize ops on that MatMul's inputs
   whenever the pattern is there (a graph walk; the MatMul then runs in floating point) and logs a warning
   naming them. The pattern is rare: attention scores are scaled by a scalar.

:func:`apply_cpu_workarounds` runs both.
"""
from __future__ import annotations

from typing import List, Optional

import openvino as ov

from pot_torch.graph.editor import fake_quantize_ops, remove_fake_quantize
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["fq_sites_at_risk", "drop_uncompilable_fake_quantize", "miscomputed_matmul_inputs",
           "drop_miscomputed_fake_quantize", "apply_cpu_workarounds"]

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


def _is_constant_subgraph(output: ov.Output, depth: int = 8) -> bool:
    """Whether ``output`` is computed from Constants only (no Parameter within ``depth`` ops)."""
    node = output.get_node()
    if node.get_type_name() == "Constant":
        return True
    if depth == 0 or node.get_type_name() == "Parameter" or node.get_input_size() == 0:
        return False
    return all(_is_constant_subgraph(value, depth - 1) for value in node.input_values())


def _scales_last_axis_only(multiply: ov.Node, matmul_output: ov.Output) -> bool:
    """Whether ``multiply`` scales ``matmul_output`` by a constant with several values along the last axis and
    one along every other axis."""
    others = [value for value in multiply.input_values() if value != matmul_output]
    if len(others) != 1 or not _is_constant_subgraph(others[0]) or not others[0].get_partial_shape().is_static:
        return False
    dims = list(others[0].get_partial_shape().to_shape())
    return len(dims) > 0 and dims[-1] > 1 and all(dim == 1 for dim in dims[:-1])


def miscomputed_matmul_inputs(model: ov.Model) -> List[ov.Node]:
    """The activation FakeQuantize ops on the inputs of rank-4 activation MatMuls in the position of bug 2."""
    sites: List[ov.Node] = []
    for matmul in model.get_ordered_ops():
        if matmul.get_type_name() != "MatMul" or any(_is_constant(value) for value in matmul.input_values()):
            continue
        rank = matmul.get_output_partial_shape(0).rank
        if rank.is_dynamic or rank.get_length() != 4:
            continue
        consumers = [target.get_node() for target in matmul.output(0).get_target_inputs()]
        if not any(node.get_type_name() == "Multiply" and _scales_last_axis_only(node, matmul.output(0))
                   for node in consumers):
            continue
        for value in matmul.input_values():
            node = value.get_node()
            if node.get_type_name() == "FakeQuantize" and not _is_constant(node.input_value(0)) and node not in sites:
                sites.append(node)
    return sites


def drop_miscomputed_fake_quantize(model: ov.Model, device: str) -> List[str]:
    """Remove the FakeQuantize ops that make the CPU plugin compute ``model`` wrongly (bug 2; edited in place).

    :returns: the friendly names of the removed FakeQuantize ops (empty when nothing was removed).
    """
    if "CPU" not in str(device).upper():
        return []
    sites = miscomputed_matmul_inputs(model)
    names = [fq.get_friendly_name() for fq in sites]
    for fq in sites:
        remove_fake_quantize(fq)
    if names:
        model.validate_nodes_and_infer_types()
        logger.warning("The OpenVINO CPU plugin computes a rank-4 activation MatMul with quantized inputs wrongly "
                       "when its output is scaled along the last axis; left in floating point: %s",
                       ", ".join(names))
    return names


def apply_cpu_workarounds(model: ov.Model, device: str) -> List[str]:
    """Both workarounds of this module on ``model`` (edited in place); returns the removed FakeQuantize names."""
    return drop_miscomputed_fake_quantize(model, device) + drop_uncompilable_fake_quantize(model, device)


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
