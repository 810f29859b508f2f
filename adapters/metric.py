"""POT metrics from torch: ``TorchMetric`` (torchmetrics protocol) and ``FunctionMetric`` (a function)."""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from pot_torch.adapters.dataset import LoaderBatch
from pot_torch.adapters.tensors import to_torch
from pot_torch.api import Metric

Direction = Union[bool, Dict[str, bool], None]
_REQUIRED_METHODS = ("update", "compute", "reset")


class _BatchMetric(Metric):
    """Shared plumbing: POT outputs and annotations become torch ``preds`` and ``target``.

    ``update(output, target)`` takes POT's list of model output arrays of a batch and the list of annotations
    (one per item; an item its loader had batched brings a ``LoaderBatch`` of per-sample annotations).
    ``preds`` is ``output[output_index]`` as a tensor, or ``output_fn(output)``; ``target`` is the annotations
    stacked into one tensor, or a list of dicts of tensors for dict (detection-style) annotations.
    ``value`` gives one result per annotation of the last update (per sample, or per loader batch).
    """

    def __init__(
        self, output_index: Union[int, str] = 0, output_fn: Optional[Callable[[Any], Any]] = None
    ) -> None:
        self._output_index = output_index
        self._output_fn = output_fn
        self._last: Optional[Tuple[Any, Any, List[int]]] = None
        super().__init__()

    def update(self, output: Any, target: Any) -> None:
        preds, targets, counts = self._prepare(output, target)
        self._update(preds, targets)
        self._last = (preds, targets, counts)

    @property
    def value(self) -> Dict[str, List[float]]:
        """Results of each annotation of the last ``update``: ``{name: [v_0, ..., v_{n-1}]}``."""
        if self._last is None:
            return {}
        preds, targets, counts = self._last
        per_item: Dict[str, List[float]] = {}
        start = 0
        for count in counts:
            results = self._evaluate(preds[start : start + count], targets[start : start + count])
            for name, result in results.items():
                per_item.setdefault(name, []).append(result)
            start += count
        return per_item

    def reset(self) -> None:
        self._last = None

    @abstractmethod
    def _update(self, preds: Any, targets: Any) -> None:
        """Accumulate one batch."""

    @abstractmethod
    def _evaluate(self, preds: Any, targets: Any) -> Dict[str, float]:
        """Results on ``preds``/``targets`` alone, without touching the accumulated state."""

    def _prepare(self, output: Any, annotations: Any) -> Tuple[Any, Any, List[int]]:
        samples, counts = _per_sample(annotations)
        preds = self._preds(output)
        if len(preds) != len(samples):
            raise ValueError(
                f"{type(self).__name__}.update got predictions for {len(preds)} samples but "
                f"{len(samples)} annotations; the model output's first axis must be the batch "
                "(choose the output with output_index, or reshape it with output_fn)"
            )
        return preds, _collate_targets(samples), counts

    def _preds(self, output: Any) -> Any:
        if self._output_fn is not None:
            return to_torch(self._output_fn(output))
        if isinstance(output, dict):
            chosen = (
                output[self._output_index]
                if self._output_index in output
                else list(output.values())[self._output_index]
            )
        elif isinstance(output, (list, tuple)):
            count = len(output)
            if not isinstance(self._output_index, int) or not -count <= self._output_index < count:
                raise ValueError(
                    f"output_index {self._output_index!r} does not pick one of the model's "
                    f"{count} outputs; give a position 0..{count - 1}"
                )
            chosen = output[self._output_index]
        else:
            chosen = output
        return to_torch(np.asarray(chosen) if not isinstance(chosen, torch.Tensor) else chosen)


class TorchMetric(_BatchMetric):
    """A POT metric over an object with the torchmetrics protocol: ``update(preds, target)``, ``compute()``,
    ``reset()`` (a ``torchmetrics.Metric``, a ``MetricCollection`` or a class of your own).

    ``avg_value`` is ``compute()`` since the last reset, one number per name: a scalar result is named
    ``name`` (default: the metric's class name); a dict result (``MetricCollection``) keeps its keys,
    dropping entries that are not single numbers. ``value`` runs a fresh copy of the metric on each sample (or loader batch) of
    the last update, so per-sample Accuracy is 0 or 1 and per-sample MeanSquaredError is that sample's error.
    The direction comes from torchmetrics' ``higher_is_better`` where set, unless ``higher_better`` overrides
    it (a bool for all names or ``{name: bool}``); without either it is higher-better.

    :param metric: the torch metric object (it is used, not copied; ``reset`` resets it).
    :param name: the result name of a metric computing one number.
    :param higher_better: direction override.
    :param output_index: which model output (position) holds the predictions.
    :param output_fn: builds ``preds`` from the list of output arrays instead (e.g. decoding detections).
    """

    def __init__(
        self,
        metric: Any,
        name: Optional[str] = None,
        higher_better: Direction = None,
        output_index: Union[int, str] = 0,
        output_fn: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        missing = [method for method in _REQUIRED_METHODS if not callable(getattr(metric, method, None))]
        if missing:
            raise TypeError(
                f"TorchMetric needs an object with the torchmetrics protocol: update(preds, target), "
                f"compute() and reset(); {type(metric).__name__} has no {', '.join(missing)}. Wrap "
                "a torchmetrics.Metric, or use FunctionMetric(fn, name) for a function "
                "fn(preds, target) -> float"
            )
        self._metric = metric
        self._name = name or type(metric).__name__
        self._higher_better = higher_better
        self._sample_metric: Any = None
        super().__init__(output_index, output_fn)

    @property
    def metric(self) -> Any:
        """The wrapped torch metric."""
        return self._metric

    @property
    def avg_value(self) -> Dict[str, float]:
        return self._results(self._metric.compute())

    @property
    def higher_better(self) -> bool:
        return self._direction(self._name)

    def reset(self) -> None:
        super().reset()
        self._metric.reset()

    def get_attributes(self) -> Dict[str, Dict[str, str]]:
        return {
            name: {"direction": "higher-better" if self._direction(name) else "higher-worse", "type": name}
            for name in self._metric_names()
        }

    def _metric_names(self) -> List[str]:
        if _is_collection(self._metric):
            return list(self._metric.keys())
        return super()._metric_names() if self._last is not None else [self._name]

    def _direction(self, name: str) -> bool:
        override = self._higher_better
        if isinstance(override, dict):
            if name in override:
                return bool(override[name])
        elif override is not None:
            return bool(override)
        source = self._metric
        if _is_collection(source):
            source = dict(source.items(keep_base=False, copy_state=False)).get(name, source)
        inferred = getattr(source, "higher_is_better", None)
        return True if inferred is None else bool(inferred)

    def _update(self, preds: Any, targets: Any) -> None:
        self._metric.update(preds, targets)

    def _evaluate(self, preds: Any, targets: Any) -> Dict[str, float]:
        if self._sample_metric is None:
            self._sample_metric = copy.deepcopy(self._metric)
        self._sample_metric.reset()
        self._sample_metric.update(preds, targets)
        return self._results(self._sample_metric.compute())

    def _results(self, computed: Any) -> Dict[str, float]:
        if isinstance(computed, dict):
            return {str(key): float(value) for key, value in computed.items() if _is_single_number(value)}
        if not _is_single_number(computed):
            shape = list(computed.shape) if hasattr(computed, "shape") else type(computed).__name__
            raise ValueError(
                f"metric '{self._name}' computed {shape}, not one number; POT metrics give one "
                "number per name: configure a reduction (e.g. average='macro') or compute a dict"
            )
        return {self._name: float(computed)}


class FunctionMetric(_BatchMetric):
    """A POT metric from a function ``fn(preds, target) -> float`` on torch tensors of one batch.

    ``avg_value`` is the sample-weighted mean of ``fn`` over the batches since the last reset, exact for
    metrics that are means over samples (accuracy, mean squared error); wrap a torchmetrics object with
    ``TorchMetric`` for others (F1, mAP). ``value`` is ``fn`` on each sample (or loader batch) of the last
    update.

    :param fn: the metric function.
    :param name: the metric's name.
    :param higher_better: whether larger values are better.
    :param output_index: which model output (position) holds the predictions.
    :param output_fn: builds ``preds`` from the list of output arrays instead.
    """

    def __init__(
        self,
        fn: Callable[[Any, Any], Any],
        name: str,
        higher_better: bool = True,
        output_index: Union[int, str] = 0,
        output_fn: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"FunctionMetric needs a function fn(preds, target) -> float, got {type(fn).__name__}"
            )
        if not name:
            raise ValueError("FunctionMetric needs a name for its result, e.g. name='accuracy'")
        self._fn = fn
        self._name = str(name)
        self._higher = bool(higher_better)
        self._total = 0.0
        self._count = 0
        super().__init__(output_index, output_fn)

    @property
    def avg_value(self) -> Dict[str, float]:
        return {self._name: self._total / self._count if self._count else float("nan")}

    @property
    def higher_better(self) -> bool:
        return self._higher

    def reset(self) -> None:
        super().reset()
        self._total = 0.0
        self._count = 0

    def _metric_names(self) -> List[str]:
        return [self._name]

    def _update(self, preds: Any, targets: Any) -> None:
        self._total += self._call(preds, targets) * len(preds)
        self._count += len(preds)

    def _evaluate(self, preds: Any, targets: Any) -> Dict[str, float]:
        return {self._name: self._call(preds, targets)}

    def _call(self, preds: Any, targets: Any) -> float:
        result = self._fn(preds, targets)
        if not _is_single_number(result):
            raise ValueError(
                f"metric function '{self._name}' returned {type(result).__name__}, not one number"
            )
        return float(result)


def _per_sample(annotations: Any) -> Tuple[List[Any], List[int]]:
    """Flatten the annotations of an update into per-sample ones; count the samples of each annotation."""
    if not isinstance(annotations, (list, tuple)):
        raise TypeError(
            f"metric update expects the list of annotations of a batch, got {type(annotations).__name__}"
        )
    samples: List[Any] = []
    counts: List[int] = []
    for annotation in annotations:
        if isinstance(annotation, LoaderBatch):
            samples.extend(annotation)
            counts.append(len(annotation))
        else:
            samples.append(annotation)
            counts.append(1)
    return samples, counts


def _collate_targets(samples: Sequence[Any]) -> Any:
    """Per-sample annotations as torchmetrics takes them: a stacked tensor, or a list of dicts of tensors."""
    if samples and all(isinstance(sample, dict) for sample in samples):
        return [to_torch({key: _numeric(np.asarray(value), f"annotation entries '{key}'")
                          for key, value in sample.items()}) for sample in samples]
    try:
        stacked = np.stack(
            [np.asarray(sample.numpy() if isinstance(sample, torch.Tensor) else sample) for sample in samples]
        )
    except ValueError as error:
        shapes = sorted({str(np.shape(sample)) for sample in samples})
        raise ValueError(
            f"cannot stack the batch's annotations into one tensor (shapes {shapes}): {error}; "
            "give annotations of one shape, or dicts for detection-style targets"
        ) from None
    return torch.from_numpy(_numeric(stacked, "annotations"))


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` if torch can hold it; strings and objects get an error naming the values and the fix."""
    if array.dtype.kind in "biufc":
        return array
    kind = "strings" if array.dtype.kind in "US" else f"{array.dtype} values"
    first = array.flat[0].item() if array.size and isinstance(array.flat[0], np.generic) else None
    raise TypeError(
        f"the metric's {what} are {kind} ({first!r}), not numbers; metrics take class indices or numeric "
        "targets: map the labels to numbers, e.g. target_fn=lambda item: CLASSES.index(item[1]) (with "
        "transform_fn=lambda item: item[0]) or a target_transform in the data set"
    )


def _is_single_number(value: Any) -> bool:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.size == 1 if isinstance(value, np.ndarray) else value.numel() == 1
    return isinstance(value, (int, float, np.generic)) and not isinstance(value, bool)


def _is_collection(metric: Any) -> bool:
    return callable(getattr(metric, "items", None)) and callable(getattr(metric, "keys", None))
