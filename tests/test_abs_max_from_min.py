"""An in-graph abs_max next to an in-graph min over the same axes is computed as |max(ReduceMax(x), -min)| from that
min (no ``Abs`` over the activation): the statistics model is cheaper and every value is the one of
ReduceMax(Abs(x)) bit for bit (signed zeros included), per tensor and per channel."""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import BatchSampler, CompressedModel
from pot_torch.engines import IEEngine, ie_engine
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.stats_outputs import add_stats_outputs
from tests.test_ie_engine import F32, ListLoader


def _model() -> ov.Model:
    """x[B, 3, 4, 5] -> 'act' (x + 0, an op the statistics read) -> result."""
    x = ops.parameter(ov.PartialShape([-1, 3, 4, 5]), np.float32, name="x")
    act = ops.add(x, ops.constant(np.zeros((1, 3, 1, 1), np.float32)))
    act.set_friendly_name("act")
    return ov.Model([ops.result(act)], [x], "abs_max_model")


def _samples() -> List[np.ndarray]:
    """Negative, positive, all-zero (with -0.0), all -0.0 and mixed-sign samples; channels of one sign each."""
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(3, 4, 5)).astype(np.float32)
    zeros = np.zeros((3, 4, 5), np.float32)
    zeros[1, 2, 3] = -0.0
    by_channel = np.stack([-np.abs(mixed[0]), np.abs(mixed[1]), np.full((4, 5), -0.0, np.float32)])
    return [-np.abs(mixed) - 1, np.abs(mixed), zeros, np.full((3, 4, 5), -0.0, np.float32), mixed, by_channel,
            mixed * 1e30]


def _nan_and_inf_samples() -> List[np.ndarray]:
    """NaN first, inside and last in the reduction order, all NaN, NaN with data of one sign, and +-inf."""
    rng = np.random.default_rng(1)
    items = []
    for position, sign in (((0, 0, 0), 0), ((1, 2, 3), 0), ((2, 3, 4), 0), ((0, 0, 0), 1), ((2, 3, 4), -1)):
        item = rng.normal(size=(3, 4, 5)).astype(np.float32)
        item = item if sign == 0 else np.float32(sign) * np.abs(item)
        item[position] = np.nan
        items.append(item)
    infinite = rng.normal(size=(3, 4, 5)).astype(np.float32)
    infinite[1, 1, 1], infinite[2, 2, 2] = np.inf, -np.inf
    return [*items, np.full((3, 4, 5), np.nan, np.float32), infinite]


def _layout(with_min: bool) -> Dict[str, Dict[str, Any]]:
    stats: Dict[str, Any] = {}
    for per_channel in (False, True):
        suffix = "channel" if per_channel else "tensor"
        if with_min:
            stats[f"min_{suffix}"] = make_reducer("min", per_channel, inplace=True)
        stats[f"abs_max_{suffix}"] = make_reducer("abs_max", per_channel, inplace=True)
    return {"act": stats}


def _predict(layout: Dict, items: List[np.ndarray], batch_size: int) -> Dict:
    engine = IEEngine(F32, ListLoader([(item[np.newaxis], None) for item in items]))
    engine.set_model(CompressedModel(_model()))
    return engine.predict(stats_layout=layout, sampler=BatchSampler(engine.data_loader, batch_size=batch_size))[1]


def _op_types(layout: Dict) -> List[str]:
    return [op.get_type_name() for op in add_stats_outputs(_model(), layout, stack=True).model.get_ops()]


def test_no_abs_over_the_activation_when_a_min_is_measured() -> None:
    assert "Abs" in _op_types(_layout(with_min=False))  # the general path: ReduceMax(Abs(x))
    with_min = add_stats_outputs(_model(), _layout(with_min=True), stack=True).model
    for op in with_min.get_ops():
        if op.get_type_name() == "Abs":  # only on the reduced values, never on the activation
            assert list(op.get_output_partial_shape(0))[1:] in ([], [3]), op
    assert [op.get_type_name() for op in with_min.get_ops()].count("ReduceMin") == 2  # each min built once


def test_the_stacked_abs_max_values_are_derived_all_at_once() -> None:
    """One Negative and one Maximum for every derived abs_max of the stacked output (the CPU plugin compiles each
    small elementwise chain as a kernel of its own); one each per statistic with one output per statistic."""
    layout = {**_layout(with_min=True), "x": dict(_layout(with_min=True)["act"])}
    for stack, chains in ((True, 1), (False, 4)):
        types = [op.get_type_name() for op in add_stats_outputs(_model(), layout, stack=stack).model.get_ops()]
        assert types.count("Negative") == types.count("Maximum") == chains, stack


def _bits(values: List[np.ndarray]) -> List[bytes]:
    return [np.ascontiguousarray(value, dtype=np.float32).tobytes() for value in values]


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "one_output_each"])
def test_abs_max_from_min_equals_reduce_max_of_abs(batch_size: int, stack: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not stack:
        monkeypatch.setattr(ie_engine, "add_stats_outputs", lambda model, layout, **_: add_stats_outputs(model, layout))
    items = _samples()
    derived = _predict(_layout(with_min=True), items, batch_size)["act"]
    general = _predict(_layout(with_min=False), items, batch_size)["act"]
    for suffix, axes in (("tensor", (1, 2, 3)), ("channel", (2, 3))):
        name = f"abs_max_{suffix}"
        assert _bits(derived[name]) == _bits(general[name]), name
        expected = np.concatenate([np.max(np.abs(item[np.newaxis]), axis=axes) for item in items])
        assert np.concatenate(derived[name]).tobytes() == expected.astype(np.float32).tobytes(), name
        assert not np.signbit(np.concatenate(derived[name])).any()  # -0.0 data gives +0.0, as Abs does


def test_abs_max_from_min_with_nan_and_inf_as_reduce_max_of_abs() -> None:
    """The plugin's ReduceMax/ReduceMin keep a NaN only in some positions of the reduction order; the derived
    abs_max follows ReduceMax(Abs(x)) there too (pinned on this plugin: the same bits on each of these samples)."""
    items = _nan_and_inf_samples()
    derived = _predict(_layout(with_min=True), items, 1)["act"]
    general = _predict(_layout(with_min=False), items, 1)["act"]
    for name in ("abs_max_tensor", "abs_max_channel"):
        assert _bits(derived[name]) == _bits(general[name]), name
    assert np.isnan(np.concatenate(general["abs_max_tensor"])).any()  # the samples do reach NaN results
