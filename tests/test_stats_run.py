"""IEEngine's stacked statistics output: the in-graph results of a layout come back as one output per request,
and the statistics read from it equal those of one output per statistic exactly (values, shapes, dtypes)."""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import BatchSampler, CompressedModel
from pot_torch.engines import IEEngine, ie_engine
from pot_torch.statistics.online import GroupAccumulator, OnlineAccumulator, stream_into
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.stats_outputs import add_stats_outputs
from tests.model_builders import conv_model
from tests.test_ie_engine import F32, ListLoader


def _sequence_first_model() -> ov.Model:
    """x[B, 4, 6] -> transpose 'seq_first' [4, B, 6] -> relu 'act' -> back: axis 0 of 'act' is not the batch."""
    x = ops.parameter(ov.PartialShape([-1, 4, 6]), np.float32, name="x")
    seq = ops.transpose(x, ops.constant(np.array([1, 0, 2], np.int64)))
    seq.set_friendly_name("seq_first")
    act = ops.relu(seq)
    act.set_friendly_name("act")
    back = ops.transpose(act, ops.constant(np.array([1, 0, 2], np.int64)))
    back.set_friendly_name("back")
    return ov.Model([ops.result(back)], [x], "sequence_first")


class FinishedInNumpy:
    """An in-graph statistic finished in numpy (``after_graph``, as statistics.padding's): twice the in-graph max
    over every axis but 0."""

    inplace = True

    def graph_reduce(self, output: ov.Output) -> ov.Output:
        axes = ops.constant(np.arange(1, output.get_partial_shape().rank.get_length(), dtype=np.int64))
        return ops.reduce_max(output, axes, keep_dims=False).output(0)

    def after_graph(self, value: np.ndarray, samples: int, what: str) -> np.ndarray:
        return value * np.float32(2)


def _layout(nodes: List[str], per_channel_axis: int) -> Dict[str, Dict[str, Any]]:
    """Every in-graph reducer kind, per tensor and per channel, kept per batch and streamed online, a statistic
    finished in numpy, and a numpy statistic on the raw activation."""
    layout: Dict[str, Dict[str, Any]] = {}
    for node in nodes:
        stats: Dict[str, Any] = {"raw_max": lambda a: np.max(a, axis=tuple(range(1, a.ndim))),
                                 "finished": FinishedInNumpy(),
                                 "finished_online": stream_into(FinishedInNumpy(), "max")}
        for kind, aggregator in (("min", "min"), ("max", "max"), ("abs_max", "max"), ("mean", "mean")):
            for per_channel in (False, True):
                name = f"{kind}_{'channel' if per_channel else 'tensor'}"
                stats[name] = make_reducer(kind, per_channel, per_channel_axis, inplace=True)
                stats[f"{name}_online"] = stream_into(make_reducer(kind, per_channel, per_channel_axis, inplace=True),
                                                      aggregator)
        layout[node] = stats
    return layout


def _predict(model: ov.Model, items: List[Any], layout: Dict, batch_size: int, requests: int) -> Dict:
    engine = IEEngine({**F32, "stat_requests_number": requests}, ListLoader(items))
    engine.set_model(CompressedModel(model))
    sampler = BatchSampler(engine.data_loader, batch_size=batch_size)
    return engine.predict(stats_layout=layout, sampler=sampler)[1]


def _one_output_per_statistic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make IEEngine compile one output per statistic (the path before the stacked output)."""
    monkeypatch.setattr(ie_engine, "add_stats_outputs", lambda model, layout, **_: add_stats_outputs(model, layout))


def _assert_identical(stacked: Dict, separate: Dict) -> None:
    assert list(stacked) == list(separate)
    for node_key, stats in separate.items():
        assert list(stacked[node_key]) == list(stats)
        for stat_name, values in stats.items():
            got = stacked[node_key][stat_name]
            assert len(got) == len(values), (node_key, stat_name)
            for new, old in zip(got, values):
                new, old = np.asarray(new), np.asarray(old)
                assert new.dtype == old.dtype and new.shape == old.shape, (node_key, stat_name, new.shape, old.shape)
                np.testing.assert_array_equal(new, old, err_msg=f"{stat_name} of {node_key!r}")
                assert np.array_equal(np.signbit(new), np.signbit(old))


CASES = {
    # model, node names, channel axis, item shape, items
    "static batch 1": (lambda: conv_model(), ["input", "relu1", "conv2_bias", "fc_bias"], 1, (3, 16, 16), 5),
    "dynamic batch": (lambda: conv_model(batch=-1), ["input", "relu1", "conv2_bias", "fc_bias"], 1, (3, 16, 16), 7),
    "axis 0 not the batch": (_sequence_first_model, ["seq_first", "act"], -1, (4, 6), 7),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch_size, requests", [(1, 2), (3, 1), (3, 2)])
def test_stacked_statistics_equal_one_output_per_statistic(case, batch_size, requests, monkeypatch):
    build, nodes, channel_axis, shape, count = CASES[case]
    if case == "static batch 1" and batch_size > 1:
        pytest.skip("a static batch of 1 takes one item per batch")
    rng = np.random.default_rng(5)
    items = [(rng.standard_normal(shape).astype(np.float32), None) for _ in range(count)]
    items[1][0][...] = -0.0  # signed zeros: min, max and mean keep the sign numpy gives them
    layout = _layout(nodes, channel_axis)
    stacked = _predict(build(), items, layout, batch_size, requests)
    _one_output_per_statistic(monkeypatch)
    separate = _predict(build(), items, layout, batch_size, requests)
    _assert_identical(stacked, separate)


def test_in_graph_statistics_come_back_in_one_stacked_output():
    """One output for all in-graph results (two with a dynamic batch: their row counts), one per raw activation;
    failed before with one output per in-graph reducer (21 outputs instead of 4 for the static model)."""
    for model, extra in ((conv_model(), 1), (conv_model(batch=-1), 2)):
        engine = IEEngine(F32, ListLoader([(np.zeros((3, 16, 16), np.float32), None)]))
        engine.set_model(CompressedModel(model))
        run = engine._prepare_run(_layout(["relu1", "conv2_bias"], 1), per_sample=False)
        assert len(run.compiled.outputs) == len(model.outputs) + 2 + extra  # 2 raw activations (raw_max)


def test_stack_builder_keeps_one_output_per_statistic_unless_asked():
    """Custom engines read ``add_stats_outputs``'s index per statistic: the default keeps that layout."""
    layout = _layout(["relu1"], 1)
    plan = add_stats_outputs(conv_model(), layout)
    assert plan.stack is None and len(plan.model.outputs) == 1 + 10
    stacked = add_stats_outputs(conv_model(), layout, stack=True)
    assert stacked.stack is not None and len(stacked.stack.pieces) == 9 and len(stacked.model.outputs) == 1 + 2
    assert {stacked.source(key, kind) for key, kind in stacked.piece_of} == {stacked.stack.output}


@pytest.mark.parametrize("aggregator", ["min", "max", "mean"])
def test_group_accumulator_equals_one_accumulator_per_statistic(aggregator):
    """Bit for bit, with batches of several rows, signed zeros, NaN and statistics folded alone in between."""
    rng = np.random.default_rng(11)
    shapes = [(), (3,), (2, 2), ()]
    group = GroupAccumulator(aggregator, [int(np.prod(shape)) for shape in shapes])
    singles = [OnlineAccumulator(aggregator) for _ in shapes]
    for batch in range(6):
        rows = 1 + batch % 3
        values = [(rng.standard_normal((rows, *shape)) * 10.0 ** rng.integers(-6, 6, (rows, *shape)))
                  .astype(np.float32) for shape in shapes]
        values[0][0] = -0.0
        if batch == 4:
            values[3][-1] = np.nan
        if batch == 2:  # statistic 1 alone (its axis 0 was not the batch), the others skip this batch
            group.add_to(1, values[1])
            singles[1].add(values[1])
            continue
        group.add_rows(np.concatenate([value.reshape(rows, -1) for value in values], axis=1))
        for single, value in zip(singles, values):
            single.add(value)
    for position, (shape, single) in enumerate(zip(shapes, singles)):
        restored = group.accumulator(position, shape)
        assert restored.count == single.count
        expected, got = single.result(), restored.result()
        assert got.dtype == expected.dtype and got.shape == expected.shape == (1, *shape)
        assert np.array_equal(got, expected, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(expected))
