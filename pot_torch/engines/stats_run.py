"""The statistics side of one ``IEEngine.predict`` run: where each statistic comes from, reading and storing it.

Each statistic of a layout is read from one output of the compiled model (an in-graph reducer's result or the raw
activation its ``fn`` reduces), or from its piece of the stacked output that holds the in-graph results
(``stacked_outputs``), and either kept per batch or streamed into an online aggregate.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, List, NamedTuple, Optional, Tuple

import openvino as ov

from pot_torch.engines.stacked_outputs import StackedBatch, StackedStatistics, statistic_label
from pot_torch.engines.utils import copy_if_shared
from pot_torch.statistics.online import OnlineAccumulator, online_aggregator_of
from pot_torch.statistics.reducers import per_batch_value
from pot_torch.statistics.stats_outputs import StatsStack


class StatSource(NamedTuple):
    """Where one statistic of the layout comes from among the compiled model's outputs."""

    node_key: Hashable
    stat_name: str
    output_index: int
    in_graph: bool  # the output is an in-graph reducer's result (else the raw activation, ``fn`` applies)
    fn: Any
    piece: Optional[int] = None  # its piece of the stacked output (``output_index`` is that output), or None


#: What ``Run.read_stats`` copies from a request: ``(samples, values of the unstacked sources, stacked batch)``.
BatchStats = Tuple[int, list, Optional[StackedBatch]]


class Run:
    """What one ``predict`` call needs on every batch.

    :param stack: the compiled model's stacked output, read by the sources that have a ``piece``.
    """

    def __init__(self, compiled: ov.CompiledModel, stat_sources: List[StatSource],
                 model_outputs: int, need_outputs: bool, per_sample: bool, stack: Optional[StatsStack] = None) -> None:
        self.compiled = compiled
        self.stat_sources = stat_sources
        #: running aggregates of the statistics streamed online (``None``: kept per batch), by source; those of
        #: stacked sources are filled in by ``finish``
        self.accumulators: List[Optional[OnlineAccumulator]] = [
            accumulator_for(source.node_key, source.stat_name, source.fn) for source in stat_sources]
        self.model_outputs = model_outputs
        self.need_outputs = need_outputs
        self.per_sample = per_sample
        self._own = [(source, accumulator) for source, accumulator in zip(stat_sources, self.accumulators)
                     if source.piece is None]
        stacked = [(position, source) for position, source in enumerate(stat_sources) if source.piece is not None]
        self._stacked = StackedStatistics(stack, stacked) if stack is not None and stacked else None

    def read_stats(self, request: ov.InferRequest, samples: int) -> BatchStats:
        """The statistic values of a finished request of ``samples`` samples (a reducer takes an output whose axis
        0 is not the batch as one value, ``per_batch_value``); copies of shared outputs."""
        values = []
        for source, _ in self._own:
            activation = request.get_output_tensor(source.output_index).data
            value = per_batch_value(source.fn, activation, samples, source.in_graph, repr(source.node_key))
            values.append(value if source.in_graph else copy_if_shared(value, activation))
        return samples, values, self._stacked.read(request) if self._stacked is not None else None

    def record_stats(self, accumulated: Dict[Hashable, Dict[str, list]], order: int, batch: BatchStats) -> None:
        """Add a batch's values to their online aggregates, or as ``(order, value)`` to ``accumulated``."""
        samples, values, stacked = batch
        for (source, accumulator), value in zip(self._own, values):
            if accumulator is not None:
                accumulator.add(value)
            else:
                accumulated[source.node_key][source.stat_name].append((order, value))
        if stacked is not None:
            self._stacked.record(stacked, samples, order, accumulated)  # type: ignore[union-attr]

    def finish(self) -> None:
        """After the last batch: put the stacked sources' online aggregates into ``accumulators``."""
        if self._stacked is not None:
            for position, accumulator in self._stacked.accumulators():
                self.accumulators[position] = accumulator

    def store_online_results(self, accumulated: Dict[Hashable, Dict[str, list]]) -> None:
        """Put each online aggregate, as a one-value list, where the per-batch list would have been."""
        for source, accumulator in zip(self.stat_sources, self.accumulators):
            if accumulator is not None and not accumulator.empty:
                accumulated[source.node_key][source.stat_name] = [(0, accumulator.result())]


def accumulator_for(node_key: Hashable, stat_name: str, fn: Any) -> Optional[OnlineAccumulator]:
    """The online accumulator of a statistic whose ``fn`` streams into an aggregator, else ``None``."""
    aggregator = online_aggregator_of(fn)
    return None if aggregator is None else OnlineAccumulator(aggregator, statistic_label(node_key, stat_name))
