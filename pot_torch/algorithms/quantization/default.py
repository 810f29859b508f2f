"""``DefaultQuantization``: POT's default INT8 recipe as a list of steps, each a group of registered algorithms.

The steps (as NNCF's ``create_ptq_pipeline``), each part getting ``sub_params(config, part_name)``:

0. ``SmoothQuant``, for ``model_type: 'transformer'`` only (as NNCF's TRANSFORMER; POT had no such step), unless
   ``smooth_quant_alpha`` is ``None`` or negative;
1. ``ActivationChannelAlignment``, skipped when it finds no layer pairs;
2. ``MinMaxQuantization`` then ``FastBiasCorrection`` (or ``BiasCorrection`` with ``use_fast_bias: False``, the
   default for ``model_type: 'transformer'``).

A step collects the statistics of all its parts in one pass over the model entering it (requests with the same
samples share the pass) and runs its parts in order, each with the results of its own requests. When
SmoothQuant or ActivationChannelAlignment is followed directly by the last step, one pass serves both: the last
step's statistics are measured on the model before the change, and those of the activations it changes are
computed from per-sample, per-channel statistics of the same pass (SmoothQuant multiplies by positive per-channel
factors: :mod:`~pot_torch.algorithms.quantization.smoothed_statistics`; the alignment makes ``(x - shift) /
scale`` per channel: :mod:`~pot_torch.statistics.channel_affine`); only statistics that cannot be derived
(quantiles) are measured in a second pass, each logged at DEBUG. The other statistics are reused as measured
before the change: the changed model computes the same function up to float32 rounding, so after an alignment
the ranges and bias shifts downstream of it differ from a second pass's in the last bits (relative 1e-7 for
ranges, up to 5e-4 for bias shifts on the zoo's CNNs). Run on its own, ``run(model)`` edits ``model``
in place.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Hashable, List, Optional, Sequence, Set, Tuple

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization import smoothed_statistics
from pot_torch.algorithms.quantization.channel_alignment import ActivationChannelAlignment
from pot_torch.algorithms.quantization.smooth_quant import SmoothQuant, smooth_quant_enabled
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.statistics import channel_affine
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics, leading_batches
from pot_torch.statistics.spec import StatisticSpec
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: One step: algorithms whose statistics are collected together on the model entering the step.
Step = Tuple[Algorithm, ...]


@COMPRESSION_ALGORITHMS.register("DefaultQuantization")
class DefaultQuantization(Algorithm):
    """[SmoothQuant,] ActivationChannelAlignment, MinMaxQuantization and (fast) bias correction.

    Parameters: those of its parts (see ``pot_torch.algorithms.params``) plus ``use_fast_bias`` (default True,
    False for ``model_type: 'transformer'``).
    Its statistics are collected inside ``run`` (one pass per model-changing step), so
    ``statistics_requests`` is empty.
    """

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params("DefaultQuantization", config), engine)

    def _part(self, name: str) -> Algorithm:
        return COMPRESSION_ALGORITHMS.get(name)(sub_params(self.config, name), self.engine)

    def steps(self) -> List[Step]:
        """The pipeline steps, in order."""
        steps: List[Step] = []
        if self.config.model_type == "transformer" and smooth_quant_enabled(self.config.smooth_quant_alpha):
            steps.append((self._part("SmoothQuant"),))
        steps.append((self._part("ActivationChannelAlignment"),))
        steps.append((self._part("MinMaxQuantization"),
                      self._part("FastBiasCorrection" if self.config.use_fast_bias else "BiasCorrection")))
        return steps

    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """None: ``run`` collects the statistics of its steps itself."""
        return []

    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Quantize ``model`` (edited in place) and return it; ``statistics`` is not used."""
        steps = self.steps()
        index = 0
        while index < len(steps):
            step, requests = steps[index], [part.statistics_requests(model) for part in steps[index]]
            if _skippable(step, requests):
                index += 1
                continue
            following = steps[index + 1:]
            derivation = _derivation(step, model) if following and _no_statistics(following[:-1], model) else None
            if derivation is not None:
                return _derived_last_step(self.engine, derivation, requests[0], following[-1], model)
            model = _run_step(step, requests, collect_statistics(self.engine, model, _flat(requests)), model)
            index += 1
        return model


def _flat(requests: Sequence[Sequence[StatisticsRequest]]) -> List[StatisticsRequest]:
    return [request for part in requests for request in part]


def _skippable(step: Step, requests: Sequence[Sequence[StatisticsRequest]]) -> bool:
    """A step of model-changing parts that need no statistics (found nothing to change) is skipped."""
    return all(part.change_original_model for part in step) and not any(r.specs for r in _flat(requests))


def _no_statistics(steps: Sequence[Step], model: Any) -> bool:
    return all(_skippable(step, [part.statistics_requests(model) for part in step]) for step in steps)


def _run_step(step: Step, requests: Sequence[Sequence[StatisticsRequest]], collected: List[Statistics],
              model: Any) -> Any:
    """Run the parts of ``step`` in order, each with the results of its own requests (``collected`` is in the
    order of ``requests`` flattened)."""
    start = 0
    for part, own in zip(step, requests):
        logger.info("Start algorithm: %s", part.name)
        model = part.run(model, collected[start:start + len(own)])
        start += len(own)
    return model


#: Given a later request's specs and the per-channel statistics measured before the change on that request's
#: samples, the collected values of the specs that follow from them.
Derive = Callable[[Sequence[StatisticSpec], Statistics], Statistics]


class _Derivation(ABC):
    """A one-part step whose change of the activations follows from per-channel statistics measured before it.

    :param what: what the change makes of the model ("smoothed", "aligned"), for the log.
    """

    what = ""

    def __init__(self, part: Algorithm) -> None:
        self.part = part

    @abstractmethod
    def channel_specs(self) -> List[StatisticSpec]:
        """The per-channel statistics to measure on the model before the change."""

    @abstractmethod
    def run(self, model: Any, statistics: List[Statistics]) -> Tuple[Any, Derive, Set[Hashable]]:
        """Run the part; returns the changed model, how to derive statistics on it, and the outputs whose values
        changed otherwise than :data:`Derive` accounts for (their earlier statistics are not reused)."""


class _Smoothing(_Derivation):
    what = "smoothed"

    def __init__(self, part: SmoothQuant, model: Any) -> None:
        super().__init__(part)
        self.groups = [group for _, member_groups in part.groups(model) for group in member_groups]

    def channel_specs(self) -> List[StatisticSpec]:
        return smoothed_statistics.channel_range_specs(self.groups, bool(self.part.config.inplace_statistics))

    def run(self, model: Any, statistics: List[Statistics]) -> Tuple[Any, Derive, Set[Hashable]]:
        model = self.part.run(model, statistics)
        smoothed = {key: value for ov_model in {id(m["model"]): m["model"] for m in model.models}.values()
                    for key, value in smoothed_statistics.smoothed_activations(ov_model, self.groups).items()}
        return model, lambda specs, channel: smoothed_statistics.derive(specs, smoothed, channel), set()


class _Aligning(_Derivation):
    what = "aligned"

    def __init__(self, part: ActivationChannelAlignment, model: Any) -> None:
        super().__init__(part)
        self.keys = [key for request in part.statistics_requests(model) for key in request.nodes()]

    def channel_specs(self) -> List[StatisticSpec]:
        return channel_affine.channel_specs(self.keys, bool(self.part.config.inplace_statistics))

    def run(self, model: Any, statistics: List[Statistics]) -> Tuple[Any, Derive, Set[Hashable]]:
        alignments = self.part.align(model, statistics)
        affines = {item.pair.activation_key: channel_affine.ChannelAffine(item.shift, item.scale, item.rank)
                   for item in alignments}
        changed = {key for item in alignments for key in (item.pair.activation_key, item.producer_key)}
        return model, lambda specs, channel: channel_affine.derive(specs, affines, channel), changed


def _derivation(step: Step, model: Any) -> Optional[_Derivation]:
    if len(step) == 1 and isinstance(step[0], SmoothQuant):
        return _Smoothing(step[0], model)
    if len(step) == 1 and isinstance(step[0], ActivationChannelAlignment):
        return _Aligning(step[0], model)
    return None


def _derived_last_step(engine: Any, derivation: _Derivation, step_requests: List[StatisticsRequest], last: Step,
                       model: Any) -> Any:
    """A model-changing step and the last step on one pass over the model before the change (plus a pass for
    what cannot be derived). The per-channel statistics are measured on the samples of the last step's first
    request; a request reading its first batches gets them cut to its own."""
    early = _flat([part.statistics_requests(model) for part in last])
    host = next((request for request in early if request.specs), None)
    channel_request = StatisticsRequest(derivation.channel_specs() if host else (),
                                        host.subset_indices if host else None, host.batch_size if host else 1,
                                        tag=f"{derivation.what} channel statistics",
                                        real_tokens=bool(host and host.real_tokens))
    collected = collect_statistics(engine, model, step_requests + [channel_request] + early)
    own, channel_stats, early_stats = collected[:len(step_requests)], collected[len(step_requests)], \
        collected[len(step_requests) + 1:]
    logger.info("Start algorithm: %s", derivation.part.name)
    model, derive, changed = derivation.run(model, own)
    requests = [part.statistics_requests(model) for part in last]
    flat = _flat(requests)
    known: List[Statistics] = []
    for request, before in zip(flat, _matching(flat, early, early_stats)):
        batches = leading_batches(channel_request, request)
        derived = {} if batches is None else derive(request.specs, {
            key: {name: values[:batches] for name, values in stats.items()} for key, stats in channel_stats.items()})
        kept = {key: value for key, value in before.items() if key not in changed}
        known.append({key: {**kept.get(key, {}), **derived.get(key, {})} for key in request.nodes()
                      if key in kept or key in derived})
    missing = [StatisticsRequest(smoothed_statistics.missing_specs(request.specs, have), request.subset_indices,
                                 request.batch_size, tag=request.tag, real_tokens=request.real_tokens)
               for request, have in zip(flat, known)]
    for request in missing:
        for key, stats in request.layout.items():
            logger.debug("%s of %r: not derived from the per-channel statistics measured before %s, measured on "
                         "the %s model in a second pass", ", ".join(stats), key, derivation.part.name,
                         derivation.what)
    for have, extra in zip(known, collect_statistics(engine, model, missing)):
        for key, stats in extra.items():
            have.setdefault(key, {}).update(stats)
    return _run_step(last, requests, known, model)


def _matching(requests: Sequence[StatisticsRequest], early: Sequence[StatisticsRequest],
              early_stats: Sequence[Statistics]) -> List[Statistics]:
    """For each request, the statistics collected before the change for the request at the same place with the
    same samples (``{}`` if none)."""
    return [early_stats[index] if index < len(early) and early[index].sampling_key() == request.sampling_key()
            else {} for index, request in enumerate(requests)]
