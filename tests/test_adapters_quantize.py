"""The one-call ``quantize`` helper on a small CNN trained in the test, and its ``module`` and ``save``."""
import numpy as np
import openvino as ov
import pytest
import torch
import torchmetrics

from pot_torch.adapters import OpenVINOModule, quantize
from pot_torch_showcase.synthetic import accuracy, shapes_dataset, small_cnn, train_classifier


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    train = shapes_dataset(2000, seed=1)
    validation = shapes_dataset(300, seed=2)
    torch.manual_seed(0)  # the initial weights, whatever other tests drew from torch's global generator before
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


# ------------------------------------------------------------------ small modules for the tests below (fast)
class _BoxHead(torch.nn.Module):
    """image [3,8,8] -> two convolutions -> 4 numbers (a detector's stand-in)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3)

    def forward(self, image):
        return self.conv2(torch.relu(self.conv1(image))).mean((2, 3))


class _Encoder(torch.nn.Module):
    """token ids -> embeddings -> two linear layers with a residual add -> mean over the sequence."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 16)
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        return (x + self.fc2(torch.relu(self.fc1(x)))).mean(1)


def _images(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 8, 8, generator=generator) for _ in range(count)]


def _fake_quantize_ranges(result):
    """The constant inputs of every FakeQuantize of the INT8 model, in graph order."""
    ranges = []
    for op in result.model.get_model().get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            ranges += [op.input_value(i).get_node().get_data().copy() for i in range(1, 5)]
    return ranges


def _same_ranges(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_dict_annotations_reach_the_metric_as_dicts():
    items = [(image, {"boxes": torch.rand(k % 3 + 1, 4), "labels": torch.arange(k % 3 + 1)})
             for k, image in enumerate(_images(6))]
    seen = []

    def boxes_per_image(preds, targets):
        seen.append(targets)
        return float(np.mean([len(target["labels"]) for target in targets]))

    result = quantize(_BoxHead(), calibration_dataset=items, metric=boxes_per_image, subset_size=6)
    assert result.fp32_metric == pytest.approx(2.0) and result.int8_metric == pytest.approx(2.0)
    assert all(isinstance(target, dict) and sorted(target) == ["boxes", "labels"]
               for targets in seen for target in targets)


def test_model_type_transformer_gets_its_own_default_preset():
    generator = torch.Generator().manual_seed(0)
    items = [torch.randint(0, 50, (6,), generator=generator) for _ in range(8)]

    def run(**kwargs):
        return _fake_quantize_ranges(quantize(_Encoder(), items, subset_size=8, model_type="transformer", **kwargs))

    default, mixed, performance = run(), run(preset="mixed"), run(preset="performance")
    assert _same_ranges(default, mixed) and not _same_ranges(default, performance)


def test_ignored_scope_given_as_one_string_is_one_name():
    items = _images(4)
    plain = quantize(_BoxHead(), items, subset_size=4)
    conv = next(op.get_friendly_name() for op in plain.model.get_model().get_ops()
                if op.get_type_name() == "Convolution")
    as_string = quantize(_BoxHead(), items, subset_size=4, ignored_scope=conv)
    as_list = quantize(_BoxHead(), items, subset_size=4, ignored_scope=[conv])
    assert _fake_quantize_ranges(as_string) and _same_ranges(_fake_quantize_ranges(as_string),
                                                             _fake_quantize_ranges(as_list))
    assert len(_fake_quantize_ranges(as_string)) < len(_fake_quantize_ranges(plain))


def test_empty_data_sets_are_refused():
    with pytest.raises(ValueError, match=r"validation_dataset is empty.*give at least one item"):
        quantize(_BoxHead(), _images(2), validation_dataset=[], metric=lambda p, t: 1.0, subset_size=2)
    with pytest.raises(ValueError, match=r"calibration_dataset is empty.*give at least one item"):
        quantize(_BoxHead(), [], example_input=torch.randn(1, 3, 8, 8))


def test_pil_images_without_to_tensor_are_explained():
    torchvision = pytest.importorskip("torchvision")
    images = torchvision.datasets.FakeData(size=2, image_size=(3, 8, 8), num_classes=3)
    with pytest.raises(TypeError, match=r"data set item 0: input is a PIL.Image.Image.*transforms.ToTensor\(\)"):
        quantize(_BoxHead(), images, subset_size=2)


def test_string_labels_are_explained():
    items = [(image, "cat") for image in _images(2)]
    with pytest.raises(TypeError, match=r"annotations are strings \('cat'\), not numbers.*class indices.*target_fn"):
        quantize(_BoxHead(), items, metric=lambda p, t: float((p.argmax(1) == t).float().mean()), subset_size=2)


def test_a_one_shot_iterable_is_read_once_and_item_0_is_used():
    items = _images(4)
    items[0] = items[0] * 10  # the widest activation ranges come from item 0
    from_list = _fake_quantize_ranges(quantize(_BoxHead(), items, subset_size=4))
    from_generator = _fake_quantize_ranges(quantize(_BoxHead(), (image for image in items), subset_size=4))
    assert _same_ranges(from_list, from_generator)


def test_conversion_arguments_with_an_openvino_model_are_refused():
    model = _BoxHead()
    converted = quantize(model, _images(2), subset_size=2).fp32_model.get_model()
    with pytest.raises(ValueError, match=r"input_shapes apply to converting a torch.nn.Module, but model is a Model"):
        quantize(converted, _images(2), input_shapes=[[-1, 3, 8, 8]])
