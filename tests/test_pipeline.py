"""Pipeline: algorithm order, statistics grouping, evaluate, and create_pipeline errors."""
import numpy as np
import openvino as ov
import pytest

from model_builders import conv_model, reference_infer
from pot_torch import CompressedModel, DataLoader, IEEngine, Metric, Pipeline, create_pipeline
from pot_torch.algorithms import Algorithm
from pot_torch.statistics.collector import StatisticsRequest
from pot_torch.statistics.spec import layout_specs


class Images(DataLoader):
    def __init__(self, n=6):
        super().__init__()
        rng = np.random.default_rng(0)
        self.images = rng.standard_normal((n, 1, 3, 16, 16)).astype(np.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], index % 10


class MeanLogit(Metric):
    def reset(self):
        self.values = []

    def update(self, output, target):
        self.values.append(float(np.mean(output[0])))

    @property
    def avg_value(self):
        return {"mean_logit": float(np.mean(self.values))}


class Recorder(Algorithm):
    """Asks for the max of one op's output and records what it received."""

    def __init__(self, config, engine, node="relu1", changes=False):
        super().__init__(config, engine)
        self.node, self.change_original_model, self.received = node, changes, None

    def statistics_requests(self, model):
        return [StatisticsRequest(layout_specs({self.node: {"max": lambda x: np.max(x)}}), subset_indices=[0, 1])]

    def run(self, model, statistics=None):
        self.received = statistics
        return model


class CountingEngine(IEEngine):
    calls = 0

    def predict(self, *args, **kwargs):
        CountingEngine.calls += 1
        return super().predict(*args, **kwargs)


def test_group_statistics_collected_in_one_pass_and_split_per_algorithm():
    engine = CountingEngine({"device": "CPU"}, Images())
    first, second = Recorder({}, engine, "relu1"), Recorder({}, engine, "relu2")
    pipeline = Pipeline(engine)
    pipeline.add_algo(first)
    pipeline.add_algo(second)
    CountingEngine.calls = 0
    model = CompressedModel(conv_model())
    pipeline.run(model)
    assert CountingEngine.calls == 1
    assert list(first.received[0]) == ["relu1"] and list(second.received[0]) == ["relu2"]
    assert len(first.received[0]["relu1"]["max"]) == 2  # one value per batch of the subset


def test_algorithm_changing_the_model_closes_its_group():
    engine = CountingEngine({"device": "CPU"}, Images())
    pipeline = Pipeline(engine)
    pipeline.add_algo(Recorder({}, engine, "relu1", changes=True))
    pipeline.add_algo(Recorder({}, engine, "relu2"))
    CountingEngine.calls = 0
    pipeline.run(CompressedModel(conv_model()))
    assert CountingEngine.calls == 2


def test_run_never_changes_the_callers_model(tmp_path):
    ov_model = conv_model()
    model = CompressedModel(ov_model)
    engine = IEEngine({"device": "CPU"}, Images())
    result = create_pipeline([{"name": "DefaultQuantization", "params": {"stat_subset_size": 4}}], engine).run(model)
    assert result is not model and result.get_model() is not ov_model
    assert not any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    assert any(op.get_type_name() == "FakeQuantize" for op in result.get_model().get_ops())


def test_evaluate_matches_plain_openvino_inference():
    loader = Images()
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, loader, MeanLogit())
    metrics = create_pipeline([], engine).evaluate(CompressedModel(conv_model()))
    expected = np.mean([np.mean(reference_infer(conv_model(), [loader[i][0]])[0]) for i in range(len(loader))])
    assert metrics["mean_logit"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_on_a_subset():
    loader = Images()
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, loader, MeanLogit())
    metrics = Pipeline(engine).evaluate(CompressedModel(conv_model()), subset_indices=[2])
    assert metrics["mean_logit"] == pytest.approx(float(np.mean(reference_infer(conv_model(), [loader[2][0]])[0])),
                                                  rel=1e-5)


@pytest.mark.parametrize("indices, message", [
    ("012", "Pipeline.evaluate: subset_indices must be a list of data set indices such as [0, 5, 9], got '012'"),
    ([0, 6], "Pipeline.evaluate: subset_indices holds 6, which is not an index of the data set (6 items: "
             "0 to 5)"),
    ([0, 1.5], "Pipeline.evaluate: subset_indices holds 1.5, which is not an index of the data set (6 items: "
               "0 to 5)"),
])
def test_evaluate_checks_subset_indices(indices, message):
    engine = IEEngine({"device": "CPU"}, Images(), MeanLogit())
    with pytest.raises(ValueError) as raised:
        Pipeline(engine).evaluate(CompressedModel(conv_model()), subset_indices=indices)
    assert message in str(raised.value)


def test_evaluate_without_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="Pipeline.evaluate needs a metric"):
        Pipeline(IEEngine({"device": "CPU"}, Images())).evaluate(CompressedModel(conv_model()))


def test_run_rejects_a_bare_openvino_model():
    with pytest.raises(TypeError, match="Pipeline.run expects a CompressedModel"):
        Pipeline(IEEngine({"device": "CPU"}, Images())).run(conv_model())


def test_create_pipeline_unknown_name_lists_registered():
    with pytest.raises(ValueError, match=r"Unknown algorithm 'DefaultQuantisation' \(did you mean "
                                         r"'DefaultQuantization'\?\)\. Registered algorithms: (\w+, )*"
                                         r"AccuracyAwareQuantization, ActivationChannelAlignment"):
        create_pipeline([{"name": "DefaultQuantisation", "params": {}}], IEEngine({}, Images()))


def test_create_pipeline_config_shape_errors():
    with pytest.raises(ValueError, match="must be a dict with a 'name'"):
        create_pipeline([{"params": {}}], IEEngine({}, Images()))


@pytest.mark.parametrize("config, error, message", [
    ("DefaultQuantization", TypeError,
     "create_pipeline takes a list of algorithm configs such as [{'name': 'DefaultQuantization', 'params': {...}}], "
     "got the string 'DefaultQuantization'; write create_pipeline([{'name': 'DefaultQuantization', 'params': "
     "{...}}], engine)"),
    (7, TypeError, "create_pipeline takes a list of algorithm configs such as [{'name': 'DefaultQuantization', "
                   "'params': {...}}], got 7"),
    ([{"name": "DefaultQuantization", "params": ["preset", "mixed"]}], TypeError,
     "'params' of algorithm config 0 (DefaultQuantization) must be a dict of parameters, got ['preset', 'mixed']"),
    ([{"name": "DefaultQuantization", "parmas": {"preset": "mixed"}}], ValueError,
     "algorithm config 0 (DefaultQuantization) has unknown key(s) ['parmas']; valid keys: name, params"),
])
def test_create_pipeline_wrong_config_shapes_say_how_to_write_it(config, error, message):
    with pytest.raises(error) as raised:
        create_pipeline(config, IEEngine({}, Images()))
    assert message in str(raised.value)


def test_create_pipeline_accepts_a_single_dict_and_registry_prefix():
    pipeline = create_pipeline({"name": "QuantizationAlgos.MinMaxQuantization"}, IEEngine({}, Images()))
    assert [a.name for a in pipeline.algorithms] == ["MinMaxQuantization"]


def test_ignored_scope_per_member_on_a_single_model_is_refused():
    pipeline = create_pipeline([{"name": "MinMaxQuantization",
                                 "params": {"stat_subset_size": 2, "ignored": {"conv_model": {"scope": ["conv1"]}}}}],
                               IEEngine({"device": "CPU"}, Images()))
    with pytest.raises(ValueError, match=r"'ignored' is given per cascade member \(\['conv_model'\]\), but the "
                                         r"model is a single model"):
        pipeline.run(CompressedModel(conv_model()))


def test_ignored_scope_naming_a_member_the_cascade_lacks_is_refused():
    from pot_torch.algorithms.quantization.minmax import MinMaxQuantization

    cascade = CompressedModel(models=[{"name": "pnet", "model": conv_model(seed=1)},
                                      {"name": "rnet", "model": conv_model(seed=2)}])
    engine = IEEngine({"device": "CPU"}, Images())
    plans = MinMaxQuantization({"ignored": {"pnet": {"scope": ["conv1"]}}}, engine).plan(cascade)
    assert [any(q.site.consumer == "conv1" for q in plan.weights) for plan in plans] == [False, True]
    with pytest.raises(ValueError, match=r"'ignored' names the model member\(s\) \['pnett'\], which the cascade "
                                         r"does not have; its members: \['pnet', 'rnet'\] \(close: pnet\)"):
        MinMaxQuantization({"ignored": {"pnett": {"scope": ["conv1"]}}}, engine).plan(cascade)
