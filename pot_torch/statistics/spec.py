"""A statistic declared whole: the op output it reads, its name, the reducer per batch and the aggregator over samples.

Algorithms declare what they need as :class:`StatisticSpec` s (as NNCF's ``TensorCollector.register_statistic_branch``
and torchmetrics' ``add_state`` do) and get back, from ``collect_statistics``, each spec's aggregated value: the
aggregator is named once, where the statistic is declared. A spec without an aggregator keeps the per-batch values
(for statistics that need them: SmoothQuant's search rows, the per-sample values other statistics are derived from,
model inputs as fed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, List, Mapping, Optional, Sequence

import numpy as np

from pot_torch.statistics.aggregators import aggregate, get_aggregator
from pot_torch.statistics.online import engine_values


@dataclass(frozen=True)
class StatisticSpec:
    """One statistic of one op output.

    :param node: the op output it reads: a friendly name (output 0) or ``(friendly_name, output_index)``.
    :param name: its name among the statistics of ``node``.
    :param reducer: maps a batch output (numpy, batch first) to a value per sample (``[B]`` or ``[B, C]``); a
        reducer of ``pot_torch.statistics.reducers`` may be computed in the OpenVINO graph.
    :param aggregator: how the per-sample values combine over the data set (a name of
        ``pot_torch.statistics.aggregators.AGGREGATORS``), or ``None`` to keep the list of per-batch values.
    :raises ValueError: ``aggregator`` is not a known aggregator name.
    """

    node: Hashable
    name: str
    reducer: Callable[[Any], Any]
    aggregator: Optional[str] = None

    def __post_init__(self) -> None:
        if self.aggregator is not None:
            get_aggregator(self.aggregator)

    def aggregate(self, values: Sequence[Any]) -> Any:
        """The collected value of this statistic from the per-batch values an engine returned: the aggregate
        (``None`` when there are no values: the op never ran on the data), or the list itself without an
        aggregator."""
        if self.aggregator is None:
            return values
        return aggregate(self.aggregator, values) if len(values) else None  # type: ignore[arg-type]

    def aggregate_computed(self, batches: Sequence[np.ndarray]) -> Any:
        """The collected value of this statistic from per-batch values computed rather than measured (derived
        from other statistics): folded online as ``IEEngine`` folds measured ones, so both agree bit for bit."""
        return self.aggregate(engine_values(self.aggregator, list(batches)))


def layout_specs(layout: Mapping[Hashable, Mapping[str, Callable[[Any], Any]]],
                 aggregator: Optional[str] = None) -> List[StatisticSpec]:
    """The specs of a POT statistics layout ``{node: {name: reducer}}``, all aggregated with ``aggregator``."""
    return [StatisticSpec(node, name, reducer, aggregator) for node, stats in layout.items()
            for name, reducer in stats.items()]
