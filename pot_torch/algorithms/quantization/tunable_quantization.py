"""``TunableQuantization``: MinMaxQuantization whose quantizer can be chosen per FakeQuantize (POT's tuning hook).

POT's tuners asked ``get_parameter_meta(model)`` for the choices of every FakeQuantize (the quantizers the
hardware description allows, each with the preset's range estimator and quantile estimators for each of
``outlier_prob_choices``), put their pick for each FakeQuantize in the algorithm's ``params`` dict, and ran
it. Without ``params`` it quantizes exactly as MinMaxQuantization. An entry of ``params`` may also be partial
(``{'bits': 4}``, ``{'range_estimator': {'max': {...}}}``): it is laid over the quantizer MinMaxQuantization
would choose, and a changed ``bits`` recomputes the levels (that is how INT4MixedQuantization sets 4 bits).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from pot_torch.algorithms.params import ALGORITHM_PARAMS, Param, declare_params, resolve_params, sub_params
from pot_torch.algorithms.quantization.minmax import MinMaxQuantization
from pot_torch.algorithms.quantization.plan import MemberPlan, PlannedQuantizer
from pot_torch.algorithms.quantization.quantizer_ranges import levels_of
from pot_torch.algorithms.quantization.range_estimator import estimator_config
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS


def _probabilities(value: Any) -> Optional[str]:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(p, (int, float, np.floating)) and not isinstance(p, bool) and 0.0 <= p < 0.5 for p in value):
        return None
    return "expected a list of outlier probabilities in [0, 0.5), e.g. [1e-3, 1e-4]"


declare_params("TunableQuantization", {**ALGORITHM_PARAMS["MinMaxQuantization"],
                                       "outlier_prob_choices": Param(None, check=_probabilities)})

#: What one FakeQuantize may be given: quantizer settings and/or a ``range_estimator``.
Choice = Mapping[str, Any]


def apply_choice(planned: PlannedQuantizer, choice: Choice, is_weights: bool) -> PlannedQuantizer:
    """``planned`` with ``choice`` laid over its quantizer and range estimator."""
    settings = {key: value for key, value in choice.items() if key != "range_estimator"}
    quantizer = dict(planned.quantizer)
    if "bits" in settings and settings["bits"] != quantizer.get("bits", 8):
        quantizer.pop("level_low", None)
        quantizer.pop("level_high", None)
    quantizer.update(settings)
    estimator = copy.deepcopy(planned.estimator)
    for side, side_config in (choice.get("range_estimator") or {}).items():
        estimator.setdefault(side, {"granularity": quantizer["granularity"]}).update(side_config)
    return dataclasses.replace(planned, quantizer=quantizer, levels=levels_of(quantizer, is_weights),
                               estimator=estimator)


@COMPRESSION_ALGORITHMS.register("TunableQuantization")
class TunableQuantization(MinMaxQuantization):
    """MinMaxQuantization with a per-FakeQuantize choice of quantizer and range estimator.

    Parameters: MinMaxQuantization's and ``outlier_prob_choices`` (the quantile estimators' outlier
    probabilities offered by ``get_parameter_meta``; default: none, only the preset's estimator).
    ``params``: ``{FakeQuantize name: choice}``, set before ``statistics_requests``/``run``.
    """

    def __init__(self, config: Any, engine: Any) -> None:
        resolved = resolve_params("TunableQuantization", config)
        super().__init__(sub_params(resolved, "MinMaxQuantization"), engine)
        self._config = resolved
        #: the choice for each FakeQuantize (by the name it gets), as POT's tuners set it
        self.params: Dict[str, Choice] = {}

    def plan(self, model: Any) -> List[MemberPlan]:
        """MinMaxQuantization's plan with ``params`` applied to the FakeQuantize sites they name.

        :raises ValueError: when ``params`` names a FakeQuantize the plan does not have.
        """
        plans = super().plan(model)
        names = [planned.site.name for plan in plans for planned in plan.activations + plan.weights]
        unknown = sorted(set(self.params) - set(names))
        if unknown:
            close = sorted({m for name in unknown for m in difflib.get_close_matches(name, names, n=2)})
            raise ValueError(f"{self.name} params name FakeQuantize op(s) {unknown} that the quantization plan does "
                             f"not have{' (close: ' + ', '.join(close) + ')' if close else ''}; the planned ones are "
                             "listed by get_parameter_meta(model)")
        return [dataclasses.replace(
            plan,
            activations=tuple(self._chosen(p, False) for p in plan.activations),
            weights=tuple(self._chosen(p, True) for p in plan.weights)) for plan in plans]

    def _chosen(self, planned: PlannedQuantizer, is_weights: bool) -> PlannedQuantizer:
        choice = self.params.get(planned.site.name)
        return planned if choice is None else apply_choice(planned, choice, is_weights)

    def get_parameter_meta(self, model: Any) -> List[Tuple[str, str, List[Dict[str, Any]]]]:
        """``[(FakeQuantize name, 'choice', [options])]`` for every planned FakeQuantize (POT's format).

        The options: each quantizer the hardware description allows for the site, with the preset's range
        estimator and, for each of ``outlier_prob_choices``, the quantile estimator with that probability.
        """
        saved, self.params = self.params, {}
        try:
            plans = self.plan(model)
        finally:
            self.params = saved
        meta = []
        for plan in plans:
            for kind, planned_list in (("activations", plan.activations), ("weights", plan.weights)):
                for planned in planned_list:
                    options = [{**option, "range_estimator": estimator}
                               for option in planned.site.options
                               for estimator in self._estimators(kind, option)]
                    meta.append((planned.site.name, "choice", options))
        return meta

    def _estimators(self, kind: str, option: Mapping[str, Any]) -> List[Dict[str, Any]]:
        granularity, mode = option["granularity"], option["mode"]
        estimators = [estimator_config(self.config, kind, granularity, mode)]
        for probability in self.config.outlier_prob_choices or ():
            quantile = {**(self.config.get(kind) or {}), "range_estimator": {"preset": "quantile"}}
            estimator = estimator_config({kind: quantile}, kind, granularity, mode)
            for side_config in estimator.values():
                if side_config["type"] in ("quantile", "abs_quantile"):
                    side_config["outlier_prob"] = float(probability)
            estimators.append(estimator)
        return estimators
