"""The one-call ``quantize`` helper on a small CNN trained in the test, and its ``module`` and ``save``."""
import numpy as np
import openvino as ov
import pytest
import torch
import torchmetrics

from pot_torch.adapters import OpenVINOModule, quantize
from pot_torch.adapters.synthetic import accuracy, shapes_dataset, small_cnn, train_classifier


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    train = shapes_dataset(2000, seed=1)
    validation = shapes_dataset(300, seed=2)
    module = train_classifier(small_cnn(16), train, steps=200, batch=64, seed=0)
    return module, train, validation


@pytest.fixture(scope="module")
def result(trained):
    module, train, validation = trained
    metric = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro")
    return quantize(module, calibration_dataset=train, validation_dataset=validation, metric=metric,
                    subset_size=200, maximal_drop=0.01, seed=0)


def test_int8_accuracy_within_one_point_of_fp32(trained, result):
    module, _, validation = trained
    assert result.fp32_metric == pytest.approx(accuracy(module, validation), abs=0.02)  # bf16 vs torch f32
    assert result.fp32_metric - result.int8_metric <= 0.01
    assert result.metric_name == "MulticlassAccuracy"
    assert result.quantization_time > 0
    fq = [op for op in result.model.get_model().get_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fq) >= 10


def test_module_matches_compiled_int8_ir_on_every_sample(trained, result, tmp_path):
    _, _, validation = trained
    paths = result.save(tmp_path / "int8")
    compiled = ov.Core().compile_model(paths[0]["model"], "CPU")
    images, _ = validation.tensors
    with torch.no_grad():
        module_out = torch.cat([result.module(images[i:i + 1]) for i in range(len(images))]).numpy()
    ir_out = np.concatenate([compiled(images[i:i + 1].numpy())[0] for i in range(len(images))])
    assert np.array_equal(module_out.argmax(1), ir_out.argmax(1))
    np.testing.assert_allclose(module_out, ir_out, atol=1e-4 * np.abs(ir_out).max())


def test_module_takes_any_batch_and_works_in_a_torch_loop(trained, result):
    _, _, validation = trained
    loader = torch.utils.data.DataLoader(validation, batch_size=32)
    hits = 0
    for images, labels in loader:
        hits += int((result.module(images).argmax(1) == labels).sum())
    assert hits / len(validation) == pytest.approx(result.int8_metric, abs=0.01)
    assert isinstance(result.module, torch.nn.Module) and isinstance(result.module, OpenVINOModule)


def test_save_compresses_weights_and_reloads(result, tmp_path):
    compressed = result.save(tmp_path / "model_int8.xml")
    plain = result.save(tmp_path / "plain", compress_weights=False)
    assert compressed[0]["model"].endswith("model_int8.xml")
    size = lambda p: __import__("os").path.getsize(p)
    assert size(compressed[0]["weights"]) <= 0.3 * size(plain[0]["weights"])
    ov.Core().read_model(compressed[0]["model"])


def test_default_quantization_without_metric(trained):
    module, train, _ = trained
    result = quantize(module, calibration_dataset=train, subset_size=50)
    assert result.fp32_metric is None and result.int8_metric is None
    assert result.reverted_layers == []
    assert any(op.get_type_name() == "FakeQuantize" for op in result.model.get_model().get_ops())


def test_maximal_drop_needs_a_metric(trained):
    module, train, _ = trained
    with pytest.raises(ValueError, match="maximal_drop needs a metric"):
        quantize(module, calibration_dataset=train, maximal_drop=0.01)


def test_metric_without_protocol_is_refused(trained):
    module, train, _ = trained
    with pytest.raises(TypeError, match="torchmetrics protocol"):
        quantize(module, calibration_dataset=train, metric=object())


def test_user_module_untouched(trained):
    module, train, _ = trained
    before = {k: v.clone() for k, v in module.state_dict().items()}
    quantize(module, calibration_dataset=train, subset_size=20)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not module.training
