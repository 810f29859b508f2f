"""``DefaultQuantization``: POT's default INT8 recipe, composed of the algorithms registered by name.

1. ``ActivationChannelAlignment`` with its own statistics pass, skipped when it finds no layer pairs;
2. one statistics pass serving both ``MinMaxQuantization`` and ``FastBiasCorrection`` (or ``BiasCorrection``
   with ``use_fast_bias: False``), collected on the aligned model;
3. ``MinMaxQuantization.run`` then the bias correction's ``run``.

Each part gets ``sub_params(config, part_name)``. Run on its own, ``run(model)`` edits ``model`` in place.
"""
from __future__ import annotations

from typing import Any, List, Optional

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import sub_params
from pot_torch.algorithms.quantization.minmax import effective_preset
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


@COMPRESSION_ALGORITHMS.register("DefaultQuantization")
class DefaultQuantization(Algorithm):
    """ActivationChannelAlignment, then MinMaxQuantization and (fast) bias correction, as POT ran them.

    Parameters: those of its parts (see ``pot_torch.algorithms.params``) plus ``use_fast_bias`` (default True).
    Its statistics are collected inside ``run`` (two passes: the alignment changes the model), so
    ``statistics_requests`` is empty.
    """

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(effective_preset("DefaultQuantization", dict(config or {})), engine)

    def _part(self, name: str) -> Algorithm:
        return COMPRESSION_ALGORITHMS.get(name)(sub_params(self.config, name), self.engine)

    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """None: ``run`` collects the statistics of its parts itself."""
        return []

    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Quantize ``model`` (edited in place) and return it; ``statistics`` is not used."""
        alignment = self._part("ActivationChannelAlignment")
        requests = alignment.statistics_requests(model)
        if any(request.layout for request in requests):
            logger.info("Start algorithm: %s", alignment.name)
            model = alignment.run(model, collect_statistics(self.engine, model, requests))
        minmax = self._part("MinMaxQuantization")
        bias = self._part("FastBiasCorrection" if self.config.use_fast_bias else "BiasCorrection")
        minmax_requests = minmax.statistics_requests(model)
        bias_requests = bias.statistics_requests(model)
        collected = collect_statistics(self.engine, model, minmax_requests + bias_requests)
        logger.info("Start algorithm: %s", minmax.name)
        model = minmax.run(model, collected[:len(minmax_requests)])
        logger.info("Start algorithm: %s", bias.name)
        return bias.run(model, collected[len(minmax_requests):])
