"""The abstract POT API classes: DataLoader configs, Metric compatibility rules, Engine contract."""
import numpy as np
import pytest

from pot_torch import DataLoader, Engine, Metric
from pot_torch.utils.config import AttrDict


class ArrayLoader(DataLoader):
    def __init__(self, config=None):
        super().__init__(config)
        self.items = [np.full((3,), i, np.float32) for i in range(4)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index], index


def test_data_loader_dict_config_has_attribute_access():
    loader = ArrayLoader({"data_source": "/data", "nested": {"size": 224}, "lists": [{"a": 1}]})
    assert loader.config.data_source == "/data"
    assert loader.config.nested.size == 224
    assert loader.config.lists[0].a == 1
    assert loader.config["data_source"] == "/data"
    assert loader.config.get("missing", 5) == 5


def test_data_loader_missing_config_key_reads_empty_as_in_addict():
    loader = ArrayLoader({"data_source": "/data"})
    assert not loader.config.annotation_file  # POT samples test optional keys this way
    assert loader.config.annotation_file == {}
    assert "annotation_file" not in loader.config
    assert not loader.config.preprocessing.resize  # chains work too


def test_data_loader_without_config_gets_empty_attr_dict():
    loader = ArrayLoader()
    assert isinstance(loader.config, AttrDict) and loader.config == {}
    assert len(loader) == 4 and loader[2][1] == 2


def test_data_loader_is_abstract():
    with pytest.raises(TypeError):
        DataLoader()  # type: ignore[abstract]


class Accuracy(Metric):
    def __init__(self):
        super().__init__()

    def reset(self):
        self.hits = []

    def update(self, output, target):
        predictions = np.argmax(output[0], axis=1)
        self.hits.extend((predictions == np.asarray(target)).astype(float).tolist())
        self._last = (predictions == np.asarray(target)).astype(float).tolist()

    @property
    def value(self):
        return {"accuracy": self._last}

    @property
    def avg_value(self):
        return {"accuracy": float(np.mean(self.hits))}

    def get_attributes(self):
        return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}


class AvgOnlyLoss(Metric):
    """A metric defining only avg_value, update and reset, as POT's classification sample did."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, output, target):
        self.total += float(np.sum((output[0] - np.asarray(target)) ** 2))
        self.count += len(target)

    @property
    def avg_value(self):
        return {"mse": self.total / self.count}

    @property
    def higher_better(self):
        return False


class LegacyAttributes(AvgOnlyLoss):
    """Older POT metrics defined an ``attributes`` property instead of ``get_attributes``."""

    @property
    def attributes(self):
        return {"mse": {"direction": "higher-worse", "type": "mse"}}


def test_metric_call_is_update_and_init_resets():
    metric = Accuracy()
    assert metric.hits == []
    metric([np.array([[0.1, 0.9], [0.8, 0.2]])], [1, 1])
    assert metric.avg_value == {"accuracy": 0.5}
    assert metric.value == {"accuracy": [1.0, 0.0]}
    assert metric.higher_better is True


def test_metric_with_only_avg_value_gets_attributes_from_higher_better():
    metric = AvgOnlyLoss()
    metric.update([np.array([1.0, 2.0])], [1.0, 0.0])
    assert metric.get_attributes() == {"mse": {"direction": "higher-worse", "type": "mse"}}


def test_metric_attributes_before_any_update_use_class_name():
    assert AvgOnlyLoss().get_attributes() == {"AvgOnlyLoss": {"direction": "higher-worse", "type": "AvgOnlyLoss"}}


def test_legacy_attributes_property_is_used():
    assert LegacyAttributes().get_attributes() == {"mse": {"direction": "higher-worse", "type": "mse"}}


def test_metric_value_missing_explains_per_sample_need():
    metric = AvgOnlyLoss()
    with pytest.raises(NotImplementedError, match="AvgOnlyLoss does not implement the 'value' property"):
        _ = metric.value


def test_engine_is_abstract_and_keeps_config_loader_metric():
    with pytest.raises(TypeError):
        Engine({})  # type: ignore[abstract]

    class NullEngine(Engine):
        def set_model(self, model):
            self.model = model

        def predict(self, stats_layout=None, sampler=None, stat_aliases=None, metric_per_sample=False,
                    print_progress=False):
            return None, None

    loader, metric = ArrayLoader(), Accuracy()
    engine = NullEngine({"device": "CPU"}, loader, metric)
    assert engine.config.device == "CPU"
    assert engine.data_loader is loader and engine.metric is metric
    assert engine.get_metric_attributes() == {"accuracy": {"direction": "higher-better", "type": "accuracy"}}
    assert NullEngine({}).get_metric_attributes() == {}


class FloatAverage(Accuracy):
    """avg_value a bare float instead of {name: value} (issue #11)."""

    @property
    def avg_value(self):
        return 0.5


class ListPerSample(Accuracy):
    """value a bare list instead of {name: [per-sample values]} (issue #11)."""

    @property
    def value(self):
        return list(self._last)


class ScalarPerSample(Accuracy):
    """value {name: scalar} instead of {name: [per-sample values]}."""

    @property
    def value(self):
        return {"accuracy": 1.0}


def _predict(metric, per_sample=False):
    import openvino as ov
    import openvino.opset13 as ops

    from pot_torch import CompressedModel, IEEngine

    data = ops.parameter([1, 3], np.float32, name="x")
    engine = IEEngine({"device": "CPU"}, ArrayLoader(), metric)
    engine.set_model(CompressedModel(ov.Model([ops.result(ops.relu(data))], [data], "relu")))
    return engine.predict(metric_per_sample=per_sample)


@pytest.mark.parametrize("metric, per_sample, message", [
    (FloatAverage(), False, "FloatAverage.avg_value returned 0.5; expected a dict {metric name: value over the "
                            "samples seen since reset}, e.g. {'accuracy': 0.72}"),
    (ListPerSample(), True, "ListPerSample.value returned [1.0]; expected a dict {metric name: [one value per "
                            "sample of the last update]}, e.g. {'accuracy': [1.0, 0.0]}"),
    (ScalarPerSample(), True, "ScalarPerSample.value['accuracy'] is 1.0 for a batch of 1 sample(s); expected a "
                              "list of one value per sample of the last update"),
])
def test_metric_values_of_the_wrong_shape_are_named(metric, per_sample, message):
    with pytest.raises(TypeError) as raised:
        _predict(metric, per_sample)
    assert message in str(raised.value)


def test_well_shaped_metric_values_pass_through_predict():
    metrics, _ = _predict(Accuracy(), per_sample=True)
    records, overall = metrics
    assert len(records) == 4 and set(overall) == {"accuracy"}
