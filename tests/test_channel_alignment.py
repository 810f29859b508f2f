"""ActivationChannelAlignment and the Conv -> (Add) -> Conv pattern, with real OpenVINO inference (f32)."""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer
from pot_torch.algorithms.quantization.channel_alignment import ActivationChannelAlignment
from pot_torch.api.data_loader import DataLoader
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.layer_patterns import find_conv_pairs
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.pipeline import create_pipeline
from pot_torch.statistics.aggregators import aggregate
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.spec import layout_specs
from pot_torch.statistics.reducers import make_reducer


class ImageLoader(DataLoader):
    def __init__(self, count: int = 12, seed: int = 0) -> None:
        super().__init__()
        self._items = np.random.default_rng(seed).standard_normal((count, 3, 10, 10)).astype(np.float32)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int):
        return self._items[index], None


def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    return node


def pair_model(seed: int = 0, with_bias: bool = True, consumer_pad: int = 0, consumer_stride: int = 1,
               extra_reader: bool = False, f16_weights: bool = False) -> ov.Model:
    """input[1,3,10,10] -> conv1 3x3 (+bias) -> conv2 (1x1, or 3x3 with ``consumer_pad``) (+bias) -> relu.

    conv1's output channels have ranges spread over two decades and uneven means, the case alignment is for.
    ``extra_reader`` adds a second consumer (a ReLU output) of the activation between the convolutions.
    """
    rng = np.random.default_rng(seed)
    x = ops.parameter([1, 3, 10, 10], np.float32, name="input")
    spread = 10.0 ** rng.uniform(-1.0, 1.0, (8, 1, 1, 1))
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3 * spread).astype(np.float32)
    w1_node = ops.constant(w1.astype(np.float16)) if f16_weights else ops.constant(w1)
    if f16_weights:
        w1_node = ops.convert(w1_node, ov.Type.f32)
    act = _named(ops.convolution(x, w1_node, [1, 1], [1, 1], [1, 1], [1, 1]), "conv1")
    if with_bias:
        act = _named(ops.add(act, ops.constant(rng.uniform(-3, 3, (1, 8, 1, 1)).astype(np.float32))), "conv1_bias")
    kernel = 3 if consumer_pad else 1
    w2 = ops.constant((rng.standard_normal((6, 8, kernel, kernel)) * 0.3).astype(np.float32))
    stride = [consumer_stride] * 2
    out = _named(ops.convolution(act, w2, stride, [consumer_pad] * 2, [consumer_pad] * 2, [1, 1]), "conv2")
    if with_bias:
        out = _named(ops.add(out, ops.constant(rng.uniform(-1, 1, (1, 6, 1, 1)).astype(np.float32))), "conv2_bias")
    results = [ops.result(_named(ops.relu(out), "relu"))]
    if extra_reader:
        results.append(ops.result(ops.relu(act)))
    return ov.Model(results, [x], "pair_model")


@pytest.fixture(scope="module")
def engine() -> IEEngine:
    return IEEngine({"device": "CPU"}, ImageLoader())


def _channel_ranges(engine: IEEngine, model: CompressedModel, key: str):
    layout = {key: {"min": make_reducer("min", True, inplace=True), "max": make_reducer("max", True, inplace=True),
                    "mean": make_reducer("mean", True, inplace=True)}}
    stats = collect_statistics(engine, model, [StatisticsRequest(layout_specs(layout))])[0][key]
    low, high = aggregate("min", stats["min"]), aggregate("max", stats["max"])
    return high - low, aggregate("mean", stats["mean"])


def _outputs(model: CompressedModel, loader: ImageLoader):
    return np.concatenate([reference_infer(model.get_model(), [loader[i][0][None]])[0] for i in range(len(loader))])


@pytest.mark.parametrize("with_bias, f16_weights", [(True, False), (False, False), (True, True)])
def test_alignment_keeps_fp_outputs_and_narrows_ranges(engine, with_bias, f16_weights):
    model = CompressedModel(pair_model(with_bias=with_bias, f16_weights=f16_weights))
    key = "conv1_bias" if with_bias else "conv1"
    spread_before, mean_before = _channel_ranges(engine, model, key)
    aligned = ActivationChannelAlignment({}, engine).run(copy.deepcopy(model))

    expected, actual = _outputs(model, engine.data_loader), _outputs(aligned, engine.data_loader)
    tolerance = 1e-2 if f16_weights else 1e-4  # f16 weights are rounded again after rescaling
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())

    spread_after, mean_after = _channel_ranges(engine, aligned, key)
    ratio_before = spread_before.max() / spread_before.min()
    ratio_after = spread_after.max() / spread_after.min()
    assert ratio_before > 20 and ratio_after < 2, (ratio_before, ratio_after)
    if with_bias:  # means are moved to about zero only when both convolutions have a bias
        assert np.abs(mean_after).max() < 0.25 * np.abs(mean_before).max()


def test_no_pair_means_no_statistics_and_no_change(engine):
    model = CompressedModel(conv_model())  # conv -> add -> relu -> conv: the ReLU breaks the pair
    algorithm = ActivationChannelAlignment({}, engine)
    assert algorithm.statistics_requests(model) == []
    before = [op.get_friendly_name() for op in model.get_model().get_ordered_ops()]
    result = algorithm.run(copy.deepcopy(model))
    weights = {op.get_friendly_name(): op.get_data().copy() for op in model.get_model().get_ops()
               if op.get_type_name() == "Constant"}
    for op in result.get_model().get_ops():
        if op.get_type_name() == "Constant":
            assert np.array_equal(op.get_data(), weights[op.get_friendly_name()])
    assert [op.get_friendly_name() for op in result.get_model().get_ordered_ops()] == before


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [("conv1", "conv2", "conv1_bias")]),
    ({"with_bias": False}, [("conv1", "conv2", "conv1")]),
    ({"consumer_pad": 1}, []),
    ({"consumer_stride": 2}, []),
    ({"extra_reader": True}, []),
])
def test_pair_pattern(kwargs, expected):
    pairs = find_conv_pairs(pair_model(**kwargs))
    assert [(p.producer, p.consumer, p.activation_key) for p in pairs] == expected


def test_requests_use_pot_quantiles_and_subset(engine):
    algorithm = ActivationChannelAlignment({"stat_subset_size": 4, "stat_batch_size": 2}, engine)
    (request,) = algorithm.statistics_requests(CompressedModel(pair_model()))
    assert list(request.subset_indices) == [0, 1, 2, 3] and request.batch_size == 2
    stats = request.layout["conv1_bias"]
    assert (stats["channel_range_min"].q, stats["channel_range_max"].q) == (1e-4, 1 - 1e-4)
    assert stats["channel_range_min"].per_channel and stats["channel_range_min"].channel_axis == 1


@pytest.mark.parametrize("inplace_statistics, spatial, in_graph", [
    (True, 10, True), (False, 10, False), (True, -1, False)])
def test_quantiles_are_taken_in_graph_where_the_shape_allows(engine, inplace_statistics, spatial, in_graph):
    """In-graph (the engine reads them with the other in-graph statistics, not the whole activation) unless
    inplace_statistics is False or the spatial sizes are dynamic; the same numbers as numpy's. Failed before with
    the quantiles always in numpy (inplace False)."""
    model = pair_model()
    model.reshape([1, 3, spatial, spatial])
    algorithm = ActivationChannelAlignment({"stat_subset_size": 4, "inplace_statistics": inplace_statistics}, engine)
    (request,) = algorithm.statistics_requests(CompressedModel(model))
    reducers = request.layout["conv1_bias"]
    assert [reducer.inplace for reducer in reducers.values()] == [in_graph, in_graph]
    numpy_side = {name: make_reducer("quantile", True, quantile=reducer.q) for name, reducer in reducers.items()}
    measured, reference = collect_statistics(engine, CompressedModel(pair_model()), [
        StatisticsRequest(request.specs, request.subset_indices),
        StatisticsRequest(layout_specs({"conv1_bias": numpy_side}, "median"), request.subset_indices)])
    for name in reducers:
        np.testing.assert_array_equal(measured["conv1_bias"][name], reference["conv1_bias"][name])


def test_runs_through_the_pipeline_and_keeps_the_callers_model(engine):
    model = CompressedModel(pair_model())
    original: Optional[np.ndarray] = _outputs(model, engine.data_loader)
    weights_before = {op.get_friendly_name(): op.get_data().copy() for op in model.get_model().get_ops()
                      if op.get_type_name() == "Constant"}
    pipeline = create_pipeline([{"name": "ActivationChannelAlignment", "params": {"stat_subset_size": 6}}], engine)
    aligned = pipeline.run(model)
    np.testing.assert_allclose(_outputs(aligned, engine.data_loader), original, rtol=1e-4,
                               atol=1e-4 * np.abs(original).max())
    for op in model.get_model().get_ops():
        if op.get_type_name() == "Constant":
            assert np.array_equal(op.get_data(), weights_before[op.get_friendly_name()])
    changed = [op for op in aligned.get_model().get_ops() if op.get_type_name() == "Constant"
               and not np.array_equal(op.get_data(), weights_before[op.get_friendly_name()])]
    assert changed, "alignment changed no constant"
