"""Reading a request's stacked statistics output (``statistics.stats_outputs.StatsStack``) once per batch.

The in-graph results of a layout come back as one ``f32`` output: it is copied once per request, each statistic
kept per batch is a view of that copy, and the statistics streamed into ``'min'``, ``'max'`` or ``'mean'`` are
folded with one numpy operation per aggregator and batch (``GroupAccumulator``), not one call per statistic.
The values are those of one output per statistic, bit for bit (same shapes and dtype): a batch in which a
piece's axis 0 is not the batch (``reducers.is_per_sample``) goes statistic by statistic through
``per_batch_value``, as before.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.statistics.online import GroupAccumulator, OnlineAccumulator, online_aggregator_of
from pot_torch.statistics.reducers import per_batch_value
from pot_torch.statistics.stats_outputs import StatsStack

if TYPE_CHECKING:
    from pot_torch.engines.stats_run import StatSource

#: One request's stacked values: ``(flat copy of the stacked output, axis-0 size of each piece)``.
StackedBatch = Tuple[np.ndarray, np.ndarray]
#: An online group: ``(aggregator, direct)``; a direct group's statistics are folded all at once.
GroupKey = Tuple[str, bool]


def statistic_label(node_key: Hashable, stat_name: str) -> str:
    """How errors name a statistic of the layout."""
    return f"statistic '{stat_name}' of {node_key!r}"


class StackedStatistics:
    """The statistics of one run read from its stacked output.

    A statistic whose ``fn`` finishes its in-graph value in numpy (an ``after_graph`` method, as
    ``statistics.padding``'s) is read through ``per_batch_value`` on every batch, the others directly.

    :param stack: where the pieces are in the stacked output.
    :param sources: ``(position among the run's sources, source)`` of each statistic read from a piece
        (``source.piece``).
    """

    def __init__(self, stack: StatsStack, sources: Sequence[Tuple[int, "StatSource"]]) -> None:
        self.stack = stack
        self._sizes = np.array([piece.size for piece in stack.pieces], dtype=np.int64)
        self._static_rows = np.array([-1 if piece.rows is None else piece.rows for piece in stack.pieces],
                                     dtype=np.int64)
        self._dynamic = [index for index, piece in enumerate(stack.pieces) if piece.rows is None]
        members: Dict[GroupKey, List[Tuple[int, "StatSource"]]] = {}
        #: ``(group key or None when kept per batch, position in its group, source)``
        self._entries: List[Tuple[Optional[GroupKey], int, "StatSource"]] = []
        for position, source in sources:
            aggregator = online_aggregator_of(source.fn)
            key, member = (None if aggregator is None else (aggregator, not _finished_in_numpy(source.fn))), -1
            if key is not None:
                members.setdefault(key, []).append((position, source))
                member = len(members[key]) - 1
            self._entries.append((key, member, source))
        self._groups = {key: (GroupAccumulator(key[0], [self._sizes[source.piece] for _, source in group]), group)
                        for key, group in members.items()}
        #: ``(node_key, stat_name, piece, values per row, row shape)`` of the statistics kept per batch, read directly
        self._kept = [(source.node_key, source.stat_name, source.piece, int(self._sizes[source.piece]),
                       stack.pieces[source.piece].shape) for key, _, source in self._entries
                      if key is None and not _finished_in_numpy(source.fn)]
        self._finished = [entry for entry in self._entries if _finished_in_numpy(entry[2].fn)]
        self._layouts: Dict[int, Tuple[np.ndarray, Dict[GroupKey, np.ndarray]]] = {}  # by rows: offsets, index

    def read(self, request: ov.InferRequest) -> StackedBatch:
        """Copy the stacked values of a finished request (its output buffers are reused by the next batch)."""
        flat = np.array(request.get_output_tensor(self.stack.output).data)
        rows = self._static_rows
        if self.stack.rows_output is not None:
            rows = rows.copy()
            rows[self._dynamic] = request.get_output_tensor(self.stack.rows_output).data
        return flat, rows

    def record(self, batch: StackedBatch, samples: int, order: int, accumulated: Dict[Hashable, Dict[str, list]]
               ) -> None:
        """Fold a batch of ``samples`` samples into the online groups and append ``(order, value)`` of each
        statistic kept per batch to ``accumulated``."""
        flat, rows = batch
        if not np.all(rows == samples):  # some piece's axis 0 is not the batch: statistic by statistic
            self._record_each(self._entries, flat, _offsets(rows * self._sizes), rows, samples, order, accumulated)
            return
        offsets, columns = self._layout(samples)
        for key, (group, _) in self._groups.items():
            if key[1]:
                group.add_rows(flat[columns[key]])
        starts = offsets.tolist()
        for node_key, stat_name, piece, size, shape in self._kept:
            start = starts[piece]
            value = flat[start:start + samples * size].reshape(samples, *shape)
            accumulated[node_key][stat_name].append((order, value))
        self._record_each(self._finished, flat, offsets, rows, samples, order, accumulated)

    def _record_each(self, entries: Sequence[Tuple[Optional[GroupKey], int, "StatSource"]], flat: np.ndarray,
                     offsets: np.ndarray, rows: np.ndarray, samples: int, order: int,
                     accumulated: Dict[Hashable, Dict[str, list]]) -> None:
        """Record ``entries`` one by one through ``per_batch_value``, as one output per statistic would."""
        for key, member, source in entries:
            start, size, count = int(offsets[source.piece]), int(self._sizes[source.piece]), int(rows[source.piece])
            value = per_batch_value(source.fn, flat[start:start + count * size].reshape(
                count, *self.stack.pieces[source.piece].shape), samples, True, repr(source.node_key))
            if key is None:
                accumulated[source.node_key][source.stat_name].append((order, value))
            else:
                self._groups[key][0].add_to(member, np.asarray(value))

    def _layout(self, samples: int) -> Tuple[np.ndarray, Dict[GroupKey, np.ndarray]]:
        """Where each piece starts when every piece has ``samples`` rows, and the index gathering each direct
        online group's ``[samples, columns]`` block."""
        if samples not in self._layouts:
            offsets = _offsets(samples * self._sizes)
            samples_axis = np.arange(samples, dtype=np.int64)[:, np.newaxis]
            columns = {}
            for key, (_, group) in self._groups.items():
                if key[1]:
                    columns[key] = np.concatenate(
                        [offsets[source.piece] + samples_axis * self._sizes[source.piece]
                         + np.arange(self._sizes[source.piece], dtype=np.int64) for _, source in group], axis=1)
            self._layouts[samples] = offsets, columns
        return self._layouts[samples]

    def accumulators(self) -> List[Tuple[int, OnlineAccumulator]]:
        """``(position among the run's sources, aggregate)`` of every online statistic, as the
        ``OnlineAccumulator`` that had been given its batches one by one."""
        return [(position, group.accumulator(member, self.stack.pieces[source.piece].shape,
                                             statistic_label(source.node_key, source.stat_name)))
                for group, group_sources in self._groups.values()
                for member, (position, source) in enumerate(group_sources)]


def _finished_in_numpy(fn: object) -> bool:
    """Whether the statistic ``fn`` turns its in-graph value into the statistic in numpy (``after_graph``)."""
    return callable(getattr(fn, "after_graph", None))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of ``lengths`` values starts."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
