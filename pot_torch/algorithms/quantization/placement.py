"""Where FakeQuantize ops go: read from the hardware description, no per-model special cases.

Rules (a minimal quantizer propagation):

- every op whose type the hardware description lists (and that is not ignored, and meets the entry's
  ``only_if`` / ``min_input_spatial``) gets its activation inputs quantized, and its constant inputs too when the
  entry has ``weights``; below ``min_input_spatial`` an entry with ``below_min_spatial: weights_only`` keeps
  only its weight quantizers (the op runs in floating point from INT8-stored weights);
- an entry without ``activations`` quantizes weights only (an embedding table read by Gather), and so does
  ``depthwise_weights_only`` for depthwise GroupConvolutions;
- an activation quantizer sits on the producer's output and is shared by all the quantized consumers of that
  output; it moves up across single-consumer ``quantize_agnostic`` ops (MaxPool, Reshape ...) and across a
  Concat into each Concat input, whose quantizers then share one range (``unified_scales``); it also moves up
  across an agnostic op with several consumers when it quantizes all of them (``hoist_shared``);
- inputs that are already quantized (fed by a FakeQuantize) are left alone.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import openvino as ov

from pot_torch.graph.editor import activation_fq_name, weight_constant_of, weight_fq_name
from pot_torch.graph.hardware.config import HardwareConfig
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

Options = List[Dict[str, Any]]


@dataclass
class ActivationSite:
    """One activation FakeQuantize: on output ``port`` of ``producer``, feeding ``consumers`` (name, input)."""

    producer: str
    port: int
    consumers: List[Tuple[str, int]] = field(default_factory=list)
    options: Options = field(default_factory=list)
    channel_axis: int = 1
    rank: int = 0

    @property
    def name(self) -> str:
        """The FakeQuantize's friendly name."""
        return activation_fq_name(self.producer, self.port)

    @property
    def stat_key(self) -> Any:
        """The statistics key of the quantized output (POT's: the name for output 0, else ``(name, port)``)."""
        return self.producer if self.port == 0 else (self.producer, self.port)


@dataclass
class WeightSite:
    """One weight FakeQuantize on constant input ``port`` of ``consumer``."""

    consumer: str
    port: int
    options: Options
    channel_axes: Tuple[int, ...]

    @property
    def name(self) -> str:
        """The FakeQuantize's friendly name."""
        return weight_fq_name(self.consumer, self.port)


@dataclass
class Placement:
    """All the FakeQuantize sites of a model and the groups of activation sites that share ranges."""

    activations: List[ActivationSite]
    weights: List[WeightSite]
    unified: List[Tuple[str, ...]]


# ----------------------------------------------------------------------------------------------- ignored
def _same_value(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, (list, tuple, np.ndarray)) or isinstance(wanted, (list, tuple, np.ndarray)):
        return list(np.ravel(actual)) == list(np.ravel(wanted))
    if isinstance(actual, str) or isinstance(wanted, str):
        return str(actual).lower() == str(wanted).lower()
    return actual == wanted


def _matches(op: ov.Node, pattern: Mapping[str, Any]) -> bool:
    if op.get_type_name() != pattern["type"]:
        return False
    attributes = op.get_attributes()
    return all(key in attributes and _same_value(attributes[key], value)
               for key, value in (pattern.get("attributes") or {}).items())


def ignored_op_names(model: ov.Model, ignored: Optional[Mapping[str, Any]],
                     extra_types: Sequence[str] = ()) -> Set[str]:
    """Names of the ops of ``model`` that must stay in floating point.

    :param ignored: POT's ``ignored`` for this model: ``{'scope': [names], 'operations': [{'type', 'attributes'}],
        'skip_model': bool}``.
    :param extra_types: op types ignored in addition (``model_type`` rules).
    :raises ValueError: for a name in ``scope`` that is not an op of the model, listing close names.
    """
    ignored = ignored or {}
    ordered = model.get_ordered_ops()
    names = [op.get_friendly_name() for op in ordered]
    if ignored.get("skip_model"):
        return set(names)
    known = set(names)
    for name in ignored.get("scope", ()):
        if name not in known:
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
            raise ValueError(f"ignored scope names '{name}', which is not an op of model "
                             f"'{model.get_friendly_name()}'; close op names: {close or names[:10]}. "
                             "Use the op friendly names of the model (openvino.Model.get_ordered_ops()).")
    result = set(ignored.get("scope", ()))
    patterns = list(ignored.get("operations", ())) + [{"type": t} for t in extra_types]
    result.update(op.get_friendly_name() for op in ordered if any(_matches(op, p) for p in patterns))
    return result


# --------------------------------------------------------------------------------------------- options
def expand_options(quantizers: Options) -> Options:
    """One candidate per mode: a quantizer allowing ``mode: [symmetric, asymmetric]`` gives two."""
    expanded = []
    for quantizer in quantizers:
        modes = quantizer["mode"] if isinstance(quantizer["mode"], list) else [quantizer["mode"]]
        expanded.extend({**quantizer, "mode": mode} for mode in modes)
    return expanded


def _key(option: Mapping[str, Any]) -> Tuple[Any, ...]:
    return option["mode"], option["granularity"], option.get("bits", 8)


def intersect_options(left: Options, right: Options) -> Options:
    """Candidates acceptable to both sides (per-channel ones may fall back to per-tensor); ``left`` if none."""
    common = [o for o in left if _key(o) in {_key(r) for r in right}]
    if common:
        return common
    as_tensor = [{**o, "granularity": "pertensor"} for o in left]
    right_tensor = {_key({**r, "granularity": "pertensor"}) for r in right}
    common = [o for o in as_tensor if _key(o) in right_tensor]
    return common or left


# ------------------------------------------------------------------------------------------------- graph
def _is_real(output: ov.Output) -> bool:
    return output.get_element_type().is_real()


def _spatial_size(op: ov.Node) -> Optional[int]:
    shape = op.get_input_partial_shape(0)
    if shape.rank.is_dynamic or shape.rank.get_length() < 3:
        return None
    dims = [shape[i] for i in range(2, shape.rank.get_length())]
    return int(np.prod([d.get_length() for d in dims])) if all(d.is_static for d in dims) else None


def _is_depthwise(op: ov.Node) -> bool:
    if op.get_type_name() != "GroupConvolution":
        return False
    shape = op.get_input_partial_shape(1)
    return (shape.is_static and len(shape) >= 3
            and shape[1].get_length() == 1 and shape[2].get_length() == 1)


def _is_embedding(op: ov.Node) -> bool:
    """A Gather reading rows of a constant 2-D table (an embedding lookup) along axis 0."""
    if op.get_type_name() != "Gather" or weight_constant_of(op, 0) is None:
        return False
    axis = weight_constant_of(op, 2) if op.get_input_size() > 2 else None
    return (op.get_input_partial_shape(0).rank.get_length() == 2 and axis is not None
            and int(np.ravel(axis.get_data())[0]) == 0)


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
    def __init__(self, model: ov.Model, hw: HardwareConfig, ignored: Set[str], rules: Mapping[str, Any]):
        self.model, self.hw, self.ignored, self.rules = model, hw, ignored, rules
        self.sites: Dict[Tuple[str, int], ActivationSite] = {}
        self.weights: List[WeightSite] = []
        self.links: List[Tuple[str, ...]] = []

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
        constant = [weight_constant_of(node, p) is not None for p in range(node.get_input_size())]
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
        kind = op.get_type_name()
        rule = self.hw.rule(kind)
        if rule is None or op.get_friendly_name() in self.ignored:
            return
        if not (rule.get("activations") or rule.get("weights")):
            return
        constant = [weight_constant_of(op, p) is not None for p in range(op.get_input_size())]
        real = [_is_real(op.input_value(p)) for p in range(op.get_input_size())]
        conditions = rule.get("only_if", ())
        if "all_inputs_activations" in conditions and any(constant):
            return
        if "embedding_table" in conditions and not _is_embedding(op):
            return
        depthwise = _is_depthwise(op)
        act_spec = (depthwise and rule.get("depthwise_activations")) or rule.get("activations")
        if depthwise and rule.get("depthwise_weights_only"):
            act_spec = None
        spatial = _spatial_size(op)
        if spatial is not None and spatial < int(rule.get("min_input_spatial", 1)):
            if rule.get("below_min_spatial", "skip") != "weights_only":
                return
            act_spec = None
        has_weights = bool(rule.get("weights")) and any(constant)
        act_options = expand_options(self.hw.quantizer_options(act_spec))
        if kind in self.rules.get("symmetric_activations_without_weights", ()) and not has_weights:
            act_options = [o for o in act_options if o["mode"] == "symmetric"] or act_options
        skip_from = self.rules.get("skip_activations_from", {}).get(kind, ())
        # An op with one activation input left in floating point cannot run in INT8: quantizing its other
        # inputs would only add rounding error (e.g. attention's probabilities @ V when Softmax is skipped).
        runs_in_float = any(real[port] and not constant[port]
                            and _producer_type_behind(self.hw, op.input_value(port)) in skip_from
                            for port in range(op.get_input_size()))
        for port in range(op.get_input_size()):
            if not real[port]:
                continue
            if constant[port]:
                if has_weights and op.input_value(port).get_node().get_type_name() != "FakeQuantize":
                    axes = _weight_channel_axes(op, port, rule.get("weight_channel_axes"))
                    self.weights.append(WeightSite(op.get_friendly_name(), port,
                                                   expand_options(self.hw.quantizer_options(rule["weights"])), axes))
            elif act_options and not runs_in_float:
                self._add_activation(op, port, act_options)

    def hoist_shared(self) -> None:
        """Move a quantizer that serves *every* consumer of an agnostic op's output up to that op's input.

        ``_sources`` only crosses single-consumer agnostic ops. When all the consumers of, say, a MaxPool are
        quantized by one FakeQuantize, quantizing its input instead gives the same values (max and reshapes
        commute with a per-tensor FakeQuantize) and lets the op itself run in INT8 (resnet18's stem MaxPool,
        which feeds a convolution and a residual Add). Sites in unified groups stay where they are.
        """
        linked = {name for names in self.links for name in names}
        ops = {op.get_friendly_name(): op for op in self.model.get_ordered_ops()}
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
        if weight_constant_of(node, 0) is not None or not all(
                weight_constant_of(node, p) is not None for p in range(1, node.get_input_size())):
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


#: Ops whose bodies are separate graphs; pot_torch quantizes around them, not inside.
SUBGRAPH_OPS = ("If", "Loop", "TensorIterator")


def place_quantizers(model: ov.Model, hw: HardwareConfig, ignored: Optional[Mapping[str, Any]] = None,
                     model_type: Optional[str] = None) -> Placement:
    """Decide every FakeQuantize site of ``model`` for hardware ``hw`` (nothing is inserted here).

    Sites are in topological order of their consumers; a unified group's members then get one shared
    per-tensor option set.
    """
    rules = hw.model_type_rules(model_type)
    names = ignored_op_names(model, ignored, rules.get("ignored_operations", ()))
    planner = _Planner(model, hw, names, rules)
    for op in model.get_ordered_ops():
        if op.get_type_name() in SUBGRAPH_OPS:
            logger.warning("%s '%s' has subgraphs: its bodies are left in floating point",
                           op.get_type_name(), op.get_friendly_name())
        planner.visit(op)
    planner.hoist_shared()
    unified = planner.unified_groups()
    by_name = {site.name: site for site in planner.sites.values()}
    for group in unified:
        shared = [{**o, "granularity": "pertensor"} for o in by_name[group[0]].options]
        for name in group[1:]:
            shared = intersect_options(shared, by_name[name].options)
        for name in group:
            by_name[name].options = [{**o, "granularity": "pertensor"} for o in shared]
    return Placement(list(planner.sites.values()), planner.weights, unified)
