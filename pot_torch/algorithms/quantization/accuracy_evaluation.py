"""Metric evaluation for accuracy control: per-sample values, accuracy drop, the metric to optimise."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from pot_torch.api.engine import Engine
from pot_torch.engines.data_items import annotations_valid, parse_batch
from pot_torch.samplers.batch_sampler import BatchSampler


@dataclass(frozen=True)
class MetricSpec:
    """The metric accuracy control optimises: its ``name``, direction and optional baseline value."""

    name: str
    higher_better: bool
    baseline_value: Optional[float] = None

    def drop(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference`` (positive = worse)."""
        return reference - value if self.higher_better else value - reference


def choose_metric(engine: Engine, metrics_param: Optional[Sequence[Mapping[str, Any]]]) -> MetricSpec:
    """The metric to optimise: the first of ``metrics_param`` (POT's ``metrics``) or the engine's first metric.

    :raises ValueError: when the engine has no metric, or ``metrics_param`` names a metric it does not report.
    """
    if engine.metric is None:
        raise ValueError(
            "AccuracyAwareQuantization needs a metric to keep the accuracy drop within maximal_drop: create the "
            "engine with metric=YourMetric() (a pot_torch.Metric subclass) and a data loader whose items carry "
            "annotations"
        )
    attributes = engine.get_metric_attributes()
    if metrics_param:
        wanted = metrics_param[0]
        name = str(wanted["name"])
        if attributes and name not in attributes:
            raise ValueError(f"'metrics' names '{name}', but the engine's metric reports {sorted(attributes)}")
        baseline = wanted.get("baseline_value")
    else:
        name, baseline = (next(iter(attributes)) if attributes else ""), None
    direction = attributes.get(name, {}).get("direction", "higher-better")
    if direction not in ("higher-better", "higher-worse"):
        raise ValueError(f"metric '{name}' has direction {direction!r}; expected 'higher-better' or 'higher-worse'")
    return MetricSpec(name, direction == "higher-better", None if baseline is None else float(baseline))


def check_annotations(engine: Engine) -> None:
    """Fail clearly when the data loader's first item carries no annotation (the metric cannot be computed)."""
    loader = engine.data_loader
    if loader is None or len(loader) == 0:
        raise ValueError("AccuracyAwareQuantization needs an engine with a non-empty data loader")
    annotations, _, _ = parse_batch([loader[0]])
    if not annotations_valid(annotations):
        raise ValueError(
            "AccuracyAwareQuantization needs annotations to compute the metric, but the data loader returned "
            "item 0 without one: return (data, annotation) items with a real annotation (e.g. the class label)"
        )


def evaluate(engine: Engine, model: Any, spec: MetricSpec, indices: Sequence[int],
             per_sample: bool = False) -> Tuple[float, Optional[np.ndarray]]:
    """Metric of ``model`` over data set ``indices``; with ``per_sample`` also the values of each sample.

    :returns: ``(value, per-sample values in the order of indices or None)``.
    """
    engine.set_model(model)
    sampler = BatchSampler(engine.data_loader, subset_indices=list(indices))
    metrics, _ = engine.predict(sampler=sampler, metric_per_sample=per_sample)
    if metrics is None:
        raise ValueError("the engine returned no metric values: check that the data loader gives annotations")
    source = f"{type(engine.metric).__name__}.avg_value"
    if not per_sample:
        return _pick(metrics, spec.name, len(indices), source), None
    records, overall = metrics
    return _pick(overall, spec.name, len(indices), source), values_by_sample(records, spec, len(indices))


def values_by_sample(records: Sequence[Mapping[str, Any]], spec: MetricSpec, count: int) -> np.ndarray:
    """The values of metric ``spec.name`` per sample, in sample order, from ``engine.predict``'s per-sample
    ``records`` (``metric_per_sample=True``) of ``count`` samples.

    :raises ValueError: not one value per sample.
    """
    values = [r["result"] for r in sorted(records, key=lambda r: r["sample_id"]) if r["metric_name"] == spec.name]
    if len(values) != count:
        raise ValueError(f"metric '{spec.name}' gave {len(values)} per-sample values for {count} samples: "
                         "its 'value' property must return one value per sample of the last update")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN sample stays NaN and ranks last
        return np.asarray([np.nanmean(v) for v in values], dtype=np.float64)


def evaluate_each(engine: Engine, models: Iterable[Any], spec: MetricSpec, indices: Sequence[int]) -> Iterator[float]:
    """Metric of each of ``models`` over data set ``indices``, in order: an engine with ``predict_models``
    (``RayEngine``) evaluates several models at once, any other engine one after another."""
    predict_models = getattr(engine, "predict_models", None)
    if predict_models is None:
        for model in models:
            yield evaluate(engine, model, spec, indices)[0]
        return
    source = f"{type(engine.metric).__name__}.avg_value"
    sampler = BatchSampler(engine.data_loader, subset_indices=list(indices))
    for metrics, _ in predict_models(models, sampler):
        yield _pick(metrics, spec.name, len(indices), source)


def _pick(metrics: Dict[str, Any], name: str, samples: int, source: str) -> float:
    """The value of metric ``name`` in ``metrics`` (the one value when there is only one), a finite number.

    :param source: what returned ``metrics`` (``'<MetricClass>.avg_value'``), for the messages.
    """
    if name in metrics:
        raw = metrics[name]
    elif len(metrics) == 1:
        name, raw = next(iter(metrics.items()))
    else:
        raise ValueError(f"metric '{name}' missing from the engine's results {sorted(metrics)}")
    try:
        value = float(raw)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metric '{name}' is {raw!r} over {samples} samples; accuracy control needs one number: "
                        f"{source} must return {{{name!r}: value}}") from error
    if not np.isfinite(value):
        raise ValueError(f"metric '{name}' is {value} over {samples} samples (NaN or infinite): accuracy control "
                         "needs a finite metric; check the metric's update and avg_value for divisions by zero or "
                         "NaN model outputs")
    return value


def hardest_samples(spec: MetricSpec, reference: np.ndarray, quantized: np.ndarray, indices: Sequence[int],
                    count: int) -> List[int]:
    """At most ``count`` data set indices where the quantized model lost the most against the reference.

    Only samples the quantized model is worse on are taken (they are what reverting a layer can win back; a
    sample it got as right as the reference only costs time to re-evaluate); when it is worse on none (a metric
    whose per-sample values do not show the drop), the ``count`` samples with the largest difference are.
    """
    loss = np.array([spec.drop(r, q) for r, q in zip(reference, quantized)])
    order = np.argsort(-loss, kind="stable")[:count]
    worse = [i for i in order if loss[i] > 0]
    return sorted(int(indices[i]) for i in (worse or order))
