"""RayEngine on a local Ray cluster (2 CPUs): the same results as IEEngine, sharded over actors.

DefaultQuantization gives a byte-identical IR, AccuracyAwareQuantization the same reverted layers and metric,
``predict`` the same metrics, per-sample records and statistics (exact merges and gathered values), and an
actor that dies mid-predict has its chunks run again elsewhere with the same result.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from classification_metrics import Accuracy
from model_builders import conv_model, outlier_classifier
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.engines.ir_bytes import model_to_bytes
from pot_torch.samplers import BatchSampler, IndexSampler
from pot_torch.statistics.online import OnlineAccumulator, stream_into
from pot_torch.statistics.reducers import make_reducer

TESTS = pathlib.Path(__file__).resolve().parent


class ArrayLoader(DataLoader):
    """Items ``(inputs[i], labels[i])``; reading item ``die_at`` ends the process, as a crashing actor would:
    once when a ``marker`` file is given (it records the process id), else every time."""

    def __init__(self, inputs, labels, die_at=None, marker=None):
        super().__init__()
        self.inputs, self.labels, self.die_at, self.marker = inputs, labels, die_at, marker

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        if index == self.die_at and not (self.marker and os.path.exists(self.marker)):
            if self.marker:
                pathlib.Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return self.inputs[index], int(self.labels[index])


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 ** 2,
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}}, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.standard_normal((150, 3, 16, 16)).astype(np.float32), rng.integers(0, 10, 150)


def _ray_engine(loader, metric=None, **config):
    from pot_torch.engines import RayEngine
    return RayEngine({"chunk_size": 16, **config}, loader, metric)


def _quantize(engine, algorithm, params):
    pipeline = create_pipeline([{"name": algorithm, "params": params}], engine)
    return pipeline, pipeline.run(CompressedModel(conv_model() if algorithm == "DefaultQuantization"
                                                  else outlier_classifier()[0]))


def test_default_quantization_gives_a_byte_identical_ir(ray_cluster, images):
    loader = ArrayLoader(*images)
    params = {"preset": "performance", "stat_subset_size": 150}
    _, expected = _quantize(IEEngine({}, loader), "DefaultQuantization", params)
    with _ray_engine(loader) as engine:
        _, quantized = _quantize(engine, "DefaultQuantization", params)
    assert model_to_bytes(quantized.get_model()).digest == model_to_bytes(expected.get_model()).digest


def _layout():
    """Online min/max/mean (merged from partial aggregates), a quantile and a plain function (gathered)."""
    return {
        "conv1": {"min": stream_into(make_reducer("min", True, inplace=True), "min"),
                  "mean": stream_into(make_reducer("mean", True), "mean"),
                  "q": make_reducer("quantile", False, quantile=0.9)},
        ("relu2", 0): {"max": stream_into(make_reducer("max", False), "max"),
                       "shape": lambda activation: np.asarray(activation.shape)},
    }


def test_predict_matches_ie_engine_exactly(ray_cluster, images, caplog):
    loader = ArrayLoader(*images)
    model = CompressedModel(conv_model(batch=2))
    sampler_args = {"batch_size": 2, "subset_indices": list(range(149, 0, -3))}  # 50 samples, reversed
    results = []
    for engine in (IEEngine({}, loader, Accuracy()), _ray_engine(loader, Accuracy())):
        engine.set_model(model)
        with caplog.at_level("INFO", logger="pot_torch.engines.ray_engine"):
            results.append(engine.predict(_layout(), BatchSampler(loader, **sampler_args), metric_per_sample=True))
        if hasattr(engine, "close"):
            assert len(engine.actors) == 2
            engine.close()
    (expected_metrics, expected_stats), (metrics, stats) = results
    assert metrics == expected_metrics  # per-sample records (sorted) and the overall value
    assert stats.keys() == expected_stats.keys()
    for node_key, node_stats in expected_stats.items():
        assert stats[node_key].keys() == node_stats.keys()
        for stat_name, values in node_stats.items():
            assert len(stats[node_key][stat_name]) == len(values), (node_key, stat_name)
            for value, expected in zip(stats[node_key][stat_name], values):
                np.testing.assert_array_equal(value, expected, err_msg=f"{node_key} {stat_name}")
    assert len(stats["conv1"]["min"]) == 1 and len(stats["conv1"]["q"]) == 25  # merged vs gathered per batch
    assert "2 statistic(s) (e.g. 'q' of 'conv1') have no exact merge of partial results" in caplog.text


def test_accuracy_aware_quantization_reverts_the_same_layers(ray_cluster, monkeypatch):
    from pot_torch.engines import RayEngine
    _, inputs, labels = outlier_classifier()
    loader = ArrayLoader(inputs, labels)
    params = {"preset": "performance", "stat_subset_size": 100, "maximal_drop": 2.0}
    expected, _ = _quantize(IEEngine({}, loader, Accuracy()), "AccuracyAwareQuantization", params)
    ranked = []
    original = RayEngine.predict_models

    def predict_models(self, models, sampler, metric_per_sample=False):
        for result in original(self, models, sampler, metric_per_sample):
            ranked.append(result)
            yield result

    monkeypatch.setattr(RayEngine, "predict_models", predict_models)
    with _ray_engine(loader, Accuracy()) as engine:
        pipeline, _ = _quantize(engine, "AccuracyAwareQuantization", params)
    algorithm, reference = pipeline.algorithms[0], expected.algorithms[0]
    assert algorithm.reverted_layers == reference.reverted_layers == ["fc1"]
    assert algorithm.final_metric == pytest.approx(reference.final_metric, abs=1e-6)
    assert algorithm.fp_metric == pytest.approx(reference.fp_metric, abs=1e-6)
    assert len(ranked) >= 2  # the ranking went through predict_models: candidates evaluated on the actors at once


def test_predict_models_evaluates_models_at_once_on_different_actors(ray_cluster, images, caplog):
    loader = ArrayLoader(*images)
    models = [CompressedModel(conv_model(seed)) for seed in range(4)]
    sampler = BatchSampler(loader, subset_indices=range(40))
    engine = IEEngine({}, loader, Accuracy())
    expected = []
    for model in models:
        engine.set_model(model)
        expected.append(engine.predict(sampler=sampler, metric_per_sample=True)[0])
    with _ray_engine(loader, Accuracy()) as engine, caplog.at_level("DEBUG", logger="pot_torch.engines.ray_pool"):
        results = [metrics for metrics, _ in engine.predict_models(models, sampler, metric_per_sample=True)]
    assert results == expected
    loads = [record.getMessage() for record in caplog.records if "loads model" in record.getMessage()]
    assert loads[0].startswith("RayEngine: actor 0") and loads[0].endswith("(job 0)")
    assert loads[1].startswith("RayEngine: actor 1") and loads[1].endswith("(job 1)")  # the next model, not job 0


def _negated(outputs, _metadata):
    return [-value for value in outputs.values()]


def test_a_postprocess_output_override_runs_on_the_actors(ray_cluster, images):
    from pot_torch.engines import RayEngine

    class NegatingIE(IEEngine):
        postprocess_output = staticmethod(_negated)

    class NegatingRay(RayEngine):
        postprocess_output = staticmethod(_negated)

    loader = ArrayLoader(*images)
    results = []
    for engine in (IEEngine({}, loader, Accuracy()), NegatingIE({}, loader, Accuracy()),
                   NegatingRay({"chunk_size": 16}, loader, Accuracy())):
        engine.set_model(CompressedModel(conv_model()))
        results.append(engine.predict(sampler=BatchSampler(loader, subset_indices=range(40)), metric_per_sample=True))
        if isinstance(engine, RayEngine):
            engine.close()
    plain, negated, on_actors = results
    assert on_actors == negated != plain


def test_hooks_the_actors_cannot_run_are_refused_not_ignored(images):
    """The actors run IEEngine's own _fill_input/_process_batch: a RayEngine subclass overriding one is refused
    before Ray starts (it was silently ignored)."""
    from pot_torch.engines import RayEngine

    class OwnFeeding(RayEngine):
        def _fill_input(self, model, image_batch):
            return super()._fill_input(model, image_batch)

    with pytest.raises(TypeError, match="OwnFeeding overrides _fill_input, which RayEngine's actors do not run"):
        OwnFeeding({}, ArrayLoader(*images), Accuracy())


def test_a_dead_actor_s_chunks_run_again_with_the_same_result(ray_cluster, images, tmp_path):
    inputs, labels = images
    model = CompressedModel(conv_model())
    layout = _layout()
    engine = IEEngine({}, ArrayLoader(inputs, labels), Accuracy())
    engine.set_model(model)
    expected = engine.predict(layout, metric_per_sample=True)
    marker = tmp_path / "died"
    loader = ArrayLoader(inputs, labels, die_at=70, marker=str(marker))
    with _ray_engine(loader, Accuracy()) as engine:
        engine.set_model(model)
        pids = set(ray_cluster.get([actor.ping.remote() for actor in engine.actors]))
        metrics, stats = engine.predict(layout, metric_per_sample=True)
        survivors = set(ray_cluster.get([actor.ping.remote() for actor in engine.actors]))
    assert int(marker.read_text()) in pids - survivors  # an actor died mid-predict and was replaced
    assert metrics == expected[0]
    for node_key, node_stats in expected[1].items():
        for stat_name, values in node_stats.items():
            for value, reference in zip(stats[node_key][stat_name], values):
                np.testing.assert_array_equal(value, reference)


def test_actors_that_keep_dying_end_in_an_error_naming_the_limit(ray_cluster, images):
    inputs, labels = images
    loader = ArrayLoader(inputs[:20], labels[:20], die_at=5)
    with _ray_engine(loader, max_actor_restarts=1) as engine:
        engine.set_model(CompressedModel(conv_model()))
        with pytest.raises(RuntimeError, match="died and no restarts are left"):
            engine.predict()


def test_a_chunk_error_is_raised_as_its_own_type(ray_cluster, images):
    inputs, labels = images
    loader = ArrayLoader(inputs[:, :, :8], labels)  # items too small for the model's input
    with _ray_engine(loader, Accuracy()) as engine:
        engine.set_model(CompressedModel(conv_model()))
        with pytest.raises(ValueError, match=r"data set item \d+"):
            engine.predict()


def test_bad_samplers_and_config_are_named(ray_cluster, images):
    loader = ArrayLoader(*images)
    with pytest.raises(ValueError, match="'chunk_size' must be a positive integer"):
        _ray_engine(loader, chunk_size=0)
    with pytest.raises(ValueError, match="3 actor\\(s\\) x cpus_per_actor 1 need 3 CPUs, the Ray cluster has 2"):
        _ray_engine(loader, num_actors=3).actors
    with _ray_engine(loader) as engine:
        engine.set_model(CompressedModel(conv_model()))
        with pytest.raises(TypeError, match="BatchSampler"):
            engine.predict(sampler=IndexSampler([0, 1]))
        with pytest.raises(ValueError, match="engine's own data loader"):
            engine.predict(sampler=BatchSampler(ArrayLoader(*images)))


def test_without_ray_the_error_names_the_extra():
    script = ("import sys; sys.modules['ray'] = None\n"  # import ray raises ImportError from here on
              "import pot_torch\nfrom pot_torch.engines import IEEngine, RayEngine\n"
              "try:\n    RayEngine({})\nexcept ImportError as error:\n    print(error)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "RayEngine needs Ray" in run.stdout and "pip install pot_torch[ray]" in run.stdout


def test_partial_online_aggregates_merge_exactly():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]
    for aggregator in ("min", "max", "mean"):
        whole, first, second = (OnlineAccumulator(aggregator) for _ in range(3))
        for number, batch in enumerate(batches):
            whole.add(batch)
            (first if number < 3 else second).add(batch)
        first.merge(OnlineAccumulator(aggregator))  # an empty part changes nothing
        first.merge(second)
        np.testing.assert_array_equal(first.result(), whole.result())
        assert first.count == whole.count == 24
    with pytest.raises(ValueError, match="cannot merge a running 'max' into a running 'min'"):
        OnlineAccumulator("min").merge(OnlineAccumulator("max"))
