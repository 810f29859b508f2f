"""``BaseWeightSparsity`` and ``WeightSparsity``: MagnitudeSparsity followed by a bias correction of every layer.

As in POT, the bias correction measures the floating-point statistics on the dense model and then corrects the
bias of every sparsified layer that has one, however large the shift, so its output mean on the dense model's
input means is the dense layer's again. With ``use_fast_bias`` (default) that is FastBiasCorrection's probe
with the removed weights (:mod:`~pot_torch.algorithms.sparsity.bias_shift`); with ``use_fast_bias: False``
BiasCorrection (``apply_for_all_nodes`` True, ``threshold`` infinite). ``WeightSparsity`` is what POT's configs
named; POT ran its torch layer-wise fine-tuning instead with ``use_layerwise_tuning: True``, which pot_torch
does not have.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import Param, declare_params, resolve_params, sub_params
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.algorithms.sparsity.bias_shift import correct_sparse_biases
from pot_torch.algorithms.sparsity.magnitude_sparsity import MAGNITUDE_SPARSITY_PARAMS, MagnitudeSparsity
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics, StatisticsRequest


def _no_layerwise_tuning(value: Any) -> Optional[str]:
    if value is False:
        return None
    return ("POT's layer-wise fine-tuning of the sparse model (a torch training loop) is not part of pot_torch; "
            "leave 'use_layerwise_tuning' False (sparsity then ends with a bias correction)")


BASE_WEIGHT_SPARSITY_PARAMS: Dict[str, Param] = {
    **MAGNITUDE_SPARSITY_PARAMS,
    "use_fast_bias": Param(True, choices=(True, False)),
}
declare_params("BaseWeightSparsity", BASE_WEIGHT_SPARSITY_PARAMS)
declare_params("WeightSparsity", {**BASE_WEIGHT_SPARSITY_PARAMS,
                                  "use_layerwise_tuning": Param(False, check=_no_layerwise_tuning)})


@COMPRESSION_ALGORITHMS.register("BaseWeightSparsity")
class BaseWeightSparsity(Algorithm):
    """MagnitudeSparsity, then the bias of every layer corrected against the dense model's statistics.

    Parameters: MagnitudeSparsity's, ``use_fast_bias`` (True: FastBiasCorrection, False: BiasCorrection) and the
    statistics ones (``stat_subset_size``, ``stat_batch_size``, ``shuffle_data``, ``seed``,
    ``inplace_statistics``). ``statistics_requests`` takes the dense model.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)
        self.sparsity = MagnitudeSparsity(sub_params(self.config, "MagnitudeSparsity"), engine)
        bias_name = "FastBiasCorrection" if self.config.use_fast_bias else "BiasCorrection"
        bias_params = sub_params(self.config, bias_name)
        bias_params.update(threshold=math.inf, apply_for_all_nodes=True)
        self.bias_correction = COMPRESSION_ALGORITHMS.get(bias_name)(bias_params, engine)

    @property
    def sparsity_levels_per_layer(self) -> Dict[str, float]:
        """Fraction of zero weights of each sparsified layer after the last ``run``."""
        return self.sparsity.sparsity_levels_per_layer

    def statistics_requests(self, model: CompressedModel) -> List[StatisticsRequest]:
        """The bias correction's floating-point statistics, measured on the dense ``model``."""
        return self.bias_correction.statistics_requests(model)

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Sparsify ``model`` in place, correct its biases, and return it."""
        if statistics is None:
            statistics = self.collect_own_statistics(model)
        model = self.sparsity.run(model)
        if not self.config.use_fast_bias:
            return self.bias_correction.run(model, statistics)
        stats = statistics[0] if statistics else {}
        for member in model.models:
            name = member["name"] if model.is_cascade else None
            removed = {layer: weights for (owner, layer), weights in self.sparsity.removed_weights.items()
                       if owner == name}
            correct_sparse_biases(member["model"], removed, stats)
        return model


@COMPRESSION_ALGORITHMS.register("WeightSparsity")
class WeightSparsity(BaseWeightSparsity):
    """POT's sparsity entry point: BaseWeightSparsity (``use_layerwise_tuning`` must stay False)."""
