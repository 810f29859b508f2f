"""TorchMetric and FunctionMetric: torchmetrics objects and functions as POT metrics."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

torch = pytest.importorskip("torch")
torchmetrics = pytest.importorskip("torchmetrics")
torchvision = pytest.importorskip("torchvision")
from torch.utils.data import DataLoader as TorchBatchLoader  # noqa: E402
from torchmetrics import MetricCollection  # noqa: E402
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score  # noqa: E402
from torchmetrics.regression import MeanSquaredError  # noqa: E402
from torchvision import transforms  # noqa: E402

from model_builders import conv_model  # noqa: E402
from pot_torch.adapters.dataset import LoaderBatch, TorchDataLoader  # noqa: E402
from pot_torch.adapters.metric import FunctionMetric, TorchMetric  # noqa: E402
from pot_torch.engines.input_feeding import fill_inputs  # noqa: E402

# Four samples of three classes: predictions 0, 1, 2, 0 against labels 0, 1, 1, 2.
LOGITS = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], np.float32)
LABELS = [0, 1, 1, 2]


def test_accuracy_average_per_sample_values_and_direction():
    metric = TorchMetric(MulticlassAccuracy(num_classes=3, average="micro"), name="accuracy")
    metric.update([LOGITS], LABELS)
    assert metric.avg_value == {"accuracy": pytest.approx(0.5)}
    assert metric.value == {"accuracy": [1.0, 1.0, 0.0, 0.0]}
    assert metric.get_attributes() == {"accuracy": {"direction": "higher-better", "type": "accuracy"}}
    metric.update([LOGITS[:2]], LABELS[:2])
    assert metric.avg_value == {"accuracy": pytest.approx(4 / 6)}
    assert metric.value == {"accuracy": [1.0, 1.0]}
    metric.reset()
    assert metric.value == {}


def test_f1_average_matches_torchmetrics_and_per_sample_is_one_or_zero():
    metric = TorchMetric(MulticlassF1Score(num_classes=3))
    metric.update([LOGITS[:2]], LABELS[:2])
    metric.update([LOGITS[2:]], LABELS[2:])
    expected = MulticlassF1Score(num_classes=3)(torch.from_numpy(LOGITS), torch.tensor(LABELS))
    assert metric.avg_value == {"MulticlassF1Score": pytest.approx(float(expected))}
    assert metric.value == {"MulticlassF1Score": [0.0, 0.0]}
    assert metric.higher_better


def test_mean_squared_error_is_higher_worse_with_per_sample_errors():
    metric = TorchMetric(MeanSquaredError(), name="mse")
    metric.update(
        [np.array([[1.0], [2.0], [3.0]], np.float32)], [np.array([1.0]), np.array([2.5]), np.array([5.0])]
    )
    assert metric.avg_value == {"mse": pytest.approx((0.25 + 4.0) / 3)}
    assert metric.value == {"mse": [pytest.approx(0.0), pytest.approx(0.25), pytest.approx(4.0)]}
    assert metric.higher_better is False
    assert metric.get_attributes()["mse"]["direction"] == "higher-worse"


def test_collection_keeps_names_and_directions_and_override():
    collection = MetricCollection(
        {"acc": MulticlassAccuracy(num_classes=3, average="micro"), "mse": MeanSquaredError()}, prefix="val_"
    )
    metric = TorchMetric(collection, output_fn=lambda outputs: outputs[0].argmax(1).astype(np.float32))
    assert metric.get_attributes() == {
        "val_acc": {"direction": "higher-better", "type": "val_acc"},
        "val_mse": {"direction": "higher-worse", "type": "val_mse"},
    }
    overridden = TorchMetric(MulticlassAccuracy(num_classes=3), name="acc", higher_better={"acc": False})
    assert overridden.get_attributes()["acc"]["direction"] == "higher-worse"
    assert TorchMetric(MeanSquaredError(), higher_better=True).higher_better


def test_loader_batched_annotations_give_one_value_per_loader_batch():
    metric = TorchMetric(MulticlassAccuracy(num_classes=3, average="micro"), name="acc")
    metric.update([LOGITS], [LoaderBatch(LABELS[:2]), LoaderBatch(LABELS[2:])])
    assert metric.avg_value == {"acc": pytest.approx(0.5)}
    assert metric.value == {"acc": [1.0, 0.0]}


def test_users_own_protocol_class_and_output_index():
    class CountCorrect:
        def __init__(self):
            self.reset()

        def update(self, preds, target):
            self.correct += int((preds.argmax(1) == target).sum())

        def compute(self):
            return self.correct

        def reset(self):
            self.correct = 0

    metric = TorchMetric(CountCorrect(), name="correct", output_index=1)
    metric.update([np.zeros((4, 1), np.float32), LOGITS], LABELS)
    assert metric.avg_value == {"correct": 2.0}
    assert metric.value == {"correct": [1.0, 1.0, 0.0, 0.0]}


def test_function_metric_mean_and_per_sample():
    def accuracy(preds, target):
        return (preds.argmax(1) == target).float().mean()

    metric = FunctionMetric(accuracy, name="top1")
    metric.update([LOGITS], LABELS)
    metric.update([LOGITS[:2]], LABELS[:2])
    assert metric.avg_value == {"top1": pytest.approx(4 / 6)}
    assert metric.value == {"top1": [1.0, 1.0]}
    assert FunctionMetric(accuracy, "err", higher_better=False).get_attributes() == {
        "err": {"direction": "higher-worse", "type": "err"}
    }


def test_object_without_protocol_methods_is_a_type_error():
    class OnlyCompute:
        def compute(self):
            return 0.0

    with pytest.raises(
        TypeError,
        match=r"torchmetrics protocol: update\(preds, target\), compute\(\) and "
        r"reset\(\); OnlyCompute has no update, reset",
    ):
        TorchMetric(OnlyCompute())
    with pytest.raises(TypeError, match=r"FunctionMetric needs a function fn\(preds, target\)"):
        FunctionMetric(3, name="x")


def test_bad_outputs_and_results_are_clear_errors():
    metric = TorchMetric(MulticlassAccuracy(num_classes=3), name="acc")
    with pytest.raises(ValueError, match="predictions for 4 samples but 2 annotations"):
        metric.update([LOGITS], LABELS[:2])
    with pytest.raises(ValueError, match=r"output_index 2 does not pick one of the model's 1 outputs"):
        TorchMetric(MulticlassAccuracy(num_classes=3), output_index=2).update([LOGITS], LABELS)
    per_class = TorchMetric(MulticlassAccuracy(num_classes=3, average=None), name="acc")
    per_class.update([LOGITS], LABELS)
    with pytest.raises(ValueError, match=r"metric 'acc' computed \[3\], not one number"):
        per_class.avg_value  # noqa: B018
    with pytest.raises(ValueError, match="cannot stack the batch's annotations"):
        metric.update([LOGITS[:2]], [np.zeros(2), np.zeros(3)])


def _fake_data(size: int):
    return torchvision.datasets.FakeData(
        size=size, image_size=(3, 16, 16), num_classes=10, transform=transforms.ToTensor(), random_offset=11
    )


def test_metric_over_real_openvino_inference_of_adapter_items():
    """Loader items -> OpenVINO -> TorchMetric equals torchmetrics on the same outputs, per sample too."""
    model = conv_model(size=16)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    dataset = _fake_data(8)
    loader = TorchDataLoader(TorchBatchLoader(dataset, batch_size=4), model=conv_model(size=16, batch=4))
    single = TorchDataLoader(dataset, model=model)
    metric = TorchMetric(MulticlassAccuracy(num_classes=10, average="micro"), name="acc")
    outputs, labels = [], []
    for index in range(len(single)):
        data, annotation = single[index]
        output = compiled(fill_inputs(compiled.inputs, [data]))[0]  # items are samples: the engine batches them
        metric.update([output], [annotation])
        assert metric.value["acc"] == [float(output.argmax() == annotation)]
        outputs.append(output)
        labels.append(annotation)
    expected = float(
        MulticlassAccuracy(num_classes=10, average="micro")(
            torch.from_numpy(np.concatenate(outputs)), torch.tensor(labels)
        )
    )
    assert metric.avg_value["acc"] == pytest.approx(expected)
    batched = ov.Core().compile_model(
        conv_model(size=16, batch=4), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    metric.reset()
    for index in range(len(loader)):
        data, annotation = loader[index]
        metric.update([batched(data)[0]], [annotation])
    assert metric.avg_value["acc"] == pytest.approx(expected)


def test_ie_engine_predict_with_adapters():
    """Integration with IEEngine (skipped until pot_torch.engines.ie_engine exists)."""
    ie_engine = pytest.importorskip("pot_torch.engines.ie_engine")
    from pot_torch import CompressedModel

    model = conv_model(size=16)
    dataset = _fake_data(6)
    metric = TorchMetric(MulticlassAccuracy(num_classes=10, average="micro"), name="acc")
    engine = ie_engine.IEEngine(
        config={"device": "CPU", "inference_precision": "f32"},
        data_loader=TorchDataLoader(dataset, model=model),
        metric=metric,
    )
    engine.set_model(CompressedModel(model))
    (per_sample, averages), stats = engine.predict(metric_per_sample=True)
    assert stats is None
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    correct = [float(compiled(dataset[i][0].numpy()[None])[0].argmax() == dataset[i][1]) for i in range(6)]
    assert averages["acc"] == pytest.approx(np.mean(correct))
    assert [entry["result"] for entry in sorted(per_sample, key=lambda e: e["sample_id"])] == correct
