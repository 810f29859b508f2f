"""convert_torch_model: torch modules to CompressedModel through openvino.convert_model."""

from __future__ import annotations

import logging

import numpy as np
import openvino as ov
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch.utils.data import DataLoader as TorchBatchLoader  # noqa: E402
from torchvision import transforms  # noqa: E402

from pot_torch import CompressedModel  # noqa: E402
from pot_torch.adapters.dataset import TorchDataLoader  # noqa: E402
from pot_torch.adapters.model import ModelConversionError, convert_torch_model  # noqa: E402


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, image):
        features = torch.relu(self.bn(self.conv(image))).mean(dim=(2, 3))
        return self.fc(self.drop(features))


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, tokens, mask):
        return self.proj(tokens) * mask


class UsesHistc(torch.nn.Module):
    """torch.histc has no OpenVINO conversion rule (checked with openvino 2026.4)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.histc(self.fc(x), bins=4)


class ReturnsText(torch.nn.Module):
    def forward(self, x):
        return "not a tensor"


def _infer(model: CompressedModel, inputs) -> np.ndarray:
    compiled = ov.Core().compile_model(model.get_model(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(inputs)[0]


def _seeded(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return module


def test_cnn_converts_with_static_shape_and_matches_torch():
    module = _seeded(SmallCNN()).eval()
    example = torch.randn(1, 3, 16, 16)
    model = convert_torch_model(module, example)
    assert isinstance(model, CompressedModel) and model.name == "SmallCNN"
    parameter = model.get_model().inputs[0]
    assert parameter.get_node().get_friendly_name() == "image"
    assert parameter.get_partial_shape() == ov.PartialShape([1, 3, 16, 16])
    with torch.no_grad():
        expected = module(example).numpy()
    np.testing.assert_allclose(_infer(model, example.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_dynamic_batch_and_input_names():
    module = _seeded(SmallCNN()).eval()
    model = convert_torch_model(
        module, torch.randn(1, 3, 16, 16), input_names=["pixels"], dynamic_batch=True, model_name="cnn"
    )
    port = model.get_model().inputs[0]
    assert port.get_partial_shape() == ov.PartialShape([-1, 3, 16, 16])
    assert port.get_node().get_friendly_name() == "pixels" and port.get_names() == {"pixels"}
    assert model.name == "cnn"
    batch = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = module(batch).numpy()
    np.testing.assert_allclose(_infer(model, {"pixels": batch.numpy()}), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"input_names has 2 names but the model has 1 inputs \['image'\]"):
        convert_torch_model(module, torch.randn(1, 3, 16, 16), input_names=["a", "b"])


def test_training_mode_and_parameters_are_untouched():
    module = _seeded(SmallCNN())
    module.train()
    module.drop.eval()
    before = {name: value.clone() for name, value in module.state_dict().items()}
    convert_torch_model(module, torch.randn(1, 3, 16, 16))
    assert module.training and module.conv.training and not module.drop.training
    assert all(parameter.requires_grad for parameter in module.parameters())
    after = module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_example_input_taken_from_a_dataset_or_dataloader():
    dataset = torchvision.datasets.FakeData(size=4, image_size=(3, 16, 16), transform=transforms.ToTensor())
    module = _seeded(SmallCNN()).eval()
    from_dataset = convert_torch_model(module, dataset=dataset)
    assert from_dataset.get_model().inputs[0].get_partial_shape() == ov.PartialShape([1, 3, 16, 16])
    from_batches = convert_torch_model(module, dataset=TorchBatchLoader(dataset, batch_size=2))
    assert from_batches.get_model().inputs[0].get_partial_shape() == ov.PartialShape([2, 3, 16, 16])
    loader = TorchDataLoader(dataset, model=from_dataset)
    image, _ = dataset[2]
    with torch.no_grad():
        expected = module(image[None]).numpy()
    np.testing.assert_allclose(_infer(from_dataset, loader[2][0][None]), expected, rtol=1e-4, atol=1e-4)  # a sample


def test_multi_input_module_with_dict_inputs():
    module = _seeded(TwoInputs()).eval()
    example = {"tokens": torch.randn(1, 4), "mask": torch.ones(1, 4)}
    model = convert_torch_model(module, example, dynamic_batch=True)
    names = [port.get_node().get_friendly_name() for port in model.get_model().inputs]
    assert names == ["tokens", "mask"]
    items = [({"mask": torch.tensor([1.0, 0.0, 1.0, 1.0]), "tokens": torch.randn(4)}, 0) for _ in range(2)]
    data, _ = TorchDataLoader(items, model=model)[1]
    assert list(data) == ["tokens", "mask"] and data["tokens"].shape == (4,)  # a sample: IEEngine batches it
    batch = {name: value[None] for name, value in data.items()}
    with torch.no_grad():
        expected = module(torch.from_numpy(batch["tokens"]), torch.from_numpy(batch["mask"])).numpy()
    np.testing.assert_allclose(_infer(model, batch), expected, rtol=1e-5, atol=1e-5)


def test_transformer_encoder_layer_converts_and_matches_torch():
    torch.manual_seed(0)
    module = torch.nn.TransformerEncoderLayer(
        d_model=16, nhead=2, dim_feedforward=32, batch_first=True
    ).eval()
    example = torch.randn(1, 5, 16)
    model = convert_torch_model(module, (example,), input_names=["sequence"], dynamic_batch=True)
    assert {op.get_type_name() for op in model.get_model().get_ops()} >= {
        "MatMul",
        "ScaledDotProductAttention",
        "MVN",
    }
    batch = torch.randn(2, 5, 16)
    with torch.no_grad():
        expected = module(batch).numpy()
    np.testing.assert_allclose(_infer(model, batch.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_unconvertible_op_is_named_with_advice():
    with pytest.raises(
        ModelConversionError,
        match=r"(?s)could not convert UsesHistc: no conversion for aten::histc\..*"
        r"rewrite the code that uses aten::histc",
    ) as caught:
        convert_torch_model(UsesHistc(), torch.randn(1, 4))
    assert caught.value.failed_ops == ["aten::histc"]
    assert isinstance(caught.value, RuntimeError)


def test_a_failed_conversion_leaves_the_root_logger_level_as_it_was():
    """ovc's convert_model left the root logger at ERROR after a failure, silencing every later warning."""
    before = logging.root.level
    with pytest.raises(ModelConversionError):
        convert_torch_model(UsesHistc(), torch.randn(1, 4))
    assert logging.root.level == before


def test_untraceable_module_explains_tracing():
    with pytest.raises(
        ModelConversionError,
        match=r"(?s)could not trace ReturnsText: Only tensors.*" r"make forward\(\) take the example input",
    ) as caught:
        convert_torch_model(ReturnsText(), torch.randn(1, 4))
    assert caught.value.failed_ops == []


def test_bad_arguments():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got str"):
        convert_torch_model("model.pt", torch.randn(1, 4))
    with pytest.raises(ValueError, match="needs an example_input"):
        convert_torch_model(SmallCNN())
    with pytest.raises(ValueError, match="the dataset is empty"):
        convert_torch_model(SmallCNN(), dataset=[])


class TokenMixer(torch.nn.Module):
    """forward(input_ids, attention_mask, token_type_ids) like a BERT: order matters, types differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.tokens, self.types = torch.nn.Embedding(20, 8), torch.nn.Embedding(2, 8)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        x = self.tokens(input_ids) + self.types(token_type_ids)
        return (x if attention_mask is None else x * attention_mask[..., None]).sum(1)


def _tokens(length: int, seed: int = 0) -> dict:
    """One tokenized sample, keys in a tokenizer's order (token_type_ids before attention_mask)."""
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 20, (length,), generator=generator),
            "token_type_ids": torch.randint(0, 2, (length,), generator=generator),
            "attention_mask": torch.randint(0, 2, (length,), generator=generator)}


def _shapes(model: CompressedModel) -> dict:
    return {port.get_any_name(): str(port.get_partial_shape()) for port in model.get_model().inputs}


def test_integer_length_axis_and_axes_that_vary_in_the_data_are_dynamic(caplog):
    with caplog.at_level("INFO", logger="pot_torch"):
        text = convert_torch_model(TokenMixer(), dataset=[_tokens(5)], dynamic_batch=True)
    assert _shapes(text) == {"input_ids": "[?,?]", "token_type_ids": "[?,?]", "attention_mask": "[?,?]"}
    assert "input 'attention_mask': axis 1 is dynamic (length axis of an integer [batch, length] input" in caplog.text
    images = [torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), torch.zeros(3, 12, 16)]
    with caplog.at_level("INFO", logger="pot_torch"):
        varying = convert_torch_model(_seeded(SmallCNN()).eval(), dataset=images)
    assert _shapes(varying) == {"image": "[1,3,?,16]"}
    assert "input 'image': axis 2 is dynamic (sizes [12, 16] in the first 3 items)" in caplog.text
    assert _shapes(convert_torch_model(_seeded(SmallCNN()).eval(), dataset=images[:2])) == {"image": "[1,3,16,16]"}


def test_input_shapes_win_over_inference():
    model = convert_torch_model(TokenMixer(), dataset=[_tokens(5)], dynamic_batch=True,
                                input_shapes={"input_ids": [1, 5], "attention_mask": [None, 5]})
    assert _shapes(model) == {"input_ids": "[1,5]", "token_type_ids": "[?,?]", "attention_mask": "[?,5]"}
    by_position = convert_torch_model(_seeded(SmallCNN()).eval(), torch.zeros(1, 3, 16, 16),
                                      input_shapes=[[-1, 3, -1, -1]])
    assert _shapes(by_position) == {"image": "[?,3,?,?]"}
    with pytest.raises(ValueError, match=r"input_shapes names \['mask'\], which are not inputs of the example; "
                                         r"its inputs are \['input_ids', 'token_type_ids', 'attention_mask'\]"):
        convert_torch_model(TokenMixer(), dataset=[_tokens(5)], input_shapes={"mask": [-1, -1]})
    with pytest.raises(TypeError, match=r"input_shapes\['image'\] must be a list of axis sizes"):
        convert_torch_model(SmallCNN(), torch.zeros(1, 3, 16, 16), input_shapes={"image": "1,3,16,16"})


def test_input_names_given_as_one_string_name_the_single_input():
    model = convert_torch_model(_seeded(SmallCNN()).eval(), torch.zeros(1, 3, 16, 16), input_names="pixels")
    assert _shapes(model) == {"pixels": "[1,3,16,16]"}


def test_openvino_module_takes_positional_arguments_in_forward_order():
    from pot_torch.adapters import OpenVINOModule
    from pot_torch.adapters.model import forward_inputs

    module = TokenMixer().eval()
    example = {name: value[None] for name, value in _tokens(6).items()}
    model = convert_torch_model(module, example, dynamic_batch=True)
    runner = OpenVINOModule(model.get_model(), forward_arguments=forward_inputs(module, example, model))
    batch = {name: value[None] for name, value in _tokens(9, seed=1).items()}
    with torch.no_grad():
        expected = module(**batch)
    positional = runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    np.testing.assert_allclose(positional.numpy(), expected.numpy(), rtol=1e-2, atol=1e-2)  # CPU default bf16
    assert torch.equal(positional, runner(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                                          attention_mask=batch["attention_mask"]))
    partial = convert_torch_model(module, {"input_ids": example["input_ids"],
                                           "token_type_ids": example["token_type_ids"],
                                           "attention_mask": example["attention_mask"]}, input_names=["a", "b", "c"])
    renamed = OpenVINOModule(partial.get_model(), forward_arguments=forward_inputs(module, example, partial))
    assert torch.equal(renamed(example["input_ids"], example["attention_mask"], example["token_type_ids"]),
                       renamed(a=example["input_ids"], b=example["token_type_ids"], c=example["attention_mask"]))
    no_mask = {"input_ids": example["input_ids"], "token_type_ids": example["token_type_ids"]}
    unmasked = convert_torch_model(module, no_mask)
    gap = OpenVINOModule(unmasked.get_model(), forward_arguments=forward_inputs(module, no_mask, unmasked))
    assert gap(example["input_ids"], token_type_ids=example["token_type_ids"]).shape == (1, 8)
    with pytest.raises(TypeError, match=r"positional argument 1 is forward\(\)'s 'attention_mask', which the "
                                        r"converted model has no input for.*pass them by keyword"):
        gap(example["input_ids"], example["attention_mask"], example["token_type_ids"])
