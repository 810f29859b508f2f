"""Collecting the statistics that algorithms ask for, with as few passes over the data as possible."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from pot_torch.api.engine import Engine
from pot_torch.graph.node_key import split_node_key
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.statistics.online import kept_per_batch
from pot_torch.statistics.padding import find_mask_input, other_mask_inputs, real_tokens, report_mask_input

#: A statistics layout as POT's ``Engine.predict`` takes it: ``{node_key: {stat_name: fn}}``. ``node_key`` is
#: an op's friendly name (its output 0) or ``(friendly_name, output_index)``; ``fn`` maps the batch output
#: (numpy, batch first) to a value.
StatsLayout = Dict[Hashable, Dict[str, Callable[[Any], Any]]]
#: Collected statistics as ``Engine.predict`` returns them: ``{node_key: {stat_name: [value per batch]}}``.
Statistics = Dict[Hashable, Dict[str, List[Any]]]


@dataclass
class StatisticsRequest:
    """What one algorithm needs collected on a model.

    :param layout: the statistics layout.
    :param subset_indices: data set indices to run over (``None``: the whole data set).
    :param batch_size: items per inference batch.
    :param real_tokens: measure activations ``[batch, seq, ...]`` on the positions where the model's mask input
        is non-zero only (``padding_aware_statistics``, see :mod:`pot_torch.statistics.padding`).
    """

    layout: StatsLayout
    subset_indices: Optional[Sequence[int]] = None
    batch_size: int = 1
    tag: str = field(default="", compare=False)
    real_tokens: bool = False

    def sampling_key(self) -> Tuple[Optional[Tuple[int, ...]], int]:
        """Requests with equal keys are served by one pass over the data."""
        subset = None if self.subset_indices is None else tuple(int(i) for i in self.subset_indices)
        return subset, self.batch_size


def collect_statistics(engine: Engine, model: Any, requests: Sequence[StatisticsRequest],
                       print_progress: bool = False) -> List[Statistics]:
    """Run ``model`` through ``engine`` and return the statistics of each request, in request order.

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
    _check_cascade_keys(model, [key for request in requests for key in request.layout])
    engine.set_model(model)
    mask_input = _mask_input(model) if any(request.real_tokens for request in requests) else None
    for (subset, batch_size), members in passes.items():
        merged: StatsLayout = {}
        for index, batches in members.items():
            for node_key, stats in requests[index].layout.items():
                for stat_name, fn in stats.items():
                    if requests[index].real_tokens and mask_input is not None:
                        fn = real_tokens(fn, mask_input)
                    merged.setdefault(node_key, {})[f"{index}/{stat_name}"] = \
                        fn if batches is None else kept_per_batch(fn)
        sampler = BatchSampler(engine.data_loader, batch_size=batch_size,
                               subset_indices=list(subset) if subset is not None else None)
        _, collected = engine.predict(stats_layout=merged, sampler=sampler, print_progress=print_progress)
        for node_key, stats in (collected or {}).items():
            for merged_name, values in stats.items():
                index_text, stat_name = merged_name.split("/", 1)
                batches = members[int(index_text)]
                results[int(index_text)].setdefault(node_key, {})[stat_name] = \
                    values if batches is None else values[:batches]
    release = getattr(engine, "release_statistics_models", None)  # IEEngine's; POT's Engine API has none
    if callable(release):
        release()
    return results


SamplingKey = Tuple[Optional[Tuple[int, ...]], int]


def _mask_input(model: Any) -> Optional[str]:
    """The friendly name of the mask input of ``model``'s members (the first found), reported once per model."""
    members = [entry["model"] for entry in getattr(model, "models", None) or [{"model": model}]]
    found = [mask.get_friendly_name() for member in members for mask in [find_mask_input(member)] if mask is not None]
    mask_input = found[0] if found else None
    others = tuple(name for member in members for name in other_mask_inputs(member))
    report_mask_input(members[0].get_friendly_name(), mask_input, others)
    return mask_input


def _plan_passes(requests: Sequence[StatisticsRequest]) -> Dict[SamplingKey, Dict[int, Optional[int]]]:
    """The passes over the data: ``{(subset, batch size): {request index: None, or the number of leading batches
    the request reads (it rides on a longer pass whose subset starts with its own)}}``."""
    passes: Dict[SamplingKey, Dict[int, Optional[int]]] = {}
    for index, request in enumerate(requests):
        if request.layout:
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
