"""Collecting the statistics that algorithms declare, with as few passes over the data as possible.

A :class:`StatisticsRequest` holds :class:`~pot_torch.statistics.spec.StatisticSpec` s; ``collect_statistics``
turns them into the layout POT's ``Engine.predict`` takes (``{node_key: {stat_name: fn}}``, reducers of online
aggregators marked for ``IEEngine``, see :mod:`~pot_torch.statistics.online`), runs the passes, and hands back per
request ``{node_key: {stat_name: value}}``: each spec's aggregated array (its per-batch list without an aggregator).
The list-returning ``Engine.predict`` is the boundary for custom engines: whatever they return is aggregated here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from pot_torch.api.engine import Engine
from pot_torch.graph.node_key import split_node_key
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.statistics.online import stream_into
from pot_torch.statistics.padding import (
    every_token_real, find_mask_input, other_mask_inputs, real_tokens, report_mask_input)
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: A statistics layout as POT's ``Engine.predict`` takes it: ``{node_key: {stat_name: fn}}``. ``node_key`` is
#: an op's friendly name (its output 0) or ``(friendly_name, output_index)``; ``fn`` maps the batch output
#: (numpy, batch first) to a value.
StatsLayout = Dict[Hashable, Dict[str, Callable[[Any], Any]]]
#: Collected statistics of one request: ``{node_key: {stat_name: value}}``, the value being the spec's aggregate
#: (``None``: the op produced no values on the data) or, for a spec without an aggregator, the per-batch list.
Statistics = Dict[Hashable, Dict[str, Any]]


@dataclass
class StatisticsRequest:
    """What one algorithm needs collected on a model.

    :param specs: the statistics (a later spec with the node and name of an earlier one replaces it).
    :param subset_indices: data set indices to run over (``None``: the whole data set).
    :param batch_size: items per inference batch.
    :param real_tokens: measure activations ``[batch, seq, ...]`` on the positions where the model's mask input
        is non-zero only (``padding_aware_statistics``, see :mod:`pot_torch.statistics.padding`).
    """

    specs: Sequence[StatisticSpec]
    subset_indices: Optional[Sequence[int]] = None
    batch_size: int = 1
    tag: str = field(default="", compare=False)
    real_tokens: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.specs, Mapping) or not all(isinstance(spec, StatisticSpec) for spec in self.specs):
            raise TypeError(f"StatisticsRequest {self.tag!r}: specs must be a sequence of StatisticSpec, got "
                            f"{type(self.specs).__name__}; declare each statistic as StatisticSpec(node, name, "
                            "reducer, aggregator), or convert a layout {node: {name: reducer}} with "
                            "pot_torch.statistics.spec.layout_specs(layout, aggregator)")
        self.specs = tuple({(spec.node, spec.name): spec for spec in self.specs}.values())

    @property
    def layout(self) -> StatsLayout:
        """The specs' reducers as a POT statistics layout, ``{node: {name: reducer}}`` (a view)."""
        layout: StatsLayout = {}
        for spec in self.specs:
            layout.setdefault(spec.node, {})[spec.name] = spec.reducer
        return layout

    def nodes(self) -> List[Hashable]:
        """The op outputs the specs read, each once, in order."""
        return list(dict.fromkeys(spec.node for spec in self.specs))

    def sampling_key(self) -> Tuple[Optional[Tuple[int, ...]], int]:
        """Requests with equal keys are served by one pass over the data."""
        subset = None if self.subset_indices is None else tuple(int(i) for i in self.subset_indices)
        return subset, self.batch_size


def collect_statistics(engine: Engine, model: Any, requests: Sequence[StatisticsRequest],
                       print_progress: bool = False) -> List[Statistics]:
    """Run ``model`` through ``engine`` and return the statistics of each request, in request order:
    ``{node_key: {stat_name: value}}`` with each spec's aggregate of the per-batch values the engine returned
    (``None`` if it returned none: the op never ran on the data; the list itself for a spec without an
    aggregator). A statistic the engine did not return at all is absent.

    Requests that read the same samples in the same batches share one ``engine.predict`` call, and so does a
    request whose samples are the first whole batches of another's (BiasCorrection's first 20 % of the
    calibration subset): its statistics are kept per batch in that pass and cut to its batches. Afterwards an
    engine with a ``release_statistics_models`` method (``IEEngine``) is asked to free its statistics models.

    :raises ValueError: ``model`` is a cascade and a requested op name belongs to more than one member
        (statistics are keyed by op name, so they would mix).
    """
    results: List[Statistics] = [{} for _ in requests]
    passes = _plan_passes(requests)
    if not passes:
        return results
    _check_cascade_keys(model, [node for request in requests for node in request.nodes()])
    engine.set_model(model)
    mask_input = _mask_input(model, engine, passes) if any(request.real_tokens for request in requests) else None
    for (subset, batch_size), members in passes.items():
        merged: StatsLayout = {}
        for index, batches in members.items():
            for spec in requests[index].specs:
                merged.setdefault(spec.node, {})[f"{index}/{spec.name}"] = _engine_fn(
                    spec, batches is None, mask_input if requests[index].real_tokens else None)
        sampler = BatchSampler(engine.data_loader, batch_size=batch_size,
                               subset_indices=list(subset) if subset is not None else None)
        _, collected = engine.predict(stats_layout=merged, sampler=sampler, print_progress=print_progress)
        for index, batches in members.items():
            for spec in requests[index].specs:
                values = (collected or {}).get(spec.node, {}).get(f"{index}/{spec.name}")
                if values is not None:
                    results[index].setdefault(spec.node, {})[spec.name] = \
                        spec.aggregate(values if batches is None else values[:batches])
    release = getattr(engine, "release_statistics_models", None)  # IEEngine's; POT's Engine API has none
    if callable(release):
        release()
    return results


SamplingKey = Tuple[Optional[Tuple[int, ...]], int]


def _engine_fn(spec: StatisticSpec, online: bool, mask_input: Optional[str]) -> Any:
    """The statistic function the engine gets for ``spec``: its reducer, marked for online aggregation when
    ``online`` (its values are not cut to a request's leading batches), measured on real tokens only when a
    ``mask_input`` is given (:func:`~pot_torch.statistics.padding.real_tokens` keeps the mark)."""
    fn = stream_into(spec.reducer, spec.aggregator) if online else spec.reducer
    return fn if mask_input is None else real_tokens(fn, mask_input)


def _mask_input(model: Any, engine: Engine, passes: Dict[SamplingKey, Any]) -> Optional[str]:
    """The friendly name of the mask input of ``model``'s members (the first found), reported once per model;
    ``None`` also when every sample the ``passes`` read has no padding (the masked statistics would equal the plain
    ones: skipped, and said)."""
    members = [entry["model"] for entry in getattr(model, "models", None) or [{"model": model}]]
    found = [mask.get_friendly_name() for member in members for mask in [find_mask_input(member)] if mask is not None]
    mask_input = found[0] if found else None
    others = tuple(name for member in members for name in other_mask_inputs(member))
    report_mask_input(members[0].get_friendly_name(), mask_input, others)
    subsets = [subset for subset, _ in passes]
    indices = None if None in subsets else sorted({index for subset in subsets for index in subset})
    if mask_input is not None and every_token_real(engine.data_loader, indices, mask_input):
        logger.info("padding-aware statistics: every calibration sample of model '%s' is all real tokens (its '%s' "
                    "is non-zero everywhere), so plain statistics are the same and are taken instead",
                    members[0].get_friendly_name(), mask_input)
        return None
    return mask_input


def _plan_passes(requests: Sequence[StatisticsRequest]) -> Dict[SamplingKey, Dict[int, Optional[int]]]:
    """The passes over the data: ``{(subset, batch size): {request index: None, or the number of leading batches
    the request reads (it rides on a longer pass whose subset starts with its own)}}``."""
    passes: Dict[SamplingKey, Dict[int, Optional[int]]] = {}
    for index, request in enumerate(requests):
        if request.specs:
            passes.setdefault(request.sampling_key(), {})[index] = None
    for key in sorted(passes, key=lambda k: -1 if k[0] is None else len(k[0])):
        subset, batch_size = key
        host = next((other for other in passes if other != key and _starts_with(other, subset, batch_size)), None)
        if host is not None:
            passes[host].update({index: len(subset) // batch_size if batches is None else batches
                                 for index, batches in passes.pop(key).items()})
    return passes


def _starts_with(key: SamplingKey, subset: Optional[Tuple[int, ...]], batch_size: int) -> bool:
    """Whether the pass ``key`` reads ``subset`` as its first whole batches of ``batch_size``."""
    other, other_batch = key
    return (subset is not None and other is not None and other_batch == batch_size and len(other) > len(subset)
            and len(subset) % batch_size == 0 and other[:len(subset)] == subset)


def leading_batches(host: StatisticsRequest, request: StatisticsRequest) -> Optional[int]:
    """How many of the first batches of ``host``'s pass hold exactly the samples of ``request`` (all of them when
    both read the same samples in the same batches); ``None`` when they do not, or when either has no subset
    (the whole data set, whose length is not known here)."""
    subset, batch_size = request.sampling_key()
    if subset is None or host.subset_indices is None:
        return None
    if host.sampling_key() == (subset, batch_size):
        return -(-len(subset) // batch_size)
    return len(subset) // batch_size if _starts_with(host.sampling_key(), subset, batch_size) else None


def _check_cascade_keys(model: Any, node_keys: Sequence[Hashable]) -> None:
    """Refuse statistics on an op name that several cascade members have."""
    if not getattr(model, "is_cascade", False):
        return
    owners: Dict[str, List[str]] = {}
    for member in model.models:
        for name in {op.get_friendly_name() for op in member["model"].get_ops()}:
            owners.setdefault(name, []).append(member["name"])
    for key in node_keys:
        name = split_node_key(key)[0]
        if len(owners.get(name, ())) > 1:
            raise ValueError(
                f"cascade members {owners[name]} each have an op named '{name}': statistics are keyed by op "
                "name, so theirs would mix. Give each member's ops unique names before quantizing, e.g. "
                "prefix them with the member's name (op.set_friendly_name(f'{member}/{name}'), as "
                "examples/cascaded_model.py does; POT prefixed cascade op names itself)")
