"""``DefaultQuantization``: POT's default INT8 recipe, composed of the algorithms registered by name.

0. for ``model_type: 'transformer'`` only (as NNCF's TRANSFORMER; POT had no such step): ``SmoothQuant``
   with its own statistics pass on the floating-point model, unless ``smooth_quant_alpha`` is ``None`` or
   negative;
1. ``ActivationChannelAlignment`` with its own statistics pass, skipped when it finds no layer pairs;
2. one statistics pass serving both ``MinMaxQuantization`` and ``FastBiasCorrection`` (or ``BiasCorrection``
   with ``use_fast_bias: False``, the default for ``model_type: 'transformer'``), collected on the aligned
   model;
3. ``MinMaxQuantization.run`` then the bias correction's ``run``.

Each part gets ``sub_params(config, part_name)``. Run on its own, ``run(model)`` edits ``model`` in place.
"""
from __future__ import annotations

from typing import Any, List, Optional

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import resolve_params, sub_params
from pot_torch.algorithms.quantization.smooth_quant import smooth_quant_enabled
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


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

    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """None: ``run`` collects the statistics of its parts itself."""
        return []

    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Quantize ``model`` (edited in place) and return it; ``statistics`` is not used."""
        if self.config.model_type == "transformer" and smooth_quant_enabled(self.config.smooth_quant_alpha):
            model = self._run_with_own_statistics(self._part("SmoothQuant"), model)
        model = self._run_with_own_statistics(self._part("ActivationChannelAlignment"), model)
        minmax = self._part("MinMaxQuantization")
        bias = self._part("FastBiasCorrection" if self.config.use_fast_bias else "BiasCorrection")
        minmax_requests = minmax.statistics_requests(model)
        bias_requests = bias.statistics_requests(model)
        collected = collect_statistics(self.engine, model, minmax_requests + bias_requests)
        logger.info("Start algorithm: %s", minmax.name)
        model = minmax.run(model, collected[:len(minmax_requests)])
        logger.info("Start algorithm: %s", bias.name)
        return bias.run(model, collected[len(minmax_requests):])

    def _run_with_own_statistics(self, part: Algorithm, model: Any) -> Any:
        """Run a model-changing ``part`` on statistics collected for it now; skip it if it needs none."""
        requests = part.statistics_requests(model)
        if not any(request.layout for request in requests):
            return model
        logger.info("Start algorithm: %s", part.name)
        return part.run(model, collect_statistics(self.engine, model, requests))
