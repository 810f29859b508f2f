"""``DefaultQuantization``: POT's default INT8 recipe as a list of steps, each a group of registered algorithms.

The steps (as NNCF's ``create_ptq_pipeline``), each part getting ``sub_params(config, part_name)``:

0. ``SmoothQuant``, for ``model_type: 'transformer'`` only (as NNCF's TRANSFORMER; POT had no such step), unless
   ``smooth_quant_alpha`` is ``None`` or negative;
1. ``ActivationChannelAlignment``, skipped when it finds no layer pairs;
2. ``MinMaxQuantization`` then ``FastBiasCorrection`` (or ``BiasCorrection`` with ``use_fast_bias: False``, the
   default for ``model_type: 'transformer'``).

A step collects the statistics of all its parts in one pass over the model entering it (requests with the same
samples share the pass) and runs its parts in order, each with the results of its own requests. When SmoothQuant
is followed directly by the last step (alignment found nothing), one pass serves both: the last step's
statistics are measured on the model before smoothing, and those of the smoothed activations are computed from
per-channel statistics of the same pass (:mod:`~pot_torch.algorithms.quantization.smoothed_statistics`); only
statistics that cannot be derived (quantiles) are measured in a second pass. Run on its own, ``run(model)``
edits ``model`` in place.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization import smoothed_statistics
from pot_torch.algorithms.quantization.smooth_quant import SmoothQuant, smooth_quant_enabled
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics
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
            if isinstance(step[0], SmoothQuant) and _no_statistics(following[:-1], model):
                return _smooth_then_last_step(self.engine, step[0], requests[0], following[-1], model)
            model = _run_step(step, requests, collect_statistics(self.engine, model, _flat(requests)), model)
            index += 1
        return model


def _flat(requests: Sequence[Sequence[StatisticsRequest]]) -> List[StatisticsRequest]:
    return [request for part in requests for request in part]


def _skippable(step: Step, requests: Sequence[Sequence[StatisticsRequest]]) -> bool:
    """A step of model-changing parts that need no statistics (found nothing to change) is skipped."""
    return all(part.change_original_model for part in step) and not any(r.layout for r in _flat(requests))


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


def _smooth_then_last_step(engine: Any, smooth_quant: SmoothQuant, smooth_requests: List[StatisticsRequest],
                           last: Step, model: Any) -> Any:
    """SmoothQuant and the last step on one pass over the unsmoothed model (plus a pass for what cannot be
    derived)."""
    groups = [group for _, member_groups in smooth_quant.groups(model) for group in member_groups]
    channel_request = StatisticsRequest(
        smoothed_statistics.channel_range_layout(groups, bool(smooth_quant.config.inplace_statistics)),
        smooth_requests[0].subset_indices, smooth_requests[0].batch_size, tag="smoothed channel ranges")
    early = [part.statistics_requests(model) for part in last]
    collected = collect_statistics(engine, model, smooth_requests + [channel_request] + _flat(early))
    logger.info("Start algorithm: %s", smooth_quant.name)
    model = smooth_quant.run(model, collected[:len(smooth_requests)])
    channel_stats, early_stats = collected[len(smooth_requests)], collected[len(smooth_requests) + 1:]
    smoothed = {key: value for ov_model in {id(m["model"]): m["model"] for m in model.models}.values()
                for key, value in smoothed_statistics.smoothed_activations(ov_model, groups).items()}
    requests = [part.statistics_requests(model) for part in last]
    flat = _flat(requests)
    known: List[Statistics] = []
    for request, before in zip(flat, _matching(flat, _flat(early), early_stats)):
        derived = smoothed_statistics.derive(request.layout, smoothed, channel_stats)
        known.append({key: {**before.get(key, {}), **derived.get(key, {})} for key in request.layout
                      if key in before or key in derived})
    missing = [StatisticsRequest(smoothed_statistics.missing_layout(request.layout, have), request.subset_indices,
                                 request.batch_size, tag=request.tag) for request, have in zip(flat, known)]
    for have, extra in zip(known, collect_statistics(engine, model, missing)):
        for key, stats in extra.items():
            have.setdefault(key, {}).update(stats)
    return _run_step(last, requests, known, model)


def _matching(requests: Sequence[StatisticsRequest], early: Sequence[StatisticsRequest],
              early_stats: Sequence[Statistics]) -> List[Statistics]:
    """For each request, the statistics collected before smoothing for the request at the same place with the
    same samples (``{}`` if none)."""
    return [early_stats[index] if index < len(early) and early[index].sampling_key() == request.sampling_key()
            else {} for index, request in enumerate(requests)]
