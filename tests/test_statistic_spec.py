"""Statistics declared as (node, reducer, aggregator) specs: the collector hands back each spec's aggregate."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from pot_torch.api.data_loader import DataLoader
from pot_torch.api.engine import Engine
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.statistics.aggregators import aggregate
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.spec import StatisticSpec, layout_specs
from tests.model_builders import conv_model

KINDS = (("min", "min"), ("max", "max"), ("mean", "mean"), ("abs_max", "median"), ("max", "mean_no_outliers"))


class Images(DataLoader):
    def __init__(self, count: int = 6) -> None:
        super().__init__()
        self.items = [np.random.default_rng(i).standard_normal((3, 16, 16)).astype(np.float32) for i in range(count)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index], None


class ListEngine(Engine):
    """A POT-style custom engine: OpenVINO inference of the op outputs the layout names, every statistic function
    called on them in numpy, one value per batch in the lists it returns (no online aggregation)."""

    def __init__(self, data_loader: DataLoader) -> None:
        super().__init__({"device": "CPU"}, data_loader)
        self.passes = 0

    def set_model(self, model):
        self.model = model.get_model()

    def predict(self, stats_layout=None, sampler=None, stat_aliases=None, metric_per_sample=False,
                print_progress=False):
        self.passes += 1
        by_name = ops_by_name(self.model)
        keys = list(stats_layout)
        outputs = [by_name[key].output(0) for key in keys]
        compiled = ov.Core().compile_model(ov.Model([by_name[key] for key in keys], self.model.get_parameters()),
                                           "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        stats = {key: {name: [] for name in stats_layout[key]} for key in keys}
        for items in sampler:
            result = compiled(np.stack([data for data, _ in items]))
            for key, output in zip(keys, compiled.outputs):
                for name, fn in stats_layout[key].items():
                    stats[key][name].append(fn(result[output]))
        assert len(outputs) == len(compiled.outputs)
        return None, stats


def _specs(node: str = "relu1") -> list:
    return [StatisticSpec(node, f"{kind}_{aggregator}", make_reducer(kind, per_channel=True, inplace=True),
                          aggregator) for kind, aggregator in KINDS]


def test_an_unknown_aggregator_is_refused_where_the_statistic_is_declared():
    with pytest.raises(ValueError, match="unknown aggregator 'maximum'"):
        StatisticSpec("relu1", "max", make_reducer("max", False), "maximum")


def test_a_layout_instead_of_specs_is_refused_with_how_to_declare_them():
    with pytest.raises(TypeError, match=r"StatisticSpec\(node, name, reducer, aggregator\).*layout_specs"):
        StatisticsRequest({"relu1": {"max": make_reducer("max", False)}})


@pytest.mark.parametrize("engine_type", [IEEngine, ListEngine])
def test_each_spec_comes_back_as_the_aggregate_of_the_engines_per_batch_values(engine_type):
    """IEEngine (online min/max/mean, in-graph reducers) and a list-returning custom engine give each spec's
    aggregate of the per-batch values; the per-batch values are what a spec without an aggregator returns."""
    loader = Images()
    engine = IEEngine({"device": "CPU"}, loader) if engine_type is IEEngine else ListEngine(loader)
    specs = _specs()
    aggregated, per_batch = collect_statistics(engine, CompressedModel(conv_model(batch=-1)), [
        StatisticsRequest(specs, list(range(6)), 2),
        StatisticsRequest([StatisticSpec(s.node, s.name, s.reducer) for s in specs], list(range(6)), 2)])
    for spec in specs:
        values = per_batch["relu1"][spec.name]
        assert isinstance(values, list) and len(values) == 3  # kept per batch: three batches of two
        want = aggregate(spec.aggregator, values)
        np.testing.assert_allclose(aggregated["relu1"][spec.name], want, rtol=1e-6, err_msg=spec.name)
        if spec.aggregator in ("min", "max", "median"):
            np.testing.assert_array_equal(aggregated["relu1"][spec.name], want, err_msg=spec.name)


def test_a_riding_request_is_cut_to_its_batches_before_it_is_aggregated():
    """A request on the first two batches of another's subset shares its pass (one ``predict``) and gets the
    aggregate of its own samples only, not of the longer pass's."""
    loader = Images()
    engine = ListEngine(loader)
    model = CompressedModel(conv_model(batch=-1))
    long = StatisticsRequest([StatisticSpec("relu1", "max", make_reducer("max", False), "max")], list(range(6)), 1)
    short = StatisticsRequest([StatisticSpec("relu1", "mean", make_reducer("mean", True), "mean"),
                               StatisticSpec("relu1", "max", make_reducer("max", False), "max")], [0, 1], 1)
    together = collect_statistics(engine, model, [long, short])
    assert engine.passes == 1
    alone = collect_statistics(engine, model, [short])[0]
    for name in ("mean", "max"):
        np.testing.assert_array_equal(together[1]["relu1"][name], alone["relu1"][name], err_msg=name)
    assert together[1]["relu1"]["max"] < together[0]["relu1"]["max"]  # the six samples reach higher


def test_a_statistic_measured_on_no_sample_comes_back_as_none():
    """An op the data never reached (an engine returning an empty list) gives ``None``, not an error, so the
    algorithm can say what to do about it; without an aggregator, the empty list."""

    class NoBatches(ListEngine):
        def predict(self, stats_layout=None, sampler=None, **kwargs):
            return None, {key: {name: [] for name in stats} for key, stats in stats_layout.items()}

    request = StatisticsRequest(layout_specs({"relu1": {"max": make_reducer("max", False)}}, "max")
                                + [StatisticSpec("relu1", "rows", make_reducer("max", False))])
    stats = collect_statistics(NoBatches(Images()), CompressedModel(conv_model(batch=-1)), [request])[0]
    assert stats == {"relu1": {"max": None, "rows": []}}


def test_derived_values_are_aggregated_as_measured_ones():
    """``aggregate_computed`` folds computed per-batch values as IEEngine folds measured ones (online for min,
    max and mean), so a derived statistic equals the measured one bit for bit."""
    loader = Images()
    specs = [spec for spec in _specs() if spec.aggregator in ("min", "max", "mean")]
    model = CompressedModel(conv_model(batch=-1))
    measured, per_batch = collect_statistics(IEEngine({"device": "CPU"}, loader), model, [
        StatisticsRequest(specs, list(range(6)), 2),
        StatisticsRequest([StatisticSpec(s.node, s.name, s.reducer) for s in specs], list(range(6)), 2)])
    for spec in specs:
        np.testing.assert_array_equal(spec.aggregate_computed(per_batch["relu1"][spec.name]),
                                      measured["relu1"][spec.name], err_msg=spec.name)
