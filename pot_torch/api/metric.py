"""The abstract metric of the POT API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Mapping, Sequence


class Metric(ABC):
    """An accuracy metric accumulated over model outputs.

    Subclasses implement ``avg_value`` (``{name: scalar}`` over everything seen since ``reset``), ``update``
    and ``reset``; ``value`` (``{name: [per-sample values of the last update]}``) is needed only for per-sample
    metrics, which AccuracyAwareQuantization uses to rank layers. ``get_attributes()`` gives each metric's
    direction (``'higher-better'`` or ``'higher-worse'``) and type; subclasses written for older POT that
    define an ``attributes`` property instead are accepted, and without either the direction comes from
    ``higher_better``.
    """

    def __init__(self) -> None:
        self.reset()

    @property
    def value(self) -> Dict[str, List[float]]:
        """Per-sample metric values of the last ``update``: ``{name: [v_0, ..., v_{batch-1}]}``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement the 'value' property, which per-sample metrics "
            "(Engine.predict(metric_per_sample=True), AccuracyAwareQuantization ranking) need: return "
            "{metric_name: [value for each sample of the last update]}."
        )

    @property
    @abstractmethod
    def avg_value(self) -> Dict[str, float]:
        """Metric values over all samples seen since ``reset``: ``{name: value}``."""

    @property
    def higher_better(self) -> bool:
        """Whether a larger value is better; used only when ``get_attributes`` gives no direction."""
        return True

    @abstractmethod
    def update(self, output: Any, target: Any) -> None:
        """Accumulate the model ``output`` (a list of output arrays) against the ``target`` annotations."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated so far."""

    def get_attributes(self) -> Dict[str, Dict[str, str]]:
        """Return ``{metric_name: {'direction': 'higher-better' | 'higher-worse', 'type': str}}``."""
        legacy = getattr(type(self), "attributes", None)
        if legacy is not None:
            return dict(self.attributes)  # type: ignore[attr-defined]
        direction = "higher-better" if self.higher_better else "higher-worse"
        return {name: {"direction": direction, "type": name} for name in self._metric_names()}

    def _metric_names(self) -> List[str]:
        try:
            return list(self.avg_value)
        except (ZeroDivisionError, ValueError, TypeError, IndexError, KeyError):
            return [type(self).__name__]

    def __call__(self, output: Any, target: Any) -> None:
        self.update(output, target)


def average_values(metric: Metric) -> Mapping[str, Any]:
    """``metric.avg_value``, checked to be a dict ``{metric name: value}``.

    :raises TypeError: naming the metric class when it returns something else (a bare number, a list).
    """
    values = metric.avg_value
    if not isinstance(values, Mapping):
        raise TypeError(f"{type(metric).__name__}.avg_value returned {values!r}; expected a dict {{metric name: "
                        "value over the samples seen since reset}, e.g. {'accuracy': 0.72}")
    return values


def per_sample_values(metric: Metric, batch_size: int) -> Mapping[str, Sequence[Any]]:
    """``metric.value`` after an update with ``batch_size`` samples, checked to be a dict ``{metric name:
    [one value per sample]}``.

    :raises TypeError: naming the metric class when it returns something else.
    """
    values = metric.value
    name = type(metric).__name__
    if not isinstance(values, Mapping):
        raise TypeError(f"{name}.value returned {values!r}; expected a dict {{metric name: [one value per sample "
                        "of the last update]}, e.g. {'accuracy': [1.0, 0.0]}")
    for key, samples in values.items():
        if isinstance(samples, (str, bytes)) or not hasattr(samples, "__getitem__") or not hasattr(
                samples, "__len__") or len(samples) < batch_size:
            raise TypeError(f"{name}.value[{key!r}] is {samples!r} for a batch of {batch_size} sample(s); expected "
                            "a list of one value per sample of the last update")
    return values
