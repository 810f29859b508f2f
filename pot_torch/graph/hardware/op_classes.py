"""Classify an op for the hardware rules: its type, or a finer class where the type alone does not say what runs.

The hardware descriptions key their ``operations`` by op class, as POT's cpu.json and NNCF's ``HWOpName`` do.
An op's class is its OpenVINO type name, except for the refinements in ``REFINED_CLASSES``:

- ``DepthwiseConvolution``: a GroupConvolution with one input and one output channel per group;
- ``ResidualAdd``: an Add of activations only (an Add with a constant input, e.g. a bias, stays ``Add``);
- ``EmbeddingGather``: a Gather of rows (axis 0) of a constant 2-D table, an embedding lookup;
- ``GlobalPool``: a ReduceMean over every spatial axis (axes 2 and up) of a rank 3+ input (global average
  pooling as PyTorch exports it).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import compressed_weight_of

DEPTHWISE_CONVOLUTION = "DepthwiseConvolution"
RESIDUAL_ADD = "ResidualAdd"
EMBEDDING_GATHER = "EmbeddingGather"
GLOBAL_POOL = "GlobalPool"


def input_is_constant(op: ov.Node, port: int) -> bool:
    """Whether input ``port`` of ``op`` is a weight: a Constant (through ``WEIGHT_PASS_THROUGH`` ops) or a weight
    stored compressed (``compressed_weight_of``)."""
    return compressed_weight_of(op, port) is not None or constant_source(op.input_value(port)) is not None


def _constant_int(op: ov.Node, port: int) -> Optional[np.ndarray]:
    constant = constant_source(op.input_value(port)) if op.get_input_size() > port else None
    return None if constant is None else np.ravel(constant.get_data()).astype(np.int64)


def _is_depthwise(op: ov.Node, constant: Sequence[bool]) -> bool:
    shape = op.get_input_partial_shape(1)
    return shape.is_static and len(shape) >= 3 and shape[1].get_length() == 1 and shape[2].get_length() == 1


def _is_residual(op: ov.Node, constant: Sequence[bool]) -> bool:
    return not any(constant)


def _is_embedding(op: ov.Node, constant: Sequence[bool]) -> bool:
    if constant_source(op.input_value(0)) is None or op.get_input_partial_shape(0).rank.get_length() != 2:
        return False
    axis = _constant_int(op, 2)
    return axis is not None and int(axis[0]) == 0


def _is_global_pool(op: ov.Node, constant: Sequence[bool]) -> bool:
    rank = op.get_input_partial_shape(0).rank
    axes = _constant_int(op, 1)
    if rank.is_dynamic or rank.get_length() < 3 or axes is None:
        return False
    return sorted(int(a) % rank.get_length() for a in axes) == list(range(2, rank.get_length()))


#: ``class: (op type, test)``: an op of that type is of that class when the test (given the op and which of its
#: inputs are constant) holds.
REFINED_CLASSES: Dict[str, Tuple[str, Callable[[ov.Node, Sequence[bool]], bool]]] = {
    DEPTHWISE_CONVOLUTION: ("GroupConvolution", _is_depthwise),
    RESIDUAL_ADD: ("Add", _is_residual),
    EMBEDDING_GATHER: ("Gather", _is_embedding),
    GLOBAL_POOL: ("ReduceMean", _is_global_pool),
}
_BY_TYPE = {op_type: (name, test) for name, (op_type, test) in REFINED_CLASSES.items()}


def classify_op(op: ov.Node, constant: Optional[Sequence[bool]] = None) -> str:
    """The op class of ``op`` (its type name, or a class of ``REFINED_CLASSES``).

    :param constant: per input, whether it is a weight (``input_is_constant``); computed when not given.
    """
    kind = op.get_type_name()
    refined = _BY_TYPE.get(kind)
    if refined is None:
        return kind
    if constant is None:
        constant = [input_is_constant(op, port) for port in range(op.get_input_size())]
    name, test = refined
    return name if test(op, constant) else kind
