"""The FakeQuantize sites a placement decides (data only) and the quantizer option sets they carry.

An activation site is one FakeQuantize on a producer's output shared by its consumers; a weight site one
FakeQuantize on a constant input of one op. Each carries its candidate quantizer options (one per mode), which
``intersect_options`` narrows when several rules meet on one site.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Set, Tuple

from pot_torch.graph.editor import activation_fq_name, weight_fq_name
from pot_torch.graph.node_key import NodeKey, node_key

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
    def stat_key(self) -> NodeKey:
        """The statistics key of the quantized output (POT's: the name for output 0, else ``(name, port)``)."""
        return node_key(self.producer, self.port)


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


@dataclass(frozen=True)
class Placement:
    """All the FakeQuantize sites of a model and the groups of activation sites that share ranges (not changed
    after ``place_quantizers`` returns it; filters build a new one)."""

    activations: Tuple[ActivationSite, ...]
    weights: Tuple[WeightSite, ...]
    unified: Tuple[Tuple[str, ...], ...]
    #: ``(consumer, port)`` of weights already stored as integers (left as they are, see ``compressed_weight_of``).
    compressed_weights: Tuple[Tuple[str, int], ...] = ()
    #: ``(FakeQuantize name, ignored consumer)``: an ignored op reading the float value of a quantized output.
    float_readers: Tuple[Tuple[str, str], ...] = ()

    def quantized_inputs(self) -> Set[Tuple[str, int]]:
        """``(op name, input)`` of every input a FakeQuantize of this placement will feed."""
        return set(self.sites_by_input()) | {(site.consumer, site.port) for site in self.weights}

    def sites_by_input(self) -> Dict[Tuple[str, int], ActivationSite]:
        """``{(op name, input): activation site}`` for every input an activation FakeQuantize of this placement will
        feed."""
        return {consumer: site for site in self.activations for consumer in site.consumers}

    def without_activations(self, names: Set[str]) -> "Placement":
        """This placement without the activation sites named ``names`` (also taken out of the unified groups)."""
        groups = tuple(kept for kept in (tuple(n for n in group if n not in names) for group in self.unified)
                       if len(kept) > 1)
        readers = tuple(reader for reader in self.float_readers if reader[0] not in names)
        return replace(self, activations=tuple(s for s in self.activations if s.name not in names), unified=groups,
                       float_readers=readers)


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
