"""Where FakeQuantize ops go: each op classified, its class looked up in the hardware description's rules.

Rules (a minimal quantizer propagation; the rule fields are :class:`~pot_torch.graph.hardware.config.OpRule`'s):

- every op whose class (:func:`~pot_torch.graph.hardware.op_classes.classify_op`: its type, or
  ``DepthwiseConvolution``, ``ResidualAdd``, ``EmbeddingGather`` ...) has a rule, and that is not ignored, gets
  its activation inputs quantized (``activations``) and its constant inputs too (``weights``); below
  ``min_input_spatial`` a rule with ``below_min_spatial: weights_only`` keeps only its weight quantizers (the op
  runs in floating point from INT8-stored weights), one with ``skip`` none;
- an activation quantizer sits on the producer's output and is shared by all the consumers of that output,
  quantized or not (except ignored ops), as in POT and NNCF; it moves up across single-consumer
  ``quantize_agnostic`` ops (MaxPool, Reshape ...) and across a Concat into each Concat input, whose quantizers
  then share one range (``unified_scales``); it also moves up across an agnostic op with several consumers when
  it quantizes all of them (``hoist_shared``);
- inputs that are already quantized (fed by a FakeQuantize) are left alone, and so are weights stored as integers
  (``Constant (i8/u8) -> Convert -> [Subtract] -> Multiply``, a saved INT8 IR): neither quantized again nor
  taken for activations; ``Placement.compressed_weights`` lists them;
- for the CPU plugin, with dynamic input shapes, an INT8 convolution or MatMul whose output several ops read,
  none quantized, gets a FakeQuantize on that output too (a plugin bug, ``quantize_branching_int8_outputs``);
- for the CPU plugin, a per-channel activation site on a MatMul's output (a depthwise convolution reading
  attention scores) becomes per tensor: the plugin fuses the FakeQuantize into the MatMul, whose channels are
  its last axis, and cannot compile a scale per axis-1 channel (``cpu_workarounds.per_tensor_after_matmul``);
- for the CPU plugin, the sites it cannot compile or computes wrongly are dropped last
  (:mod:`~pot_torch.algorithms.quantization.cpu_workarounds`), so nothing inserted is removed afterwards.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import numpy as np
import openvino as ov

from pot_torch.algorithms.quantization.cpu_workarounds import drop_cpu_plugin_failures, per_tensor_after_matmul
from pot_torch.algorithms.quantization.ignored import ignored_op_names
from pot_torch.algorithms.quantization.sites import (ActivationSite, Options, Placement, WeightSite, expand_options,
                                                     intersect_options)
from pot_torch.graph.constants import constant_ops, constant_source
from pot_torch.graph.editor import compressed_weight_of, ops_by_name, ordered_consumers
from pot_torch.graph.hardware.config import HardwareConfig, ModelTypeRules
from pot_torch.graph.hardware.op_classes import classify_op
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


def _is_real(output: ov.Output) -> bool:
    return output.get_element_type().is_real()


def _spatial_size(op: ov.Node) -> Optional[int]:
    shape = op.get_input_partial_shape(0)
    if shape.rank.is_dynamic or shape.rank.get_length() < 3:
        return None
    dims = [shape[i] for i in range(2, shape.rank.get_length())]
    return int(np.prod([d.get_length() for d in dims])) if all(d.is_static for d in dims) else None


def _weight_channel_axes(op: ov.Node, port: int, spec: Any) -> Tuple[int, ...]:
    if spec == "matmul":
        rank = op.get_input_partial_shape(port).rank.get_length()
        transposed = op.get_attributes()["transpose_b" if port == 1 else "transpose_a"]
        if rank < 2:
            return ()
        out_axis = rank - 2 if (port == 1) == transposed else rank - 1
        return (out_axis,)
    return tuple(spec or ())


def _producer_type_behind(hw: HardwareConfig, output: ov.Output) -> str:
    node = output.get_node()
    while hw.is_agnostic(node.get_type_name()) and node.get_type_name() != "Concat":
        node = node.input_value(0).get_node()
    return node.get_type_name()


class _Planner:
    def __init__(self, model: ov.Model, hw: HardwareConfig, ignored: Set[str], rules: ModelTypeRules):
        self.model, self.hw, self.ignored, self.rules = model, hw, ignored, rules
        #: the ops computed from Constants only (the plugin folds them): constants, never activations
        self.constant = constant_ops(model.get_ordered_ops())
        #: ops with weights computed in the graph from Constants (not a Constant to quantize): left in floating point
        self.computed_weights: List[str] = []
        self.sites: Dict[Tuple[str, int], ActivationSite] = {}
        self.weights: List[WeightSite] = []
        self.compressed: List[Tuple[str, int]] = []
        self.float_readers: List[Tuple[str, str]] = []
        self.links: List[Tuple[str, ...]] = []

    def _is_constant(self, output: ov.Output) -> bool:
        return constant_source(output) is not None or output.get_node().get_friendly_name() in self.constant

    def _sources(self, target: ov.Input, per_channel: bool) -> List[Tuple[ov.Output, ov.Input]]:
        """Where to quantize what reaches ``target``: moved up across agnostic ops; [] if already quantized."""
        output = target.get_source_output()
        node = output.get_node()
        kind = node.get_type_name()
        if kind == "FakeQuantize" or not _is_real(output):
            return []
        if (per_channel or not self.hw.is_agnostic(kind) or node.get_friendly_name() in self.ignored
                or output.get_index() != 0 or len(output.get_target_inputs()) != 1
                or any(node.output(i).get_target_inputs() for i in range(1, node.get_output_size()))):
            return [(output, target)]
        constant = [self._is_constant(node.input_value(p)) for p in range(node.get_input_size())]
        if kind == "Concat":
            if any(constant):
                return [(output, target)]
            found = [self._sources(node.input(p), per_channel) for p in range(node.get_input_size())]
            return [pair for pairs in found for pair in pairs]
        if constant[0] or not all(constant[1:]):
            return [(output, target)]
        return self._sources(node.input(0), per_channel)

    def _add_activation(self, op: ov.Node, port: int, options: Options) -> None:
        per_channel = all(o["granularity"] == "perchannel" for o in options)
        pairs = self._sources(op.input(port), per_channel)
        names = []
        for output, target in pairs:
            producer = output.get_node().get_friendly_name()
            key = (producer, output.get_index())
            site = self.sites.get(key)
            if site is None:
                shape = output.get_partial_shape()
                rank = shape.rank.get_length() if shape.rank.is_static else 0
                site = self.sites[key] = ActivationSite(producer, output.get_index(), options=list(options),
                                                        rank=rank)
            else:
                site.options = intersect_options(site.options, options)
            consumer = (target.get_node().get_friendly_name(), target.get_index())
            if consumer not in site.consumers:
                site.consumers.append(consumer)
            names.append(site.name)
        if len(names) > 1:
            self.links.append(tuple(names))

    def visit(self, op: ov.Node) -> None:
        if op.get_friendly_name() in self.constant:
            return
        compressed = [compressed_weight_of(op, p) is not None for p in range(op.get_input_size())]
        constant = [compressed[p] or self._is_constant(op.input_value(p)) for p in range(op.get_input_size())]
        op_class = classify_op(op, constant)
        rule = self.hw.rule(op_class)
        if rule is None or not rule.quantizes or op.get_friendly_name() in self.ignored:
            return
        real = [_is_real(op.input_value(p)) for p in range(op.get_input_size())]
        act_spec = rule.activations
        spatial = _spatial_size(op)
        if spatial is not None and spatial < rule.min_input_spatial:
            if rule.below_min_spatial != "weights_only":
                return
            act_spec = None
        has_weights = bool(rule.weights) and any(constant)
        if has_weights and any(constant[p] and not compressed[p] and constant_source(op.input_value(p)) is None
                               for p in range(op.get_input_size())):
            self.computed_weights.append(op.get_friendly_name())
            return
        act_options = expand_options(self.hw.quantizer_options(act_spec))
        if op_class in self.rules.symmetric_activations_without_weights and not has_weights:
            act_options = [o for o in act_options if o["mode"] == "symmetric"] or act_options
        skip_from = self.rules.skipped_producers(op_class)
        # An op with one activation input left in floating point cannot run in INT8: quantizing its other
        # inputs would only add rounding error (e.g. attention's probabilities @ V when Softmax is skipped).
        runs_in_float = any(real[port] and not constant[port]
                            and _producer_type_behind(self.hw, op.input_value(port)) in skip_from
                            for port in range(op.get_input_size()))
        for port in range(op.get_input_size()):
            if not real[port]:
                continue
            if compressed[port]:
                self.compressed.append((op.get_friendly_name(), port))
            elif constant[port]:
                if has_weights and op.input_value(port).get_node().get_type_name() != "FakeQuantize":
                    axes = _weight_channel_axes(op, port, rule.weight_channel_axes)
                    self.weights.append(WeightSite(op.get_friendly_name(), port,
                                                   expand_options(self.hw.quantizer_options(rule.weights)), axes))
            elif act_options and not runs_in_float:
                self._add_activation(op, port, act_options)

    def share_with_all_consumers(self) -> None:
        """Let every activation quantizer serve all the consumers of its output, not only the quantized ones.

        As POT and NNCF place it: one FakeQuantize per producer output. An output read through a FakeQuantize
        by one consumer and raw by another (a residual Add and a squeeze-excitation gate reading the same
        convolution) is computed wrongly by the OpenVINO CPU plugin whenever a dimension is dynamic
        (docs/int8-placement-findings.md, "Dynamic shapes"). Ops in the ignored scope keep reading the float
        output (``float_readers``); a FakeQuantize already in the model keeps its input.
        """
        ops = ops_by_name(self.model)
        for site in self.sites.values():
            for target in ordered_consumers(self.model, ops[site.producer].output(site.port)):
                consumer = (target.get_node().get_friendly_name(), target.get_index())
                if consumer in site.consumers or target.get_node().get_type_name() == "FakeQuantize":
                    continue
                if consumer[0] in self.ignored:
                    self.float_readers.append((site.name, consumer[0]))
                else:
                    site.consumers.append(consumer)

    def quantize_branching_int8_outputs(self) -> None:
        """Dynamic shapes only: an INT8 convolution or MatMul (every input quantized) whose output several ops
        read, none of them quantized, gets a FakeQuantize on that output shared by all of them.

        The OpenVINO CPU plugin computes such an output wrongly (a bias Add in between, or a single reader,
        avoids it; docs/int8-placement-findings.md, "Dynamic shapes"). POT and NNCF leave that output in
        floating point.
        """
        if all(item.get_partial_shape().is_static for item in self.model.inputs):
            return
        quantized = ({consumer for site in self.sites.values() for consumer in site.consumers}
                     | {(site.consumer, site.port) for site in self.weights})
        for op in self.model.get_ordered_ops():
            name = op.get_friendly_name()
            if op.get_type_name() not in INT8_LAYERS or (name, 0) in self.sites or not all(
                    (name, port) in quantized for port in range(op.get_input_size())):
                continue
            consumers = [(target.get_node().get_friendly_name(), target.get_index())
                         for target in ordered_consumers(self.model, op.output(0))]
            if len(consumers) < 2:
                continue
            options = expand_options(self.hw.quantizer_options(self.hw.rule(classify_op(op)).activations))
            site = ActivationSite(name, 0, options=options, rank=op.get_output_partial_shape(0).rank.get_length())
            site.consumers = [consumer for consumer in consumers if consumer[0] not in self.ignored]
            self.float_readers.extend((site.name, consumer[0]) for consumer in consumers if consumer[0] in self.ignored)
            self.sites[(name, 0)] = site
            logger.info("'%s' (an INT8 %s read by %d ops) gets an output FakeQuantize: the CPU plugin computes this "
                        "output wrongly under dynamic shapes otherwise", name, op.get_type_name(), len(consumers))

    def hoist_shared(self) -> None:
        """Move a quantizer that serves *every* consumer of an agnostic op's output up to that op's input.

        ``_sources`` only crosses single-consumer agnostic ops. When all the consumers of, say, a MaxPool are
        quantized by one FakeQuantize, quantizing its input instead gives the same values (max and reshapes
        commute with a per-tensor FakeQuantize) and lets the op itself run in INT8 (resnet18's stem MaxPool,
        which feeds a convolution and a residual Add). Sites in unified groups stay where they are.
        """
        linked = {name for names in self.links for name in names}
        ops = ops_by_name(self.model)
        moved = True
        while moved:
            moved = False
            for key, site in list(self.sites.items()):
                target = self._hoist_target(ops[site.producer], site, linked)
                if target is None or target in self.sites:
                    continue
                source = ops[target[0]].output(target[1])
                shape = source.get_partial_shape()
                hoisted = ActivationSite(target[0], target[1], [(site.producer, 0)], site.options,
                                         site.channel_axis, shape.rank.get_length() if shape.rank.is_static else 0)
                self.sites = {(target if k == key else k): (hoisted if k == key else v) for k, v in self.sites.items()}
                moved = True
                break

    def _hoist_target(self, node: ov.Node, site: ActivationSite, linked: Set[str]) -> Optional[Tuple[str, int]]:
        kind = node.get_type_name()
        if (site.port != 0 or site.name in linked or kind == "Concat" or not self.hw.is_agnostic(kind)
                or node.get_friendly_name() in self.ignored
                or all(o["granularity"] == "perchannel" for o in site.options)
                or any(node.output(i).get_target_inputs() for i in range(1, node.get_output_size()))):
            return None
        consumers = {(t.get_node().get_friendly_name(), t.get_index()) for t in node.output(0).get_target_inputs()}
        if consumers != set(site.consumers):
            return None
        if constant_source(node.input_value(0)) is not None or not all(
                constant_source(node.input_value(p)) is not None for p in range(1, node.get_input_size())):
            return None
        source = node.input_value(0)
        if (source.get_node().get_type_name() == "FakeQuantize" or not _is_real(source)
                or len(source.get_target_inputs()) != 1):
            return None
        return source.get_node().get_friendly_name(), source.get_index()

    def unified_groups(self) -> List[Tuple[str, ...]]:
        parent: Dict[str, str] = {}

        def root(name: str) -> str:
            while parent.setdefault(name, name) != name:
                name = parent[name]
            return name

        for names in self.links:
            for name in names[1:]:
                a, b = root(names[0]), root(name)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        order = [site.name for site in self.sites.values()]
        groups: Dict[str, List[str]] = {}
        for name in order:
            if name in parent:
                groups.setdefault(root(name), []).append(name)
        return [tuple(members) for members in groups.values() if len(members) > 1]


#: Layers whose INT8 output the CPU plugin miscomputes under dynamic shapes when several ops read it.
INT8_LAYERS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
               "MatMul")
#: Ops whose bodies are separate graphs; pot_torch quantizes around them, not inside.
SUBGRAPH_OPS = ("If", "Loop", "TensorIterator")


def place_quantizers(model: ov.Model, hw: HardwareConfig, ignored: Optional[Mapping[str, Any]] = None,
                     model_type: Optional[str] = None, cpu_plugin: Optional[bool] = None,
                     compile_check: bool = False) -> Placement:
    """Decide every FakeQuantize site of ``model`` for hardware ``hw`` (nothing is inserted here).

    Sites are in topological order of their consumers; a unified group's members then get one shared
    per-tensor option set.

    :param cpu_plugin: apply the OpenVINO CPU plugin's workarounds: quantize the branching INT8 outputs it
        miscomputes under dynamic shapes, and leave out the sites it cannot compile or computes wrongly
        (:func:`~pot_torch.algorithms.quantization.cpu_workarounds.drop_cpu_plugin_failures`); default: when
        ``hw`` says so (``cpu_plugin_workarounds``).
    :param compile_check: with ``cpu_plugin``, compile a probe to keep the sites at risk that do compile.
    """
    rules = hw.model_type_rules(model_type)
    names = ignored_op_names(model, ignored, rules.ignored_operations)
    planner = _Planner(model, hw, names, rules)
    for op in model.get_ordered_ops():
        if op.get_type_name() in SUBGRAPH_OPS:
            logger.warning("%s '%s' has subgraphs: its bodies are left in floating point",
                           op.get_type_name(), op.get_friendly_name())
        planner.visit(op)
    if planner.computed_weights:
        logger.warning("the weights of %s are computed in the graph from Constants, not stored as a Constant: left in "
                       "floating point; fold the model's constants first (openvino.passes.ConstantFolding, as "
                       "openvino.convert_model does) to quantize them", ", ".join(planner.computed_weights))
    planner.share_with_all_consumers()
    cpu_plugin = hw.cpu_plugin_workarounds if cpu_plugin is None else cpu_plugin
    if cpu_plugin:
        planner.quantize_branching_int8_outputs()
    planner.hoist_shared()
    unified = planner.unified_groups()
    by_name = {site.name: site for site in planner.sites.values()}
    for group in unified:
        shared = [{**o, "granularity": "pertensor"} for o in by_name[group[0]].options]
        for name in group[1:]:
            shared = intersect_options(shared, by_name[name].options)
        for name in group:
            by_name[name].options = [{**o, "granularity": "pertensor"} for o in shared]
    if cpu_plugin:
        per_tensor_after_matmul(model, planner.sites.values(), planner.constant)
    placement = Placement(tuple(planner.sites.values()), tuple(planner.weights), tuple(unified),
                          tuple(planner.compressed), tuple(planner.float_readers))
    if cpu_plugin:
        placement = drop_cpu_plugin_failures(model, placement, compile_check, planner.constant)
    return placement
