"""Leave out of a placement the FakeQuantize sites the OpenVINO CPU plugin cannot compile or computes wrongly.

The bugs (OpenVINO 2026.4 CPU plugin, each reproduced without pot_torch; docs/cpu-plugin-bugs.md):

1. a rank-4 MatMul of two FakeQuantized activations (attention scores), then a Multiply by a constant that varies
   along a non-last axis (a batch norm over axis 1 is decomposed into one), then a FakeQuantize: the plugin fuses
   the scale and the FakeQuantize into the MatMul, whose output channels are its last axis, and ``compile_model``
   fails with ``Check 'any_of(scale.size(), OC, 1U)' failed``. :func:`uncompilable_sites` finds activation sites in
   that position (a graph walk). Not every such site fails (a constant with equal values compiles);
   ``compile_check=True`` compiles a probe of the model with the planned activation FakeQuantize ops and keeps the
   sites when it compiles (slower, so opt-in).
2. such a MatMul, then a Multiply by a constant that varies along the last axis only (one scale per output column,
   ``[N]`` or ``[1, 1, 1, N]``): it compiles and its outputs are wrong (errors of the size of the outputs, or
   garbage such as 1e9; a scalar, a ``[1, C, 1, 1]`` or a ``[M, N]`` constant are computed correctly), depending on
   the ranges, so :func:`miscomputed_sites` finds the activation sites on that MatMul's inputs whenever the pattern
   is there (the MatMul then runs in floating point). Rare: attention scores are scaled by a scalar.

3. with a dynamic input dimension, a MatMul with constant weights and a FakeQuantized input (an INT8 linear layer)
   whose output is multiplied by a constant varying along a non-last axis (one scale per row), directly or after
   elementwise ops of a constant (a bias Add), is computed wrongly (the same model reshaped static is right):
   :func:`dynamic_row_scaled_sites` finds the activation sites on such MatMuls' inputs in models with a dynamic
   input (the MatMul then reads a floating-point input).

4. the first pattern with a rank-3 or rank-4 activation MatMul, ReLUs allowed between, and an Add or Subtract
   as well as a Multiply of a constant varying along a non-last axis, then a FakeQuantize: it compiles, and is
   computed wrongly (-2.9 dB on a small model). :func:`shifted_after_matmul_sites` finds those sites (the same
   walk); they stay in floating point.

5. with a dynamic input dimension, an INT8 convolution (FakeQuantized input and weights; depthwise or not, any
   kernel or stride) whose output map is 1x1 is computed wrongly (off by up to 15 on outputs of size ~1) with some
   chains of ops the plugin fuses into it: without a bias, a ReLU then a ReLU, an Add of a constant or a residual
   Add; after a bias, an activation then an Add or Multiply of a per-channel constant or a per-channel FakeQuantize
   (a depthwise convolution's input). The same model reshaped static is right; 1xN, Nx1 and 2x2 maps are right; a
   dynamic spatial model whose map is 1x1 at run time is wrong too, which no rule can see.
   :func:`one_pixel_conv_sites` finds the input sites of such convolutions with a static 1x1 output map in models
   with a dynamic input when :func:`post_ops_at_risk` says their chain is (a superset of the measured wrong chains;
   a bias, a ReLU and a per-tensor FakeQuantize is not); they stay in floating point. Such convolutions with a
   dynamic output map are named in a warning (:func:`warn_dynamic_map_convolutions`); both in :mod:`.one_pixel_conv`.

6. static or dynamic, a rank-3 or rank-4 MatMul of two FakeQuantized activations whose fused post-ops have an
   activation followed by an Add or Multiply of a constant with several values (``relu -> multiply`` by a last-axis
   vector: off by 5.6-9.5; ``relu -> relu -> add -> relu -> relu``: 7.5 dB instead of 25.7 dB, nightly run) is computed
   wrongly, depending on the ranges and data; without either input FakeQuantize it is right.
   :func:`rectified_matmul_sites` finds the site on such a MatMul's first quantized input; the MatMul then runs in
   floating point.

7. a normalization (MVN, GroupNormalization, NormalizeL2) reading an INT8 value (a FakeQuantize output, or an INT8
   convolution or MatMul without a bias), through data movers, ReLUs or constant scales only, runs on the integers
   and loses its eps: a graph rule applied once the FakeQuantize ops are in (:mod:`pot_torch.graph.norm_input_guard`).

8. a Gather of a constant table (an embedding lookup), a Transpose and a GELU, Sigmoid or Tanh (elementwise ops and
   ReLUs allowed between) before an INT8 MatMul or convolution: ``compile_model`` fails ("constant_fold" of a
   Convert); :func:`transposed_embedding_sites` leaves that input in floating point.

9. in a model with any FakeQuantize, an Add of a constant with as many values as channels, varying along another
   axis, after a per-channel scale is added per channel: a graph rule applied once the FakeQuantize ops are in
   (:mod:`pot_torch.graph.channel_sized_shift`; :mod:`pot_torch.graph.cpu_rewrites` applies it with bug 7's).

The fusion of bugs 1 and 2 makes a per-channel FakeQuantize directly on such a MatMul's output (a depthwise
convolution reading the scores, per-channel input on the CPU) fail to compile: :func:`per_tensor_after_matmul`
makes those sites per tensor. :func:`drop_cpu_plugin_failures` removes the sites of bugs 1-6 and 8 from a placement
(before anything is inserted), with a warning naming them. The walks see the graph as it will be once the placement
is inserted: an input a planned FakeQuantize feeds is not read directly, and an op computed from Constants only
(``graph.constants.constant_ops``; the plugin folds it) is a constant.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, List, Optional, Set, Tuple

import openvino as ov

from pot_torch.algorithms.quantization.fused_post_ops import post_ops
from pot_torch.algorithms.quantization.one_pixel_conv import one_pixel_conv_sites, warn_dynamic_map_convolutions
from pot_torch.algorithms.quantization.sites import ActivationSite, Placement
from pot_torch.graph.constants import constant_source
from pot_torch.graph.cpu_fusion import (ELEMENTWISE, FUSED_ACTIVATIONS, Folded, folded_constants, fused_producer,
                                        is_constant)
from pot_torch.graph.editor import insert_fake_quantize, ops_by_name
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Elementwise ops with a constant operand the CPU plugin fuses into a MatMul as post-ops.
_SCALE_OPS = ("Multiply", "Add", "Subtract")
Inputs = Set[Tuple[str, int]]


def _varies_off_last_axis(constant: ov.Output, rank: int) -> bool:
    """Whether ``constant``, broadcast to ``rank``, has more than one value along an axis other than the last."""
    shape = list(constant.get_partial_shape().to_shape())
    dims = [1] * (rank - len(shape)) + shape
    return any(dim > 1 for dim in dims[:-1])


def _activation_matmul(node: ov.Node, constant: Folded, ranks: Tuple[int, ...] = (4,)) -> bool:
    """Whether ``node`` is a MatMul of two activations (neither in ``constant``) whose output rank is one of
    ``ranks``."""
    if node.get_type_name() != "MatMul" or any(is_constant(value, constant) for value in node.input_values()):
        return False
    rank = node.get_output_partial_shape(0).rank
    return rank.is_static and rank.get_length() in ranks


def _activation_matmul_behind(output: ov.Output, quantized: Inputs, constant: Folded,
                              shifted: bool = False) -> Optional[ov.Node]:
    """The rank-4 MatMul of two activations that ``output`` is, after per-channel scale ops (by constants: ``constant``
    names the ops computed from Constants only, which the plugin folds) and with no FakeQuantize of ``quantized`` in
    between; else ``None``. ``shifted`` (bug 4): also through ReLU, with an Add or Subtract of such a constant
    counting as the scale, and for rank-3 MatMuls too."""
    scaled = False
    counted = ("Multiply", "Add", "Subtract") if shifted else ("Multiply",)
    node = output.get_node()
    while node.get_type_name() in _SCALE_OPS + ("BatchNormInference",) + (("Relu",) if shifted else ()):
        if node.get_type_name() in ("BatchNormInference", "Relu"):
            scaled, port = scaled or node.get_type_name() == "BatchNormInference", 0
        else:
            variable = [p for p, value in enumerate(node.input_values()) if not is_constant(value, constant)]
            if len(variable) != 1:
                return None
            rank = node.get_output_partial_shape(0).rank
            if node.get_type_name() in counted and rank.is_static:
                scaled = scaled or any(_varies_off_last_axis(value, rank.get_length())
                                       for value in node.input_values() if is_constant(value, constant))
            port = variable[0]
        if (node.get_friendly_name(), port) in quantized:
            return None
        node = node.input_value(port).get_node()
    return node if scaled and _activation_matmul(node, constant, (3, 4) if shifted else (4,)) else None


def uncompilable_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites of ``placement`` in the position of bug 1 (see the module docstring);
    ``constant``: the model's ops computed from Constants only (computed when not given), as for every finder."""
    by_name = ops_by_name(model)
    quantized, constant = placement.quantized_inputs(), folded_constants(model, constant)
    return [site.name for site in placement.activations
            if _activation_matmul_behind(by_name[site.producer].output(site.port), quantized, constant) is not None]


def _scales_last_axis_only(multiply: ov.Node, matmul_output: ov.Output, constant: Folded) -> bool:
    """Whether ``multiply`` scales ``matmul_output`` by a constant with several values along the last axis and
    one along every other axis."""
    others = [value for value in multiply.input_values() if value != matmul_output]
    if (len(others) != 1 or not is_constant(others[0], constant)
            or not others[0].get_partial_shape().is_static):
        return False
    dims = list(others[0].get_partial_shape().to_shape())
    return len(dims) > 0 and dims[-1] > 1 and all(dim == 1 for dim in dims[:-1])


def shifted_after_matmul_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites of ``placement`` in the position of bug 4 and not of bug 1 (see the module
    docstring)."""
    by_name = ops_by_name(model)
    quantized, constant = placement.quantized_inputs(), folded_constants(model, constant)
    uncompilable = set(uncompilable_sites(model, placement, constant))
    return [site.name for site in placement.activations if site.name not in uncompilable and _activation_matmul_behind(
        by_name[site.producer].output(site.port), quantized, constant, shifted=True) is not None]


def _readers(output: ov.Output, quantized: Inputs, constant: Folded,
             through_constant_ops: bool) -> List[Tuple[ov.Node, ov.Output]]:
    """The ops reading ``output`` (not through a planned FakeQuantize of ``quantized``), each with the output it reads;
    ``through_constant_ops``: also those reading a chain of single readers that are elementwise ops of a constant
    keeping the shape, e.g. a bias Add."""
    found: List[Tuple[ov.Node, ov.Output]] = []
    while True:
        targets = [target.get_node() for target in output.get_target_inputs()
                   if (target.get_node().get_friendly_name(), target.get_index()) not in quantized]
        found += [(node, output) for node in targets]
        if not through_constant_ops or len(targets) != 1 or len(output.get_target_inputs()) != 1:
            return found
        node = targets[0]
        variable = [value for value in node.input_values() if not is_constant(value, constant)]
        if node.get_type_name() not in ELEMENTWISE or variable != [output] \
                or node.get_output_partial_shape(0) != output.get_partial_shape():
            return found
        output = node.output(0)


def _sites_feeding_scaled_matmuls(model: ov.Model, placement: Placement, constant: Folded,
                                  ports_of: Callable[[ov.Node, Folded], List[int]],
                                  scales: Callable[[ov.Node, ov.Output, Folded], bool],
                                  through_constant_ops: bool = False) -> List[str]:
    """Names of the activation sites on the input ports ``ports_of(matmul, constant)`` of the MatMuls whose output a
    Multiply reads (not through a planned FakeQuantize; ``through_constant_ops``: also after elementwise ops of a
    constant, see :func:`_readers`) that ``scales(multiply, the output it reads, constant)``."""
    ordered = model.get_ordered_ops()
    quantized = placement.quantized_inputs()
    feeding = placement.sites_by_input()
    names: List[str] = []
    for matmul in ordered:
        ports = ports_of(matmul, constant) if matmul.get_type_name() == "MatMul" else []
        readers = _readers(matmul.output(0), quantized, constant, through_constant_ops) if ports else []
        if not any(node.get_type_name() == "Multiply" and scales(node, read, constant) for node, read in readers):
            continue
        for port in ports:
            site = feeding.get((matmul.get_friendly_name(), port))
            if site is not None and site.name not in names:
                names.append(site.name)
    return names


def _both_matmul_inputs(matmul: ov.Node, constant: Folded) -> List[int]:
    """Both input ports of a rank-4 MatMul of two activations; none of another MatMul."""
    return list(range(matmul.get_input_size())) if _activation_matmul(matmul, constant) else []


def miscomputed_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites on the inputs of rank-4 activation MatMuls in the position of bug 2."""
    return _sites_feeding_scaled_matmuls(model, placement, folded_constants(model, constant), _both_matmul_inputs,
                                         _scales_last_axis_only)


def _weight_matmul_input(matmul: ov.Node, constant: Folded) -> List[int]:
    """The activation input port of a MatMul with constant weights and a static output rank, as a list."""
    ports = [port for port, value in enumerate(matmul.input_values()) if not is_constant(value, constant)]
    return ports if len(ports) == 1 and matmul.get_output_partial_shape(0).rank.is_static else []


def _scales_rows(multiply: ov.Node, matmul_output: ov.Output, constant: Folded) -> bool:
    """Whether ``multiply`` scales ``matmul_output`` by a constant with several values along a non-last axis."""
    rank = matmul_output.get_partial_shape().rank.get_length()
    return any(value != matmul_output and is_constant(value, constant)
               and value.get_partial_shape().is_static and _varies_off_last_axis(value, rank)
               for value in multiply.input_values())


def dynamic_row_scaled_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites on the input of weight MatMuls in the position of bug 3, the row scale directly
    on the MatMul's output or after elementwise ops of a constant (a bias); a model with a dynamic input, none
    otherwise."""
    if not any(port.get_partial_shape().is_dynamic for port in model.inputs):
        return []
    return _sites_feeding_scaled_matmuls(model, placement, folded_constants(model, constant), _weight_matmul_input,
                                         _scales_rows, through_constant_ops=True)


def rectified_matmul_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites on the first quantized input of the activation MatMuls in the position of bug 6
    (see the module docstring)."""
    quantized, planned = placement.quantized_inputs(), placement.sites_by_input()
    constant = folded_constants(model, constant)
    names: List[str] = []
    for node in model.get_ordered_ops():
        inputs = [(node.get_friendly_name(), port) for port in (0, 1)]
        if not (_activation_matmul(node, constant, (3, 4)) and all(key in quantized for key in inputs)
                and re.search("N.*[AM]", post_ops(node, planned, constant))):
            continue
        site = next((planned[key] for key in inputs if key in planned), None)
        if site is not None and site.name not in names:
            names.append(site.name)
    return names


#: Activations taken as failing after a transposed embedding lookup (bug 8): all fused ones but ReLU and Swish, which
#: were measured to compile.
_FAILING_AFTER_EMBEDDING = frozenset(FUSED_ACTIVATIONS) - {"Relu", "Swish"}


def transposed_embedding_sites(model: ov.Model, placement: Placement, constant: Optional[Folded] = None) -> List[str]:
    """Names of the activation sites in the position of bug 8: on an activation other than ReLU or Swish of a chain
    the plugin fuses (``fused_post_ops.fused_producer``) with a Transpose in it, from a Gather of a constant table."""
    by_name, constant = ops_by_name(model), folded_constants(model, constant)
    names = []
    for site in placement.activations:
        producer, chain = fused_producer(by_name[site.producer], constant)
        kinds = {op.get_type_name() for op in chain}
        if producer.get_type_name() == "Gather" and is_constant(producer.input_value(0), constant) \
                and "Transpose" in kinds and kinds & _FAILING_AFTER_EMBEDDING:
            names.append(site.name)
    return names


def _probe_compiles(model: ov.Model, placement: Placement) -> bool:
    """Whether a copy of ``model`` with the activation FakeQuantize ops of ``placement`` (unit ranges) compiles
    on the CPU."""
    probe = model.clone()
    by_name = ops_by_name(probe)
    for site in placement.activations:
        insert_fake_quantize(probe, by_name[site.producer].output(site.port), 256,
                             consumers=[by_name[name].input(port) for name, port in site.consumers], name=site.name)
    try:
        ov.Core().compile_model(probe, "CPU")
    except RuntimeError:
        return False
    return True


#: The bugs whose sites always stay in floating point (2 to 6, 8): how to find them, what the warning says.
_MISCOMPUTED = (
    (miscomputed_sites, "miscomputes a rank-4 activation MatMul with quantized inputs whose output is scaled along the "
                        "last axis"),
    (dynamic_row_scaled_sites, "miscomputes an INT8 MatMul whose output is scaled per row (a Multiply by a constant "
                               "varying along a non-last axis, directly or after a bias) in a model with dynamic input "
                               "shapes (reshape it to static shapes to quantize these)"),
    (shifted_after_matmul_sites, "miscomputes a FakeQuantize after an activation MatMul whose output is shifted or "
                                 "scaled per row (an Add or Multiply of a constant varying along a non-last axis)"),
    (rectified_matmul_sites, "miscomputes an INT8 MatMul of two activations whose fused post-ops have an activation "
                             "followed by an Add or Multiply of a constant with several values"),
    (one_pixel_conv_sites, "miscomputes an INT8 convolution with a 1x1 output map and the ops it fuses after it (a "
                           "second activation, a residual Add, a per-channel constant after an activation) in a model "
                           "with dynamic input shapes (reshape it to static shapes to quantize these)"),
    (transposed_embedding_sites, "cannot compile an INT8 layer reading a GELU, Sigmoid or Tanh of a transposed "
                                 "embedding lookup"),
)


def drop_cpu_plugin_failures(model: ov.Model, placement: Placement, compile_check: bool = False,
                             constant: Optional[Folded] = None) -> Placement:
    """``placement`` without the activation sites of bugs 1 to 6 and 8 (see the module docstring), with a warning
    naming them.

    :param compile_check: keep the sites of bug 1 when a probe of the model with them compiles on the CPU.
    :param constant: the model's ops computed from Constants only (computed when not given).
    """
    constant = folded_constants(model, constant)
    for find, what in _MISCOMPUTED:
        names = find(model, placement, constant)
        if names:
            logger.warning("The OpenVINO CPU plugin %s; left in floating point: %s", what, ", ".join(names))
            placement = placement.without_activations(set(names))
    warn_dynamic_map_convolutions(model, placement, constant)
    at_risk = uncompilable_sites(model, placement, constant)
    if at_risk and not (compile_check and _probe_compiles(model, placement)):
        logger.warning("The OpenVINO CPU plugin cannot compile FakeQuantize ops after a rank-4 activation MatMul "
                       "scaled per channel (batch norm); left in floating point: %s", ", ".join(at_risk))
        placement = placement.without_activations(set(at_risk))
    return placement


#: Ops that only reshape a tensor, which the plugin may remove between a MatMul and a FakeQuantize.
_RESHAPES = ("Reshape", "Squeeze", "Unsqueeze")


def _fused_off_axis(node: ov.Node, constant: Folded) -> bool:
    """Whether a FakeQuantize on ``node``'s output may be fused into an op whose channels are not on axis 1: a MatMul,
    or a convolution behind a transpose, through fused post-ops and the inputs of a Concat (computed in place); an
    activation MatMul also through reshapes (a linear layer's output through a reshape was measured right)."""
    if node.get_type_name() == "Concat":
        return any(_fused_off_axis(value.get_node(), constant) for value in node.input_values())
    producer, chain = fused_producer(node, constant)
    if producer.get_type_name() in _RESHAPES:
        while producer.get_type_name() in _RESHAPES:
            producer, _ = fused_producer(producer.input_value(0).get_node(), constant)
        return _activation_matmul(producer, constant, (2, 3, 4, 5))
    return producer.get_type_name() == "MatMul" or (producer.get_type_name() in ("Convolution", "GroupConvolution")
                                                    and any(op.get_type_name() == "Transpose" for op in chain))


def _channels_transposed(node: ov.Node, constant: Folded) -> bool:
    """Whether ``node``'s output comes, through ops the plugin may fuse, from a Transpose that moves another axis to
    axis 1 (a per-channel FakeQuantize there fails to compile under dynamic shapes: the plugin moves it before the
    Transpose, onto an axis its dynamic FakeQuantize does not support); a permutation computed in the graph counts as
    one."""
    _, chain = fused_producer(node, constant)
    perms = [constant_source(op.input_value(1)) for op in chain if op.get_type_name() == "Transpose"]
    return any(perm is None or list(perm.get_data())[1:2] != [1] for perm in perms)  # None: computed, taken as moving


def per_tensor_after_matmul(model: ov.Model, sites: Iterable[ActivationSite], constant: Optional[Folded] = None
                            ) -> List[str]:
    """Make the per-channel activation ``sites`` on a MatMul's output (or on ops fused into it: activations, e.g. ReLU
    then GELU, elementwise ops of a constant, transposes) per tensor, with a warning naming them; returns their
    names.

    The OpenVINO CPU plugin fuses such a FakeQuantize into the MatMul, whose output channels are its last axis,
    and ``compile_model`` fails on a scale per axis-1 channel (``Check 'any_of(scale.size(), OC, 1U)'``) or, through
    post-ops, sometimes compiles and computes wrongly; seen with a depthwise convolution (per-channel input, cpu.json)
    reading rank-4 attention scores, directly or after ReLUs, a GELU, an Add of a scalar, a transpose, a Concat with
    another tensor (nightly runs); also a convolution's output transposed (its channels moved off axis 1) into a
    depthwise convolution. In a model with dynamic inputs, a per-channel FakeQuantize after a Transpose that moves
    another axis to axis 1 does not compile either (``doesn't support non per-tensor quantization for axis: 2``;
    nightly run: a concat, a transpose, a depthwise convolution). ``constant``: the model's ops computed from Constants
    only (computed when not given).
    """
    by_name, constant = ops_by_name(model), folded_constants(model, constant)
    dynamic = any(port.get_partial_shape().is_dynamic for port in model.inputs)
    changed = []
    for site in sites:
        producer = by_name[site.producer]
        if any(o["granularity"] == "perchannel" for o in site.options) and (
                _fused_off_axis(producer, constant) or (dynamic and _channels_transposed(producer, constant))):
            site.options = [{**o, "granularity": "pertensor"} for o in site.options]
            changed.append(site.name)
    if changed:
        logger.warning("The OpenVINO CPU plugin cannot compile a per-channel FakeQuantize on a MatMul's output, a "
                       "transposed convolution output or (dynamic shapes) a transposed tensor; quantized per tensor "
                       "instead: %s", ", ".join(changed))
    return changed
