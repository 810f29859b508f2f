"""Statistics of a per-channel affine image derived from the statistics before it, against real measurement."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.api.data_loader import DataLoader
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.channel_affine import CHANNEL_STATS, ChannelAffine, channel_specs, derive
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec

SHIFT = np.array([2.0, -1.0, 0.5, 0.0])
SCALE = np.array([4.0, 0.25, 1.0, 2.0])


class Images(DataLoader):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(3)
        self._items = [(rng.standard_normal((4, 5, 5)) * [[[3]], [[0.1]], [[1]], [[7]]] + 1).astype(np.float32)
                       for _ in range(6)]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int):
        return self._items[index], None


def affine_model() -> ov.Model:
    """x -> ``x_out`` (Relu of x + 0, the measured tensor) -> ``y`` = (x - shift) / scale computed by ops."""
    x = ops.parameter([-1, 4, 5, 5], np.float32, name="input")
    source = ops.add(x, ops.constant(np.zeros((1, 1, 1, 1), np.float32)))
    source.set_friendly_name("x")
    shifted = ops.subtract(source, ops.constant(SHIFT.reshape(1, 4, 1, 1).astype(np.float32)))
    image = ops.divide(shifted, ops.constant(SCALE.reshape(1, 4, 1, 1).astype(np.float32)))
    image.set_friendly_name("y")
    return ov.Model([ops.result(image)], [x], "affine")


def _specs(aggregator) -> list:
    specs = [StatisticSpec("y", f"{kind}_{per_channel}", make_reducer(kind, per_channel=per_channel, inplace=True),
                           aggregator)
             for kind in ("min", "max", "abs_max", "mean") for per_channel in (False, True)]
    return specs + [StatisticSpec("y", "quantile", make_reducer("quantile", per_channel=False, quantile=0.9),
                                  aggregator)]


@pytest.mark.parametrize("aggregator", [None, "mean", "median"])
def test_derived_statistics_equal_measured_ones(aggregator):
    engine, model = IEEngine({"device": "CPU"}, Images()), CompressedModel(affine_model())
    specs = _specs(aggregator)
    channel, measured = collect_statistics(engine, model, [StatisticsRequest(channel_specs(["x"], True), batch_size=2),
                                                           StatisticsRequest(specs, batch_size=2)])
    # in a changed model the same output holds the image; here ``y`` holds the image of ``x``
    derived = derive(specs, {"y": ChannelAffine(SHIFT, SCALE, rank=4)}, {"y": channel["x"]})["y"]
    assert "quantile" not in derived  # quantiles do not follow: measured again by the caller
    assert set(derived) == {spec.name for spec in specs} - {"quantile"}
    for name, value in derived.items():
        # as collect_statistics gives them: aggregated, or per batch without an aggregator
        np.testing.assert_allclose(np.asarray(value, np.float64), np.asarray(measured["y"][name], np.float64),
                                   rtol=1e-6, atol=1e-6, err_msg=name)


def test_nothing_is_derived_without_an_affine_or_its_channel_statistics():
    specs = _specs("mean")
    assert derive(specs, {}, {"y": {}}) == {}
    assert derive(specs, {"y": ChannelAffine(SHIFT, SCALE, rank=4)}, {}) == {}
    per_channel_other_axis = [StatisticSpec("y", "max", make_reducer("max", per_channel=True, channel_axis=2), "max")]
    channel = {"y": {name: [np.zeros((1, 4))] for name in CHANNEL_STATS.values()}}
    assert derive(per_channel_other_axis, {"y": ChannelAffine(SHIFT, SCALE, rank=4)}, channel) == {}
