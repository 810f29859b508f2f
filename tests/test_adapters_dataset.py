"""TorchDataLoader: torch data sets, torch DataLoaders and iterables served as POT data loader items."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import openvino as ov
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader as TorchBatchLoader  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from model_builders import conv_model, two_input_model  # noqa: E402
from pot_torch import CompressedModel, IEEngine  # noqa: E402
from pot_torch.adapters.dataset import LoaderBatch, TorchDataLoader  # noqa: E402
from pot_torch.engines.data_items import DataItemError  # noqa: E402
from pot_torch.engines.input_feeding import fill_inputs  # noqa: E402
from pot_torch.samplers import BatchSampler  # noqa: E402


def fake_data(size: int = 6, image_size=(3, 16, 16)):
    return torchvision.datasets.FakeData(
        size=size, image_size=image_size, num_classes=10, transform=transforms.ToTensor(), random_offset=3
    )


def predict(loader: TorchDataLoader, model: ov.Model, batch_size: int = 1) -> None:
    """Run ``IEEngine.predict`` over the loader's items: where items are checked, batched and cast."""
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, loader)
    engine.set_model(CompressedModel(model))
    engine.predict(sampler=BatchSampler(loader, batch_size=batch_size))


def test_importing_pot_torch_and_adapters_does_not_import_torch():
    code = (
        "import sys, pot_torch, pot_torch.adapters; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "pot_torch.adapters.TorchDataLoader; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_adapter_name_lists_exports():
    import pot_torch.adapters as adapters

    with pytest.raises(AttributeError, match="TorchDataLoader"):
        adapters.NoSuchThing  # noqa: B018


def test_fakedata_items_become_per_sample_numpy_and_int_annotation():
    dataset = fake_data()
    loader = TorchDataLoader(dataset, model=CompressedModel(conv_model(size=16)))
    assert len(loader) == 6
    for index in (0, 5):
        data, annotation = loader[index]
        image, target = dataset[index]
        assert isinstance(data, np.ndarray) and data.shape == (3, 16, 16) and data.dtype == np.float32
        np.testing.assert_array_equal(data, image.numpy())
        assert annotation == target and isinstance(annotation, int)


def test_imagefolder_over_png_files(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            array = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / label / f"{i}.png")
            pixels[(label, i)] = array
    dataset = torchvision.datasets.ImageFolder(str(tmp_path), transform=transforms.ToTensor())
    loader = TorchDataLoader(dataset, model=conv_model(size=16))
    items = [loader[i] for i in range(len(loader))]
    assert [annotation for _, annotation in items] == [0, 0, 1, 1]
    np.testing.assert_allclose(items[3][0], pixels[("dog", 1)].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_without_model_items_keep_their_shape_and_example_input_adds_batch_axis():
    loader = TorchDataLoader(fake_data())
    data, _ = loader[0]
    assert data.shape == (3, 16, 16)
    assert tuple(loader.example_input().shape) == (1, 3, 16, 16)
    assert loader.input_names is None and not loader.batched


def test_torch_dataloader_batches_become_batched_items():
    inputs = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 4])
    loader = TorchDataLoader(TorchBatchLoader(TensorDataset(inputs, labels), batch_size=2))
    assert len(loader) == 3 and loader.batched
    data, annotation = loader[1]
    np.testing.assert_array_equal(data, inputs[2:4].numpy())
    assert isinstance(annotation, LoaderBatch) and [int(a) for a in annotation] == [2, 3]
    last_data, last_annotation = loader[2]
    assert last_data.shape == (1, 4) and list(last_annotation) == [4]
    assert tuple(loader.example_input().shape) == (2, 4)


def test_shuffling_torch_dataloader_keeps_one_order():
    torch.manual_seed(0)
    dataset = TensorDataset(torch.arange(12, dtype=torch.float32).reshape(12, 1), torch.arange(12))
    loader = TorchDataLoader(TorchBatchLoader(dataset, batch_size=4, shuffle=True))
    first = [loader[i][1] for i in range(3)]
    second = [loader[i][1] for i in range(3)]
    assert first == second
    assert sorted(int(x) for batch in first for x in batch) == list(range(12))


def test_iterable_with_transform_fn_like_nncf_dataset():
    def generate():
        for i in range(5):
            yield {"pixels": torch.full((1, 3, 16, 16), float(i)), "label": i}

    loader = TorchDataLoader(
        generate(),
        model=conv_model(size=16),
        transform_fn=lambda item: item["pixels"],
        target_fn=lambda item: item["label"],
        max_items=3,
    )
    assert loader[2][1] == 2 and float(loader[2][0][0, 0, 0, 0]) == 2.0
    assert loader[0][1] == 0
    assert len(loader) == 3
    with pytest.raises(IndexError, match="out of range"):
        loader[3]


def test_dict_and_tuple_inputs_map_to_model_inputs_by_name_and_position():
    model = two_input_model()
    a, b = torch.ones(4), torch.full((4,), 2.0)
    by_name = TorchDataLoader([({"b": b, "a": a}, 1)], model=model)
    by_position = TorchDataLoader([((a, b), 1)], model=model)
    for loader in (by_name, by_position):
        data, _ = loader[0]
        assert list(data) == ["a", "b"]
        np.testing.assert_array_equal(data["a"], np.ones(4, np.float32))
        np.testing.assert_array_equal(data["b"], np.full(4, 2.0, np.float32))
    named_only = TorchDataLoader([((a, b), 1)], input_names=["a", "b"])
    assert sorted(named_only[0][0]) == ["a", "b"]
    one_name = TorchDataLoader([((a,), 1)], input_names="pixels")  # a string is one name, not six
    assert one_name.input_names == ["pixels"]
    with pytest.raises(TypeError, match=r"source is the path or string 'images/', not a data set; give a torch "
                                        r"Dataset \(e.g. torchvision.datasets.ImageFolder"):
        TorchDataLoader("images/")  # not a data set of the characters 'i', 'm', ...


def test_detection_style_dict_targets_become_dicts_of_arrays():
    target = {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([3])}
    loader = TorchDataLoader([(torch.zeros(3, 16, 16), target, {"image_id": 7})], model=conv_model(size=16))
    data, annotation, metadata = loader[0]
    assert metadata == {"image_id": 7}
    assert isinstance(annotation["boxes"], np.ndarray) and annotation["boxes"].shape == (1, 4)
    assert annotation["labels"].tolist() == [3]


def test_items_keep_their_dtype_and_the_engine_casts_them_once():
    model = conv_model(size=16)
    loader = TorchDataLoader([(np.full((3, 16, 16), 0.5, dtype=np.float64), 0)] * 2, model=model)
    data, _ = loader[0]
    assert data.dtype == np.float64 and data.shape == (3, 16, 16)
    fed = fill_inputs(model.inputs, [data])[0]
    assert fed.dtype == np.float32 and fed.shape == (1, 3, 16, 16)
    predict(loader, model)


def test_wrong_image_size_names_input_shapes_and_item():
    loader = TorchDataLoader(fake_data(size=5, image_size=(3, 12, 16)), model=conv_model(size=16))
    assert loader[3][0].shape == (3, 12, 16)  # items are not checked twice: IEEngine's input feeding does it
    with pytest.raises(DataItemError, match=r"data set item 0: model input 'input' has the static shape "
                                            r"\[1, 3, 16, 16\] but the batch of 1 item\(s\) of shape \(3, 12, 16\)"):
        predict(loader, conv_model(size=16))


def test_size_errors_give_the_hint_that_fits_the_data():
    images = TorchDataLoader(fake_data(size=2, image_size=(3, 12, 16)), model=conv_model(size=16))
    with pytest.raises(ValueError, match=r"resize the images to the model's input size \(e.g. "
                                         r"torchvision.transforms.Resize\(\(16, 16\)\) or cv2.resize\), or convert "
                                         r"the model with that axis dynamic: quantize\(..., input_shapes=\{'input': "
                                         r"\[-1, 3, -1, 16\]\}\) \(or convert_torch_model's input_shapes; for an "
                                         r"openvino.Model, model.reshape\(\{'input': \[-1, 3, -1, 16\]\}\)\)"):
        predict(images, conv_model(size=16))
    ids = ov.opset13.parameter([1, 8], ov.Type.i64, name="input_ids")
    text = ov.Model([ov.opset13.result(ov.opset13.convert(ids, "f32"))], [ids], "text")
    tokens = TorchDataLoader([torch.zeros(13, dtype=torch.long)], model=text)
    with pytest.raises(ValueError, match=r"'input_ids' takes integer data \(token ids, masks\) of a fixed length "
                                         r"\(8 on axis 1\); pad or truncate every item to that length \(e.g. "
                                         r"tokenizer\(..., padding='max_length', max_length=8, truncation=True\)\), "
                                         r"or convert the model with that axis dynamic: quantize\(..., "
                                         r"input_shapes=\{'input_ids': \[-1, -1\]\}\)") as caught:
        predict(tokens, text)
    assert "Resize" not in str(caught.value)


def test_wrong_rank_and_static_batch_errors():
    model = conv_model(size=16)
    with pytest.raises(DataItemError, match=r"data set item 0: model input 'input' has rank 4 .*\(16, 16\); give "
                                            r"each item the input's shape without the batch axis \(\[3,16,16\]\) "
                                            r"or with it \(\[1,3,16,16\]\); the item has 2 axes, the input 4"):
        predict(TorchDataLoader([(torch.zeros(16, 16), 0)], model=model), model)
    batches = TorchDataLoader(TorchBatchLoader(fake_data(), batch_size=3), model=model)
    assert batches[1][0].shape == (3, 3, 16, 16)
    with pytest.raises(DataItemError, match=r"data set item 0: .*gives \(3, 3, 16, 16\); the model has a static "
                                            r"batch of 1: use batch_size 1 \(.*the torch DataLoader's batch_size\) "
                                            r"or make the model's batch axis dynamic \(convert_torch_model\(..., "
                                            r"dynamic_batch=True\)"):
        predict(batches, model)


def test_loader_batched_items_and_sampler_batches_of_samples_feed_the_engine():
    model = conv_model(size=16, batch=-1)
    predict(TorchDataLoader(TorchBatchLoader(fake_data(), batch_size=3), model=model), model)
    predict(TorchDataLoader(fake_data(), model=model), model, batch_size=3)


def test_wrong_number_of_inputs_and_names():
    model = two_input_model()
    with pytest.raises(ValueError, match=r"item 0 gives 1 input but the model has 2 inputs \['a', 'b'\]"):
        TorchDataLoader([(torch.ones(4), 0)], model=model)[0]
    with pytest.raises(ValueError, match=r"item 0 gives 3 inputs but the model has 2 inputs"):
        TorchDataLoader([((torch.ones(4),) * 3, 0)], model=model)[0]
    with pytest.raises(ValueError, match=r"missing: \['b'\], unexpected: \['c'\]"):
        TorchDataLoader([({"a": torch.ones(4), "c": torch.ones(4)}, 0)], model=model)[0]
    with pytest.raises(ValueError, match="names are not known; pass model="):
        TorchDataLoader([((torch.ones(4), torch.ones(4)), 0)])[0]


def test_unreadable_items_get_instructive_errors():
    untransformed = torchvision.datasets.FakeData(size=2, image_size=(3, 16, 16))
    with pytest.raises(
        TypeError, match=r"item 0: input is a PIL.Image.Image, not a tensor or array; add a transform.*" r"ToTensor"
    ):
        TorchDataLoader(untransformed)[0]
    with pytest.raises(
        ValueError, match=r"item 0 is a tuple of 4 elements; expected \(input, target\).*" r"transform_fn="
    ):
        TorchDataLoader([(torch.ones(4),) * 4])[0]
    with pytest.raises(ValueError, match="target_fn is used together with transform_fn"):
        TorchDataLoader([(torch.ones(4), 1)], target_fn=lambda item: item[1])[0]
    with pytest.raises(ValueError, match="differ from the model's inputs"):
        TorchDataLoader([], model=two_input_model(), input_names=["x", "y"])
    with pytest.raises(TypeError, match="openvino.Model or a CompressedModel"):
        TorchDataLoader([], model="model.xml")


def test_items_fed_by_the_engine_infer_as_the_tensors_do():
    model = conv_model(size=16)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    dataset = fake_data(size=2)
    data, _ = TorchDataLoader(dataset, model=model)[1]
    direct = compiled(dataset[1][0].numpy()[None])[0]
    np.testing.assert_array_equal(compiled(fill_inputs(compiled.inputs, [data]))[0], direct)
