"""IEEngine on real OpenVINO inference: numbers, item formats, metrics, statistics, batching, errors, order."""
from __future__ import annotations

from typing import Any, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import BatchSampler, CompressedModel, DataLoader, IndexSampler, Metric
from pot_torch.engines import IEEngine
from pot_torch.engines.data_items import DataItemError
from pot_torch.statistics.aggregators import aggregate
from pot_torch.statistics.online import stream_into
from pot_torch.statistics.reducers import make_reducer
from tests.model_builders import conv_model, reference_infer, two_input_model

F32 = {"device": "CPU", "inference_precision": "f32"}


class ListLoader(DataLoader):
    """Items given as a list."""

    def __init__(self, items: List[Any]) -> None:
        super().__init__()
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


class TopClass(Metric):
    """Accuracy of argmax(output 0) against integer labels; remembers every label it saw, in order."""

    def __init__(self) -> None:
        self.seen: List[Any] = []
        self.hits: List[float] = []
        self.last: List[float] = []
        super().__init__()

    @property
    def value(self):
        return {"accuracy": self.last}

    @property
    def avg_value(self):
        return {"accuracy": float(np.mean(self.hits)) if self.hits else 0.0}

    def update(self, output, target):
        predicted = np.argmax(output[0], axis=-1)
        self.last = [float(p == t) for p, t in zip(predicted, target)]
        self.hits += self.last
        self.seen += list(target)

    def reset(self):
        self.hits = []
        self.last = []

    def get_attributes(self):
        return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}


def _images(count: int, seed: int = 1, shape=(3, 16, 16)) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _dynamic_batch_conv_model() -> ov.Model:
    return conv_model(batch=-1)


def _with_output(model: ov.Model, name: str) -> ov.Model:
    """A clone of ``model`` whose only output is op ``name``'s output 0 (for f32 references)."""
    clone = model.clone()
    op = next(o for o in clone.get_ops() if o.get_friendly_name() == name)
    return ov.Model([ops.result(op.output(0))], clone.get_parameters(), "ref")


def _engine(model: ov.Model, items: List[Any], metric: Metric = None, **config) -> IEEngine:
    engine = IEEngine({**F32, **config}, ListLoader(items), metric)
    engine.set_model(CompressedModel(model))
    return engine


# ------------------------------------------------------------------------------------------ numbers
def test_outputs_match_plain_openvino_inference_at_f32():
    model, images = conv_model(), _images(5)
    captured = []

    class Capture(IEEngine):
        def postprocess_output(self, outputs, metadata):
            captured.append(outputs["output"])
            return list(outputs.values())

    engine = Capture(F32, ListLoader([(x, 0) for x in images]))
    engine.set_model(CompressedModel(model))
    metrics, stats = engine.predict()
    assert metrics is None and stats is None
    reference = np.concatenate([reference_infer(model, [x[None]])[0] for x in images])
    np.testing.assert_allclose(np.concatenate(captured), reference, rtol=1e-5, atol=1e-6)


def test_default_precision_is_the_device_default_and_f32_for_statistics():
    engine = IEEngine({"device": "CPU"}, ListLoader([(_images(1)[0], 0)]))
    engine.set_model(CompressedModel(conv_model()))
    compiled = engine._prepare_run(None, False).compiled
    stats_compiled = engine._prepare_run({"relu1": {"max": np.max}}, False).compiled
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Core().compile_model(
        conv_model(), "CPU").get_property("INFERENCE_PRECISION_HINT")
    assert stats_compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


# ------------------------------------------------------------------------------------- item formats
@pytest.mark.parametrize("make_item", [
    lambda i, x: (x, i % 10),
    lambda i, x: (x, i % 10, {"name": f"img{i}"}),
    lambda i, x: ((i, i % 10), x),
    lambda i, x: ((i, i % 10), x, {"name": f"img{i}"}),
    lambda i, x: ({"input": x}, i % 10),
    lambda i, x: (x[None], i % 10),
    lambda i, x: (x.astype(np.float64).tolist(), i % 10),
])
def test_every_item_format_gives_the_same_metric(make_item):
    model, images = conv_model(), _images(6)
    labels = [int(np.argmax(reference_infer(model, [x[None]])[0])) for x in images]
    items = [make_item(i, x) for i, x in enumerate(images)]
    metric = TopClass()
    metrics, _ = _engine(model, items, metric).predict()
    expected = np.mean([label == i % 10 for i, label in enumerate(labels)])
    assert metrics == {"accuracy": pytest.approx(expected)}
    assert metric.seen == [i % 10 for i in range(6)]


def test_metadata_reaches_postprocess_output():
    seen = []

    class Meta(IEEngine):
        def postprocess_output(self, outputs, metadata):
            seen.extend(m["name"] for m in metadata)
            return [outputs["output"] * 0 + 1]

    items = [(x, 1, {"name": f"img{i}"}) for i, x in enumerate(_images(3))]
    engine = Meta(F32, ListLoader(items), TopClass())
    engine.set_model(CompressedModel(conv_model()))
    metrics, _ = engine.predict()
    assert seen == ["img0", "img1", "img2"]
    assert metrics == {"accuracy": 0.0}  # argmax of all-ones output is class 0, labels are 1


def test_none_annotation_skips_metric_update():
    metric = TopClass()
    items = [(x, None if i == 1 else 0) for i, x in enumerate(_images(3))]
    _engine(conv_model(), items, metric).predict()
    assert metric.seen == [0, 0]


# ------------------------------------------------------------------------------ multi-input/output
def test_two_input_two_output_model_with_dict_data():
    model = two_input_model()
    rng = np.random.default_rng(3)
    data = [{"a": rng.standard_normal(4).astype(np.float32), "b": rng.standard_normal((1, 4)).astype(np.float32)}
            for _ in range(3)]
    captured = []

    class Capture(IEEngine):
        def postprocess_output(self, outputs, metadata):
            captured.append(list(outputs.values()))
            return list(outputs.values())

    engine = Capture(F32, ListLoader([(d, None) for d in data]))
    engine.set_model(CompressedModel(model))
    engine.predict()
    for d, (total, product) in zip(data, captured):
        reference = reference_infer(model, {"a": d["a"][None], "b": d["b"]})
        np.testing.assert_allclose(total, reference[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(product, reference[1], rtol=1e-6)


# ------------------------------------------------------------------------------------------ metrics
def test_per_sample_metric_records_are_sorted_by_data_set_index():
    model, images = conv_model(), _images(5)
    labels = [int(np.argmax(reference_infer(model, [x[None]])[0])) for x in images]
    items = [(x, labels[i] if i % 2 == 0 else (labels[i] + 1) % 10) for i, x in enumerate(images)]
    engine = _engine(model, items, TopClass())
    sampler = BatchSampler(engine.data_loader, subset_indices=[4, 1, 2, 0, 3])
    records, overall = engine.predict(sampler=sampler, metric_per_sample=True)[0]
    assert [r["sample_id"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["result"] for r in records] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert all(r["metric_name"] == "accuracy" for r in records)
    assert overall == {"accuracy": pytest.approx(0.6)}
    assert engine.predict()[0] == {"accuracy": pytest.approx(0.6)}  # reset between calls


def test_legacy_items_use_their_img_ids_as_sample_ids():
    items = [((f"id{9 - i}", 0), x) for i, x in enumerate(_images(3))]
    records, _ = _engine(conv_model(), items, TopClass()).predict(metric_per_sample=True)[0]
    assert [r["sample_id"] for r in records] == ["id7", "id8", "id9"]


# ---------------------------------------------------------------------------------------- statistics
def test_statistics_on_intermediate_nodes_match_f32_reference():
    model, images = conv_model(), _images(4)
    layout = {"relu1": {"max": lambda a: a.max(axis=(1, 2, 3))}, ("conv2", 0): {"min": lambda a: a.min()}}
    metrics, stats = _engine(model, [(x, None) for x in images]).predict(stats_layout=layout)
    relu1 = [reference_infer(_with_output(model, "relu1"), [x[None]])[0] for x in images]
    conv2 = [reference_infer(_with_output(model, "conv2"), [x[None]])[0] for x in images]
    assert metrics is None and list(stats) == ["relu1", ("conv2", 0)]
    np.testing.assert_allclose(np.concatenate(stats["relu1"]["max"]), [r.max() for r in relu1], rtol=1e-5)
    np.testing.assert_allclose(stats[("conv2", 0)]["min"], [c.min() for c in conv2], rtol=1e-5)


class GraphMax:
    """A reducer computed inside the graph: max over all axes but the batch axis."""

    inplace = True
    graph_calls = 0  # class-level: a reducer's instance attributes identify the subgraph it builds

    def __call__(self, activation):
        raise AssertionError("an in-graph reducer must not be applied to the raw activation")

    def graph_reduce(self, output: ov.Output) -> ov.Output:
        GraphMax.graph_calls += 1
        axes = ops.constant(np.arange(1, output.get_partial_shape().rank.get_length(), dtype=np.int64))
        return ops.reduce_max(output, axes, keep_dims=False).output(0)


def test_inplace_reducer_is_computed_in_graph_and_compiled_once():
    model, images = conv_model(), _images(3)
    reducer, GraphMax.graph_calls = GraphMax(), 0
    engine = _engine(model, [(x, None) for x in images])
    compiles = []
    original = engine._ie.compile_model
    engine._ie.compile_model = lambda *a, **k: compiles.append(1) or original(*a, **k)
    layout = {"relu1": {"max": reducer, "mean": lambda a: a.mean()}}
    _, stats = engine.predict(stats_layout=layout)
    _, again = engine.predict(stats_layout={"relu1": {"other": GraphMax(), "m": lambda a: a.mean()}})
    assert GraphMax.graph_calls == 1 and len(compiles) == 1
    engine.predict()
    engine.predict()
    assert len(compiles) == 2
    engine.set_model(CompressedModel(model))  # a new model (maybe edited in place) is compiled afresh
    engine.predict()
    assert len(compiles) == 3
    relu1 = [reference_infer(_with_output(model, "relu1"), [x[None]])[0] for x in images]
    np.testing.assert_allclose(np.concatenate(stats["relu1"]["max"]), [r.max() for r in relu1], rtol=1e-5)
    np.testing.assert_allclose(stats["relu1"]["mean"], [r.mean() for r in relu1], rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(again["relu1"]["other"]), [r.max() for r in relu1], rtol=1e-5)


def test_unknown_statistics_node_lists_close_names():
    engine = _engine(conv_model(), [(_images(1)[0], None)])
    with pytest.raises(ValueError, match=r"node 'relu_1', which is not an op of model 'conv_model'.*'relu1'"):
        engine.predict(stats_layout={"relu_1": {"max": np.max}})


def test_statistics_keep_data_set_order_with_async_requests():
    images = _images(9)
    engine = _engine(conv_model(), [(x, None) for x in images], stat_requests_number=2)
    _, stats = engine.predict(stats_layout={"input": {"raw": lambda a: a.copy()}})
    np.testing.assert_array_equal(np.concatenate(stats["input"]["raw"]), np.stack(images))


@pytest.mark.parametrize("requests", [1, 2])
def test_marked_reducers_are_aggregated_online_to_the_list_result(requests):
    """Reducers marked with stream_into come back as one row equal to aggregating the per-batch list."""
    images = _images(7)
    layout = {name: {"plain": make_reducer(kind, per_channel), "streamed": stream_into(make_reducer(
        kind, per_channel), aggregator)} for name, kind, per_channel, aggregator in
        [("relu1", "max", True, "max"), ("conv2", "min", False, "min"), ("input", "mean", True, "mean")]}
    engine = _engine(_dynamic_batch_conv_model(), [(x, None) for x in images], stat_requests_number=requests)
    _, stats = engine.predict(stats_layout=layout, sampler=BatchSampler(engine.data_loader, batch_size=3))
    for name, aggregator in (("relu1", "max"), ("conv2", "min"), ("input", "mean")):
        assert len(stats[name]["plain"]) == 3 and len(stats[name]["streamed"]) == 1
        np.testing.assert_allclose(aggregate(aggregator, stats[name]["streamed"]),
                                   aggregate(aggregator, stats[name]["plain"]), rtol=1e-6, atol=0)
    np.testing.assert_allclose(stats["input"]["streamed"][0][0], np.stack(images).mean(axis=(0, 2, 3)), rtol=1e-5)


# ------------------------------------------------------------------------------------------ batching
@pytest.mark.parametrize("batch_size, sizes", [(2, [2, 2, 2, 1]), (3, [3, 3, 1])])
def test_sampler_batches_over_seven_items(batch_size, sizes):
    model, images = _dynamic_batch_conv_model(), _images(7)
    labels = [int(np.argmax(reference_infer(conv_model(), [x[None]])[0])) for x in images]
    metric = TopClass()
    engine = _engine(model, [(x, labels[i]) for i, x in enumerate(images)], metric)
    sampler = BatchSampler(engine.data_loader, batch_size=batch_size)
    metrics, stats = engine.predict(stats_layout={"fc_bias": {"out": lambda a: a.copy()}}, sampler=sampler)
    assert [len(v) for v in stats["fc_bias"]["out"]] == sizes
    reference = np.concatenate([reference_infer(conv_model(), [x[None]])[0] for x in images])
    np.testing.assert_allclose(np.concatenate(stats["fc_bias"]["out"]), reference, rtol=1e-4, atol=1e-5)
    assert metrics == {"accuracy": 1.0} and metric.seen == labels


def test_dynamic_spatial_shape_is_fed_as_is():
    x = ops.parameter(ov.PartialShape([-1, 3, -1, -1]), np.float32, name="x")
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    model = ov.Model([ops.result(pooled)], [x], "dynamic")
    items = [(np.full((3, 4 + i, 5), i, np.float32), None) for i in range(3)]
    _, stats = _engine(model, items).predict(stats_layout={"x": {"shape": lambda a: a.shape}})
    assert stats["x"]["shape"] == [(1, 3, 4, 5), (1, 3, 5, 5), (1, 3, 6, 5)]


# -------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("item, error, message", [
    ((np.zeros((3, 15, 15), np.float32), 0), DataItemError,
     r"data set item 2: model input 'input' has the static shape \[1, 3, 16, 16\].*\(3, 15, 15\)"),
    ((np.zeros((16, 16), np.float32), 0), DataItemError, r"data set item 2: model input 'input' has rank 4"),
    ((np.array([["x"] * 16] * 16), 0), TypeError, r"data set item 2: .*'input' has dtype <U1"),
    (({"image": np.zeros((3, 16, 16), np.float32)}, 0), DataItemError,
     r"data set item 2: data item key 'image' is not a model input; the model's inputs are 'input'"),
    ((np.zeros((3, 16, 16), np.float32),), DataItemError, r"data set item 2: item 0 of the batch is a tuple of 1"),
    (np.zeros((3, 16, 16), np.float32), DataItemError, r"data set item 2: item 0 of the batch is a ndarray"),
])
def test_bad_item_errors_name_input_shapes_and_index(item, error, message):
    items = [(x, 0) for x in _images(4)]
    items[2] = item
    engine = _engine(conv_model(), items)
    with pytest.raises(error, match=message):
        engine.predict()


def test_batch_error_names_the_data_set_indices():
    engine = _engine(conv_model(), [(x, 0) for x in _images(4)])
    with pytest.raises(DataItemError, match=r"batch of data set items \[0, 1\]: .*batch_size 1"):
        engine.predict(sampler=BatchSampler(engine.data_loader, batch_size=2))


def test_predict_before_set_model_and_cascade_are_rejected():
    engine = IEEngine(F32, ListLoader([]))
    with pytest.raises(ValueError, match="before set_model"):
        engine.predict()
    cascade = CompressedModel(models=[{"name": "a", "model": conv_model()}, {"name": "b", "model": conv_model(1)}])
    with pytest.raises(ValueError, match=r"cascade \['a', 'b'\].*override set_model and predict"):
        engine.set_model(cascade)
    with pytest.raises(TypeError, match="expects a pot_torch.CompressedModel"):
        engine.set_model(conv_model())


# ------------------------------------------------------------------------------------ order, safety
@pytest.mark.parametrize("requests", [1, 2])
def test_metric_sees_samples_in_order_with_one_or_several_requests(requests):
    model, images = conv_model(), _images(12)
    metric = TopClass()
    outputs = []

    class Capture(IEEngine):
        def postprocess_output(self, outputs_, metadata):
            outputs.append(outputs_["output"])
            return list(outputs_.values())

    engine = Capture({**F32, "eval_requests_number": requests}, ListLoader([(x, i) for i, x in enumerate(images)]),
                     metric)
    engine.set_model(CompressedModel(model))
    engine.predict()
    assert metric.seen == list(range(12))
    reference = np.concatenate([reference_infer(model, [x[None]])[0] for x in images])
    np.testing.assert_allclose(np.concatenate(outputs), reference, rtol=1e-5, atol=1e-6)


def test_user_model_is_untouched():
    model = conv_model()
    before = ([op.get_friendly_name() for op in model.get_ordered_ops()], len(model.outputs))
    engine = _engine(model, [(x, 0) for x in _images(2)], TopClass())
    engine.predict(stats_layout={"relu1": {"max": GraphMax(), "raw": np.max}, ("conv2", 0): {"min": np.min}})
    engine.predict()
    assert ([op.get_friendly_name() for op in model.get_ordered_ops()], len(model.outputs)) == before


def test_progress_bar_and_pot_statistics_helper(capsys):
    engine = _engine(conv_model(), [(x, 0) for x in _images(7)])
    engine.predict(print_progress=True)
    assert "7/7" in capsys.readouterr().err
    request = ov.Core().compile_model(conv_model(), "CPU").create_infer_request()
    image = _images(1)[0][None]
    engine._collect_statistics(request.infer([image]), {"output": {"max": np.max}}, [(3, None)])
    assert engine._accumulated_layer_stats["output"]["max"][0][0] == 3
    assert engine._accumulated_layer_stats["output"]["max"][0][1] == pytest.approx(
        reference_infer(conv_model(), [image], precision="bf16")[0].max())


def test_pot_style_overrides_of_process_batch_and_fill_input():
    class Simplified(IEEngine):
        """Bare images without annotations, as POT's SimplifiedEngine read them."""

        @staticmethod
        def _process_batch(batch):
            return None, batch, None

        def _fill_input(self, model, image_batch):
            return {"input": np.stack(image_batch)}

    images = _images(3)
    engine = Simplified(F32, ListLoader(images), TopClass())
    engine.set_model(CompressedModel(conv_model()))
    metrics, stats = engine.predict(stats_layout={"input": {"sum": np.sum}})
    assert metrics == {"accuracy": 0.0}
    np.testing.assert_allclose(stats["input"]["sum"], [x.sum() for x in images], rtol=1e-5)
    with pytest.raises(TypeError, match="use BatchSampler"):
        engine.predict(sampler=IndexSampler([0, 1]))


def test_collect_statistics_frees_the_statistics_models_and_keeps_the_plain_one():
    from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
    from pot_torch.statistics.spec import layout_specs

    model, images = conv_model(), _images(2)
    engine = _engine(model, [(x, None) for x in images])
    compiles = []
    original = engine._ie.compile_model
    engine._ie.compile_model = lambda *a, **k: compiles.append(1) or original(*a, **k)
    layout = {"relu1": {"max": make_reducer("max", False, inplace=True)}}
    stats = collect_statistics(engine, CompressedModel(model), [StatisticsRequest(layout_specs(layout))])[0]
    assert len(stats["relu1"]["max"]) == 2 and len(compiles) == 1
    assert len(engine._compiled) == 0  # the statistics model does not outlive the collection
    engine.predict()
    engine.release_statistics_models()
    engine.predict()
    assert len(compiles) == 2  # the plain inference model stays cached
    engine.predict(stats_layout=layout)
    engine.predict(stats_layout=layout)
    assert len(compiles) == 3  # predict itself still reuses a statistics model


class OutputMean(Metric):
    """The mean of output 0 over the data set: any change in any output changes it."""

    def __init__(self) -> None:
        super().__init__()
        self.sums: List[float] = []

    @property
    def value(self):
        return {"mean": self.sums[-1:]}

    @property
    def avg_value(self):
        return {"mean": float(np.mean(self.sums))}

    def update(self, output, target):
        self.sums.append(float(np.asarray(output[0], np.float64).mean()))

    def reset(self):
        self.sums = []

    def get_attributes(self):
        return {"mean": {"direction": "higher-better", "type": "mean"}}


def test_consecutive_evaluations_of_a_compressed_weight_model_are_identical():
    """Issue #11: ``pipeline.evaluate`` compiles for throughput each time; with two CPU streams the plugin
    computes the INT8 weight decompression wrongly in some compilations (tests/test_regressions.py), so
    evaluations differed. IEEngine compiles such models with one stream; every other model keeps its streams."""
    from pot_torch import Pipeline
    from tests.test_regressions import weight_compressed_pointwise_cnn

    data = np.random.default_rng(1).standard_normal((4, 256, 4, 4)).astype(np.float32)
    pipeline = Pipeline(IEEngine({"device": "CPU"}, ListLoader([(x, 0) for x in data]), OutputMean()))
    model = CompressedModel(weight_compressed_pointwise_cnn())
    compiles = []
    original = pipeline.engine._ie.compile_model
    pipeline.engine._ie.compile_model = lambda *a, **k: compiles.append(a[2].get("NUM_STREAMS")) or original(*a, **k)
    values = [pipeline.evaluate(model)["mean"] for _ in range(20)]
    assert len(set(values)) == 1, values
    assert compiles == [None] + [1] * 20  # found once, then compiled with one stream directly
    expected = [ov.Core().compile_model(model.get_model(), "CPU")(x[None])[0].astype(np.float64).mean() for x in data]
    assert values[0] == float(np.mean(expected))
    assert pipeline.engine._compiled[(None, None, True)][0].get_property("NUM_STREAMS") == 1
    pipeline.evaluate(CompressedModel(weight_compressed_pointwise_cnn(compressed=False)))
    assert pipeline.engine._compiled[(None, None, True)][0].get_property("NUM_STREAMS") > 1  # f32: untouched


def test_a_model_found_to_need_one_stream_compiles_every_statistics_layout_with_one_stream():
    """The constant layers that make the stream race possible belong to the model, not to the statistics outputs
    added to it: once one compilation found them, later statistics passes with other layouts (SmoothQuant's
    search rows after the main pass) compile with one stream at once instead of twice."""
    from tests.test_regressions import weight_compressed_pointwise_cnn

    data = np.random.default_rng(1).standard_normal((4, 256, 4, 4)).astype(np.float32)
    engine = IEEngine({"device": "CPU"}, ListLoader([(x, 0) for x in data]))
    model = CompressedModel(weight_compressed_pointwise_cnn())
    names = [op.get_friendly_name() for op in model.get_model().get_ordered_ops() if op.get_type_name() == "Relu"]
    compiles = []
    original = engine._ie.compile_model
    engine._ie.compile_model = lambda *a, **k: compiles.append(a[2].get("NUM_STREAMS")) or original(*a, **k)
    engine.set_model(model)
    for stat in ("max", "min"):
        engine.predict(stats_layout={names[0]: {stat: make_reducer(stat, False, inplace=True)}})
    assert compiles == [None, 1, 1]


def test_compile_avoiding_stream_race_uses_one_stream_only_where_the_race_can_hit():
    """Benchmarks and the engine share it: several streams stay for models without constant layers."""
    from pot_torch.engines.ie_engine import compile_avoiding_stream_race
    from tests.test_regressions import weight_compressed_pointwise_cnn

    core, hint = ov.Core(), {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2}
    compiled, forced = compile_avoiding_stream_race(core, weight_compressed_pointwise_cnn(layers=2), "CPU", hint)
    assert forced and compiled.get_property("NUM_STREAMS") == 1
    plain = weight_compressed_pointwise_cnn(layers=2, compressed=False)
    compiled, forced = compile_avoiding_stream_race(core, plain, "CPU", hint)
    assert not forced and compiled.get_property("NUM_STREAMS") == 2
