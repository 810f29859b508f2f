"""The statistics side of one ``IEEngine.predict`` run: where each statistic comes from, reading and storing it.

Each statistic of a layout is read from one output of the compiled model (an in-graph reducer's result or the raw
activation its ``fn`` reduces) and either kept per batch or streamed into an online aggregate.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, List, NamedTuple, Optional

import openvino as ov

from pot_torch.engines.utils import copy_if_shared
from pot_torch.statistics.online import OnlineAccumulator, online_aggregator_of
from pot_torch.statistics.reducers import per_batch_value


class StatSource(NamedTuple):
    """Where one statistic of the layout comes from among the compiled model's outputs."""

    node_key: Hashable
    stat_name: str
    output_index: int
    in_graph: bool  # the output is an in-graph reducer's result (else the raw activation, ``fn`` applies)
    fn: Any


class Run:
    """What one ``predict`` call needs on every batch."""

    def __init__(self, compiled: ov.CompiledModel, stat_sources: List[StatSource],
                 model_outputs: int, need_outputs: bool, per_sample: bool) -> None:
        self.compiled = compiled
        self.stat_sources = stat_sources
        #: running aggregates of the statistics streamed online (``None``: kept per batch), by source
        self.accumulators: List[Optional[OnlineAccumulator]] = [
            accumulator_for(source.node_key, source.stat_name, source.fn) for source in stat_sources]
        self.model_outputs = model_outputs
        self.need_outputs = need_outputs
        self.per_sample = per_sample

    def read_stats(self, request: ov.InferRequest, samples: int) -> list:
        """The statistic values of a finished request of ``samples`` samples, one per source (a reducer takes an
        output whose axis 0 is not the batch as one value, ``per_batch_value``); copies of shared outputs."""
        values = []
        for source in self.stat_sources:
            activation = request.get_output_tensor(source.output_index).data
            value = per_batch_value(source.fn, activation, samples, source.in_graph, repr(source.node_key))
            values.append(value if source.in_graph else copy_if_shared(value, activation))
        return values

    def record_stats(self, accumulated: Dict[Hashable, Dict[str, list]], order: int, values: list) -> None:
        """Add a batch's ``values`` to their online aggregates, or as ``(order, value)`` to ``accumulated``."""
        for source, accumulator, value in zip(self.stat_sources, self.accumulators, values):
            if accumulator is not None:
                accumulator.add(value)
            else:
                accumulated[source.node_key][source.stat_name].append((order, value))

    def store_online_results(self, accumulated: Dict[Hashable, Dict[str, list]]) -> None:
        """Put each online aggregate, as a one-value list, where the per-batch list would have been."""
        for source, accumulator in zip(self.stat_sources, self.accumulators):
            if accumulator is not None and not accumulator.empty:
                accumulated[source.node_key][source.stat_name] = [(0, accumulator.result())]


def accumulator_for(node_key: Hashable, stat_name: str, fn: Any) -> Optional[OnlineAccumulator]:
    """The online accumulator of a statistic whose ``fn`` streams into an aggregator, else ``None``."""
    aggregator = online_aggregator_of(fn)
    return None if aggregator is None else OnlineAccumulator(aggregator, f"statistic '{stat_name}' of {node_key!r}")
