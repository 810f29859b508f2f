"""The abstract inference engine of the POT API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.utils.config import as_config


class Engine(ABC):
    """Runs a model over a data set, computing metrics and collecting activation statistics.

    :param config: engine settings (``device``, ``stat_requests_number``, ``eval_requests_number`` ...); a
        plain dict is given attribute access.
    :param data_loader: the data set to run over.
    :param metric: the metric to compute, or ``None``.
    """

    def __init__(self, config: Any, data_loader: Optional[DataLoader] = None,
                 metric: Optional[Metric] = None) -> None:
        self.config = as_config(config) if config is not None else as_config({})
        self._data_loader = data_loader
        self._metric = metric

    @property
    def data_loader(self) -> Optional[DataLoader]:
        """The engine's data set."""
        return self._data_loader

    @property
    def metric(self) -> Optional[Metric]:
        """The engine's metric, or ``None``."""
        return self._metric

    @abstractmethod
    def set_model(self, model: Any) -> None:
        """Load ``model`` (a ``CompressedModel``) for the next ``predict`` calls."""

    @abstractmethod
    def predict(self, stats_layout: Optional[Dict[str, Dict[str, Any]]] = None, sampler: Any = None,
                stat_aliases: Optional[Dict[str, Any]] = None, metric_per_sample: bool = False,
                print_progress: bool = False) -> Tuple[Any, Optional[Dict[str, Dict[str, list]]]]:
        """Run the model; return ``(metrics, stats)``.

        ``metrics`` is ``None`` without a metric, else ``{name: value}``, or with ``metric_per_sample`` the pair
        ``(sorted [{'sample_id', 'metric_name', 'result'}], {name: value})``. ``stats`` is
        ``{node_name: {stat_name: [value per batch, in data set order]}}`` for ``stats_layout``
        (``{node_name: {stat_name: fn}}``), else ``None``.
        """

    def get_metric_attributes(self) -> Dict[str, Dict[str, str]]:
        """The metric's ``get_attributes()``, or ``{}`` without a metric."""
        return self._metric.get_attributes() if self._metric is not None else {}
