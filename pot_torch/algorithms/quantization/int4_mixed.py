"""``INT4MixedQuantization``: 4-bit convolutions where the metric allows, 8 bits elsewhere (POT's algorithm).

The OpenVINO 2026 CPU plugin runs FakeQuantize with 16 levels (and u4/i4 weight decompression) correctly
(docs/quantization.md), so POT's algorithm is kept. Its steps:

1. quantize with DefaultQuantization, but the weights of every (non-grouped) Convolution and the activations
   read only by such convolutions with 4 bits and quantile range estimators (outlier probability 1e-3);
2. if the metric drop from the floating-point model is within ``maximal_drop``, stop;
3. rank the 4-bit convolutions by the metric the model gets with that one convolution back at 8 bits
   (measured on the ``ranking_subset_size`` samples the 4-bit model got most wrong);
4. return convolutions to 8 bits in that order, re-quantizing and evaluating each time, until the drop is met,
   none is left at 4 bits, or ``max_iter_num`` steps were taken (then it warns and returns the last model).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, List, Optional, Sequence

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import (ACCURACY_AWARE_PARAMS, ALGORITHM_PARAMS, declare_params, resolve_params,
                                         sub_params)
from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, choose_metric, evaluate, hardest_samples
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.algorithms.quantization.plan import PlannedQuantizer
from pot_torch.algorithms.quantization.tunable_quantization import Choice, TunableQuantization
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.collector import Statistics
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: POT's low-bit quantile estimator.
LOW_BIT_OUTLIER_PROB = 1e-3
LOW_BITS = 4

declare_params("INT4MixedQuantization", {
    **ALGORITHM_PARAMS["DefaultQuantization"],
    **{key: ACCURACY_AWARE_PARAMS[key] for key in ("maximal_drop", "drop_type", "max_iter_num",
                                                   "ranking_subset_size", "metrics")},
})


class Int4DropNotMetWarning(UserWarning):
    """INT4MixedQuantization returned every convolution to 8 bits (or hit max_iter_num) above ``maximal_drop``."""


def low_bit_choice(planned: PlannedQuantizer) -> Choice:
    """4 bits with POT's quantile estimator (``abs_quantile`` for the upper end of a symmetric quantizer)."""
    upper = "abs_quantile" if planned.quantizer["mode"] == "symmetric" else "quantile"
    return {"bits": LOW_BITS, "range_estimator": {
        "min": {"type": "quantile", "outlier_prob": LOW_BIT_OUTLIER_PROB},
        "max": {"type": upper, "outlier_prob": LOW_BIT_OUTLIER_PROB}}}


class _MixedDefaultQuantization(DefaultQuantization):
    """DefaultQuantization whose MinMaxQuantization step is a TunableQuantization with per-site choices."""

    def __init__(self, config: Any, engine: Any, choices: Dict[str, Choice]) -> None:
        super().__init__(config, engine)
        self._choices = choices

    def _part(self, name: str) -> Algorithm:
        if name != "MinMaxQuantization":
            return super()._part(name)
        tunable = TunableQuantization(sub_params(self.config, "TunableQuantization"), self.engine)
        tunable.params = dict(self._choices)
        return tunable


@COMPRESSION_ALGORITHMS.register("INT4MixedQuantization")
class INT4MixedQuantization(Algorithm):
    """DefaultQuantization with 4-bit convolutions, returned to 8 bits one by one until the metric drop is met.

    Parameters: DefaultQuantization's, and ``maximal_drop`` (0.01), ``drop_type`` ('absolute'), ``max_iter_num``,
    ``ranking_subset_size`` (300), ``metrics`` as in AccuracyAwareQuantization. After ``run``:
    ``low_bit_layers`` (the convolutions left at 4 bits), ``int8_layers`` (those returned to 8 bits, in order),
    ``final_drop``.
    """

    def __init__(self, config: Any, engine: Any) -> None:
        super().__init__(resolve_params(self.name, config), engine)
        self.low_bit_layers: List[str] = []
        self.int8_layers: List[str] = []
        self.final_drop: Optional[float] = None

    # ------------------------------------------------------------------------------------------ the layers
    def _layer_choices(self, model: CompressedModel) -> Dict[str, Dict[str, Choice]]:
        """``{convolution: {FakeQuantize site: 4-bit choice}}``: its weights and the activations only
        convolutions read (an activation site goes to 4 bits while every convolution reading it is at 4 bits)."""
        ov_model = model.get_model()
        types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ordered_ops()}
        plan = TunableQuantization(sub_params(self.config, "TunableQuantization"), self.engine).plan(model)[0]
        layers: Dict[str, Dict[str, Choice]] = {}
        for planned in plan.weights:
            if types.get(planned.site.consumer) == "Convolution":
                layers[planned.site.consumer] = {planned.site.name: low_bit_choice(planned)}
        for planned in plan.activations:
            readers = {name for name, _ in planned.site.consumers}
            if readers and readers <= set(layers):
                for reader in readers:
                    layers[reader][planned.site.name] = low_bit_choice(planned)
        return layers

    def _quantize(self, model: CompressedModel, layers: Dict[str, Dict[str, Choice]],
                  low: Sequence[str]) -> CompressedModel:
        low_set = set(low)
        choices: Dict[str, Choice] = {}
        for layer in low:
            for site, choice in layers[layer].items():
                choices[site] = choice
        for layer, sites in layers.items():  # a site shared with a layer back at 8 bits stays at 8 bits
            if layer not in low_set:
                for site in sites:
                    choices.pop(site, None)
        params = sub_params(self.config, "DefaultQuantization")
        return _MixedDefaultQuantization(params, self.engine, choices).run(copy.deepcopy(model))

    # ------------------------------------------------------------------------------------------------- run
    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Quantize ``model`` (left unchanged) with as many 4-bit convolutions as ``maximal_drop`` allows."""
        if model.is_cascade:
            raise ValueError(f"{self.name} quantizes a single model; got a cascade of {model.member_names}")
        if self.engine is None or self.engine.metric is None:
            raise ValueError(f"{self.name} keeps the metric drop within maximal_drop: create the engine with "
                             "metric=YourMetric() and a data loader whose items carry annotations")
        spec = choose_metric(self.engine, self.config.metrics)
        indices = range(len(self.engine.data_loader))
        fp_value, fp_per_sample = evaluate(self.engine, model, spec, indices, per_sample=True)
        reference = spec.baseline_value if spec.baseline_value is not None else fp_value
        allowed = self.config.maximal_drop * (abs(reference) if self.config.drop_type == "relative" else 1.0)
        layers = self._layer_choices(model)
        low = list(layers)
        logger.info("%s: %d convolution(s) at 4 bits: %s", self.name, len(low), low)
        quantized = self._quantize(model, layers, low)
        value, per_sample = evaluate(self.engine, quantized, spec, indices, per_sample=True)
        drop = spec.drop(reference, value)
        logger.info("%s: all at 4 bits: %s = %.6g, drop %.6g (allowed %.6g)", self.name, spec.name, value, drop,
                    allowed)
        self.int8_layers = []
        if drop > allowed and low:
            subset = hardest_samples(spec, fp_per_sample, per_sample, indices,
                                     self.config.ranking_subset_size or min(len(indices), 300))
            ranking = self._rank(model, layers, low, spec, subset)
            limit = self.config.max_iter_num or len(ranking)
            for layer in ranking[:limit]:
                low.remove(layer)
                self.int8_layers.append(layer)
                quantized = self._quantize(model, layers, low)
                value, _ = evaluate(self.engine, quantized, spec, indices)
                drop = spec.drop(reference, value)
                logger.info("%s: %s back at 8 bits: %s = %.6g, drop %.6g", self.name, layer, spec.name, value, drop)
                if drop <= allowed:
                    break
        if drop > allowed:
            message = (f"{self.name} could not achieve the required accuracy drop: drop {drop:.6g} > allowed "
                       f"{allowed:.6g} with {len(low)} convolution(s) left at 4 bits")
            logger.warning(message)
            warnings.warn(message, Int4DropNotMetWarning)
        self.low_bit_layers, self.final_drop = low, drop
        return quantized

    def _rank(self, model: CompressedModel, layers: Dict[str, Dict[str, Choice]], low: List[str],
              spec: MetricSpec, subset: Sequence[int]) -> List[str]:
        """``low`` ordered by the metric the model gets with each one alone back at 8 bits, best first."""
        scores = []
        for position, layer in enumerate(low):
            value, _ = evaluate(self.engine, self._quantize(model, layers, [other for other in low if other != layer]),
                                spec, subset)
            scores.append((-value if spec.higher_better else value, position))
        return [low[position] for _, position in sorted(scores)]
