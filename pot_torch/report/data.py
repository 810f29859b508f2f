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
    :ivar impact: metric gained (in the metric's own units, positive = better) over the whole validation set when
        only this group is returned to floating point, against the INT8 model: a stratified estimate from the
        ranking samples (``impact.py``).
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
    """

    reverted: List[int]
    metric: float
    drop: float
    latency_ms: Optional[float] = None
    accepted: bool = True


@dataclass
class Report:
    """A quantization report (:func:`pot_torch.report.build_report`); ``to_json`` gives the same data as the
    HTML page."""

    model_name: str
    metric_name: str
    higher_better: bool
    fp_metric: float
    int8_metric: float
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
    fp_latency_ms: Optional[float] = None
    int8_latency_ms: Optional[float] = None
    recommended_latency_ms: Optional[float] = None
    #: samples that went through the metric, by what for (``fp``, ``int8``, ``ranking``, ``steps``)
    evaluations: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def int8_drop(self) -> float:
        """How much worse the INT8 model is than the FP model (positive = worse)."""
        return self.fp_metric - self.int8_metric if self.higher_better else self.int8_metric - self.fp_metric

    @property
    def recommended_drop(self) -> Optional[float]:
        """The drop of the recommended model (positive = worse)."""
        if self.recommended_metric is None:
            return None
        value = self.recommended_metric
        return self.fp_metric - value if self.higher_better else value - self.fp_metric

    @property
    def ignored(self) -> Dict[str, Any]:
        """The recommendation as POT's ``ignored`` parameter: ``{'scope': [layer names]}``."""
        return {"scope": [layer for index in self.recommended for layer in self.groups[index].layers]}

    def to_dict(self) -> Dict[str, Any]:
        """Everything in the report as plain data (what ``to_json`` writes)."""
        data = dataclasses.asdict(self)
        data.update(int8_drop=self.int8_drop, recommended_drop=self.recommended_drop, ignored=self.ignored)
        return data

    def to_json(self) -> str:
        """The report as JSON text (sorted keys, 2-space indent)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
