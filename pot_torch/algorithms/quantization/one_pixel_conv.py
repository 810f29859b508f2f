"""Bug 5 of :mod:`~pot_torch.algorithms.quantization.cpu_workarounds`: INT8 convolutions with a 1x1 output map that
the OpenVINO CPU plugin computes wrongly under dynamic shapes, found from the ops it fuses after them (docstring of
that module; docs/cpu-plugin-bugs.md).
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Set, Tuple

import openvino as ov

from pot_torch.algorithms.quantization.fused_post_ops import post_ops
from pot_torch.algorithms.quantization.sites import ActivationSite, Placement
from pot_torch.graph.cpu_fusion import Folded, folded_constants
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


def post_ops_at_risk(letters: str) -> bool:
    """Whether the post-ops ``letters`` (see :func:`~pot_torch.algorithms.quantization.fused_post_ops.post_ops`) of an
    INT8 convolution with a 1x1 output map are computed wrongly under dynamic shapes (bug 5), as measured: with a
    per-channel FakeQuantize; after a bias (an Add of a constant first), when an activation, FakeQuantize or Add of an
    activation is followed by a constant of several values; without one, unless only constants, at most one
    activation and at most one FakeQuantize follow, in that order."""
    if "P" in letters:
        return True
    if letters[:1] in ("a", "A"):
        return re.search("[NFR].*[AM]", letters) is not None
    return re.fullmatch("[aAmM]*N?F?", letters) is None


def _output_map(node: ov.Node) -> Optional[Tuple[ov.Dimension, ov.Dimension]]:
    """The spatial dimensions of a 2D convolution's output, ``None`` for any other op."""
    shape = node.get_output_partial_shape(0)
    if node.get_type_name() not in ("Convolution", "GroupConvolution") or shape.rank.is_dynamic \
            or shape.rank.get_length() != 4:
        return None
    return shape[2], shape[3]


def _int8_conv_at_risk(node: ov.Node, placement: Placement, quantized: Set[Tuple[str, int]],
                       planned: Dict[Tuple[str, int], ActivationSite], constant: Folded) -> bool:
    """Whether the convolution ``node`` has a quantized input and weights and post-ops of bug 5."""
    weights = (node.get_friendly_name(), 1)
    return ((node.get_friendly_name(), 0) in quantized
            and (weights in quantized or weights in placement.compressed_weights
                 or node.input_value(1).get_node().get_type_name() == "FakeQuantize")
            and post_ops_at_risk(post_ops(node, planned, constant)))


def _bug5_convolutions(model: ov.Model, placement: Placement, constant: Optional[Folded],
                       output_map: Callable[[Tuple[ov.Dimension, ov.Dimension]], bool]) -> List[ov.Node]:
    """The convolutions of bug 5's kind whose output map satisfies ``output_map`` (a model with a dynamic input;
    none otherwise)."""
    if not any(port.get_partial_shape().is_dynamic for port in model.inputs):
        return []
    quantized, planned = placement.quantized_inputs(), placement.sites_by_input()
    constant = folded_constants(model, constant)
    return [node for node in model.get_ordered_ops() for spatial in [_output_map(node)]
            if spatial is not None and output_map(spatial)
            and _int8_conv_at_risk(node, placement, quantized, planned, constant)]


def one_pixel_conv_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites on the input of the convolutions in the position of bug 5: a static 1x1 output
    map in a model with a dynamic input."""
    one_pixel = lambda spatial: all(d.is_static and d.get_length() == 1 for d in spatial)  # noqa: E731
    by_input = placement.sites_by_input()
    return list(dict.fromkeys(by_input[(node.get_friendly_name(), 0)].name
                              for node in _bug5_convolutions(model, placement, constant, one_pixel)))


def warn_dynamic_map_convolutions(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> None:
    """Warn about the INT8 convolutions of bug 5's kind whose output map is dynamic: computed wrongly on inputs small
    enough to make it 1x1, which no rule can see before the model runs."""
    names = [node.get_friendly_name() for node in _bug5_convolutions(
        model, placement, constant, lambda spatial: any(d.is_dynamic for d in spatial))]
    if names:
        logger.warning("The OpenVINO CPU plugin computes an INT8 convolution with a 1x1 output map and the ops it "
                       "fuses after it wrongly under dynamic shapes; these convolutions have a dynamic output map and "
                       "would be wrong on inputs small enough to make it 1x1 (docs/cpu-plugin-bugs.md): %s. Reshape "
                       "the model to static shapes before quantization if such inputs occur", ", ".join(names))
