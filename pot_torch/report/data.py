"""What a quantization report holds: one row per quantizer group, the revert curve and the recommendation."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class GroupRow:
    """One quantizer group of the INT8 model (FakeQuantize ops reverted together, with the layers they feed).

    :ivar index: position of the group in topological order (0 = nearest the inputs).
    :ivar layers: op names of the group's layers; ``types``: their op types.
    :ivar fake_quantize: names of the group's FakeQuantize ops.
    :ivar sqnr_db: signal-to-quantization-noise ratio of the group's worst layer output in the INT8 model
        against the FP model, ``10 log10(mean y^2 / mean (y - q)^2)`` over the statistics samples, in dB.
    :ivar closeness: the ranking statistic: how much closer (positive) the model's outputs get to the FP model's
        when only this group is returned to floating point, against the INT8 model: the change in per-item cosine
        similarity of the outputs, a stratified estimate for the whole validation set from the ranking samples
        (``impact.py``).
    :ivar impact: metric gained (in the metric's own units, positive = better) over the whole validation set when
        only this group is returned to floating point, against the INT8 model: the same kind of estimate.
    :ivar hard_gain: the same gain on the sampled items the INT8 model gets most wrong (AccuracyAwareQuantization's
        ranking measure; the recommendation follows it).
    :ivar int8_us: time of the group's runtime nodes in the INT8 model (PERF_COUNT, median over runs, µs).
    :ivar fp_us: the same nodes' time in the FP model at the default precision.
    :ivar latency_share: ``int8_us`` over the INT8 model's total node time.
    :ivar saved_us: ``fp_us - int8_us``: what quantizing the group saves (negative: it costs time).
    :ivar outlier_ratio: of the group's quantized activations, the largest per-channel absolute maximum over
        the median one (1 = even channels; large = one channel stretches the 8-bit range for all others).
    :ivar channel_spread: largest over smallest non-zero per-channel absolute maximum.
    :ivar outlier_channel: the channel with the largest absolute maximum (of the worst activation).
    """

    index: int
    layers: List[str]
    types: List[str]
    fake_quantize: List[str]
    sqnr_db: Optional[float] = None
    closeness: Optional[float] = None
    impact: Optional[float] = None
    hard_gain: Optional[float] = None
    int8_us: Optional[float] = None
    fp_us: Optional[float] = None
    latency_share: Optional[float] = None
    saved_us: Optional[float] = None
    outlier_ratio: Optional[float] = None
    channel_spread: Optional[float] = None
    outlier_channel: Optional[int] = None


@dataclass
class CurvePoint:
    """A step of the revert walk: ``reverted`` groups (indices) left in FP, the metric and latency then.

    :ivar accepted: whether the step was kept (a step that raised the drop is undone, as in
        AccuracyAwareQuantization).
    :ivar samples: the items the metric was measured on: all validation items, or the ranking sample (``metric``
        is then a whole-set estimate with standard error ``error``).
    """

    reverted: List[int]
    metric: float
    drop: float
    latency_ms: Optional[float] = None
    accepted: bool = True
    samples: int = 0
    error: Optional[float] = None


@dataclass
class Report:
    """A quantization report (:func:`pot_torch.report.build_report`); ``to_json`` gives the same data as the
    HTML page."""

    model_name: str
    metric_name: str
    higher_better: bool
    fp_metric: float
    int8_metric: float
    #: the value every drop is measured from (the page's, the JSON's, the walk's and ``maximal_drop``'s):
    #: the ``baseline_value`` of the ``metrics`` parameter when given (as AccuracyAwareQuantization), else
    #: ``fp_metric``
    baseline_metric: float
    maximal_drop: float
    samples: int
    ranking_samples: int
    statistics_samples: int
    precision: str
    groups: List[GroupRow] = field(default_factory=list)
    curve: List[CurvePoint] = field(default_factory=list)
    #: group indices of the recommendation (left in FP), in revert order
    recommended: List[int] = field(default_factory=list)
    recommended_metric: Optional[float] = None
    #: where ``recommended_metric`` comes from: ``"measured"`` (on all validation items),
    #: ``"AccuracyAwareQuantization"`` (the run that handed over its start measured that set on all items) or
    #: ``"estimate"`` (from the ranking sample, standard error ``recommended_error``: no check on all items fitted
    #: in the budget)
    recommended_basis: str = "measured"
    recommended_error: Optional[float] = None
    fp_latency_ms: Optional[float] = None
    int8_latency_ms: Optional[float] = None
    recommended_latency_ms: Optional[float] = None
    #: samples that went through the metric, by what for: ``fp`` and ``int8`` on all items (0 when the caller had
    #: them), ``outputs`` (FP and INT8 on the ranking sample), ``ranking`` (each group), ``steps`` (the walk),
    #: ``check`` (the recommendation on all items)
    evaluations: Dict[str, int] = field(default_factory=dict)
    #: the report's budget: what AccuracyAwareQuantization's ranking step puts through the metric with the same data
    #: (groups x its ranking samples); the report's own evaluations never exceed it (``budget.py``)
    aaq_ranking_evaluations: int = 0
    #: whether the budget plan reserved one check of the recommendation on all items
    check_planned: bool = False
    notes: List[str] = field(default_factory=list)

    def drop(self, value: float) -> float:
        """How much worse ``value`` is than ``baseline_metric`` (positive = worse)."""
        return self.baseline_metric - value if self.higher_better else value - self.baseline_metric

    @property
    def int8_drop(self) -> float:
        """How much worse the INT8 model is than the baseline (positive = worse)."""
        return self.drop(self.int8_metric)

    @property
    def recommended_drop(self) -> Optional[float]:
        """The drop of the recommended model (positive = worse)."""
        return None if self.recommended_metric is None else self.drop(self.recommended_metric)

    @property
    def allowed_metric(self) -> float:
        """The worst metric within ``maximal_drop`` of the baseline."""
        return self.baseline_metric + (-self.maximal_drop if self.higher_better else self.maximal_drop)

    @property
    def ignored(self) -> Dict[str, Any]:
        """The recommendation as POT's ``ignored`` parameter: ``{'scope': [layer names]}``."""
        return {"scope": [layer for index in self.recommended for layer in self.groups[index].layers]}

    @property
    def estimate_error_text(self) -> str:
        """The standard error of an estimated recommendation, in words when it is 0 (no sampled item changed, so
        the sample cannot see a change rarer than one item in it)."""
        if not self.recommended_error:
            return (f"standard error 0: none of the {self.ranking_samples} ranking samples changed against the model "
                    "it is estimated from, so a change on fewer items than that is not seen")
        return f"standard error {self.recommended_error:.2g}"

    @property
    def own_evaluations(self) -> int:
        """Samples the report put through the metric besides the FP and INT8 evaluations on all items."""
        return sum(count for what, count in self.evaluations.items() if what not in ("fp", "int8"))

    def to_dict(self) -> Dict[str, Any]:
        """Everything in the report as plain data (what ``to_json`` writes)."""
        data = dataclasses.asdict(self)
        data.update(int8_drop=self.int8_drop, recommended_drop=self.recommended_drop, ignored=self.ignored,
                    own_evaluations=self.own_evaluations)
        return data

    def to_json(self) -> str:
        """The report as JSON text (sorted keys, 2-space indent)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
