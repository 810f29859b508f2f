"""Base class of every compression algorithm."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, List, Optional

from pot_torch.api.engine import Engine
from pot_torch.statistics.collector import Statistics, StatisticsRequest, collect_statistics
from pot_torch.utils.config import AttrDict, as_config


class Algorithm(ABC):
    """A step of a pipeline that turns a ``CompressedModel`` into another.

    :param config: the algorithm's ``params`` (a dict or ``AttrDict``).
    :param engine: the engine used to run the model for statistics and metrics.

    Protocol: ``statistics_requests(model)`` says what the algorithm needs measured on ``model``; ``run(model,
    statistics)`` gets those statistics (one list per request, collected on the model as it entered the
    pipeline group, see ``Pipeline``) and returns the transformed model. ``run`` may edit the model it is
    given; ``Pipeline.run`` hands it a copy so the caller's model is never changed. Called on its own,
    ``run(model)`` collects its statistics itself.
    """

    name: str = ""
    #: True when the algorithm changes the floating-point model so that statistics measured before it no
    #: longer hold (the pipeline then collects afresh for the algorithms after it).
    change_original_model: bool = False

    def __init__(self, config: Any, engine: Engine) -> None:
        self._config = config if isinstance(config, AttrDict) else as_config(dict(config or {}))
        self._engine = engine

    @property
    def config(self) -> AttrDict:
        """The algorithm's parameters. Every registered algorithm passes them through
        ``pot_torch.algorithms.params.resolve_params`` first, so this holds the resolved values (defaults filled
        in, validated), not the raw dict the user gave."""
        return self._config

    @property
    def engine(self) -> Engine:
        """The engine the algorithm runs models with."""
        return self._engine

    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """The statistics this algorithm needs measured on ``model`` (none by default)."""
        return []

    def collect_own_statistics(self, model: Any) -> List[Statistics]:
        """Collect this algorithm's ``statistics_requests`` on ``model`` through its engine."""
        return collect_statistics(self._engine, model, self.statistics_requests(model))

    @abstractmethod
    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Apply the algorithm to ``model`` (a ``CompressedModel``) and return the result.

        :param statistics: results of ``statistics_requests(model)``, in order; ``None`` to collect them here.
        """
