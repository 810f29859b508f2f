"""Data item parsing and input feeding (pot_torch.engines.data_items / input_feeding) on real model inputs."""
from __future__ import annotations

import logging

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, IEEngine, Metric
from pot_torch.engines.data_items import DataItemError, DataItemTypeError, has_own_sample_ids, parse_batch
from pot_torch.engines.input_feeding import batch_input, fill_inputs
from pot_torch.engines.utils import (add_tensor_names, align_stat_names_with_results, append_stats,
                                     cast_friendly_names, collect_model_outputs, get_clean_name, output_names,
                                     process_accumulated_stats, restore_original_node_names)
from tests.model_builders import conv_model, two_input_model
from tests.test_ie_engine import ListLoader


def _image_info_model() -> ov.Model:
    image = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    info = ops.parameter([1, 3], np.float32, name="im_info")
    pooled = ops.reduce_mean(image, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    return ov.Model([ops.result(ops.add(pooled, info))], [image, info], "image_info_model")


def _dynamic_model() -> ov.Model:
    x = ops.parameter(ov.PartialShape([-1, 3, -1, -1]), np.float32, name="x")
    return ov.Model([ops.result(ops.relu(x))], [x], "dynamic")


# ------------------------------------------------------------------------------------------------- items
def test_parse_batch_new_format_ids_are_positions_and_metadata_defaults_to_empty_dicts():
    annotations, data, metadata = parse_batch([("a", 5), ("b", 6)])
    assert annotations == [(0, 5), (1, 6)]
    assert data == ["a", "b"]
    assert metadata == [{}, {}]


def test_parse_batch_with_metadata_and_legacy_format():
    _, _, metadata = parse_batch([("a", 1, {"k": 1}), ("b", 2, {"k": 2})])
    assert metadata == [{"k": 1}, {"k": 2}]
    annotations, data, metadata = parse_batch([(("img7", 3), "x", {"m": 0})])
    assert annotations == [("img7", 3)] and data == ["x"] and metadata == [{"m": 0}]
    assert has_own_sample_ids([(("img7", 3), "x")])
    assert not has_own_sample_ids([("x", 3)])


def test_parse_batch_passes_dict_annotations_unchanged_as_pot_did():
    boxes = {"boxes": np.zeros((2, 4)), "labels": np.array([1, 2])}
    annotations, _, _ = parse_batch([("x", boxes), ("y", {"id3": 1})])
    assert annotations == [(0, boxes), (1, {"id3": 1})]
    assert not has_own_sample_ids([("x", boxes)])
    assert has_own_sample_ids([(("img7", boxes), "x")])


class _RecordingMetric(Metric):
    """Keeps every annotation list ``update`` gets (``seen`` outlives ``reset``); value: boxes per sample."""

    def __init__(self):
        self.seen, self._counts = [], []
        super().__init__()

    @property
    def value(self):
        return {"count": [float(len(a["labels"])) for a in self.seen[-1]]}

    @property
    def avg_value(self):
        return {"count": float(np.mean(self._counts))}

    def update(self, output, target):
        self.seen.append(target)
        self._counts += [len(annotation["labels"]) for annotation in target]

    def reset(self):
        self._counts = []


def _detection_items():
    return [(np.zeros((3, 16, 16), np.float32),
             {"boxes": np.full((index + 1, 4), index, np.float32), "labels": np.arange(index + 1)})
            for index in range(3)]


def test_engine_gives_the_metric_dict_annotations_and_data_set_indices_as_sample_ids():
    metric = _RecordingMetric()
    engine = IEEngine({"device": "CPU"}, ListLoader(_detection_items()), metric)
    engine.set_model(CompressedModel(conv_model()))
    (records, averages), _ = engine.predict(metric_per_sample=True)
    assert [sorted(batch[0]) for batch in metric.seen] == [["boxes", "labels"]] * 3
    assert [len(batch[0]["labels"]) for batch in metric.seen] == [1, 2, 3]
    assert [(r["sample_id"], r["result"]) for r in records] == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert averages == {"count": 2.0}


@pytest.mark.parametrize("batch, message", [
    ([np.zeros(3)], r"item 0 of the batch is a ndarray, expected a tuple"),
    ([(np.zeros(3),)], r"tuple of 1 elements, expected 2"),
    ([(1, 2, 3, 4)], r"tuple of 4 elements"),
    ([("a", 1), ("b", 1, {})], r"some have metadata"),
    ([("a", 1), ((0, 1), "b")], r"use one format"),
])
def test_parse_batch_rejects_bad_items(batch, message):
    with pytest.raises(DataItemError, match=message):
        parse_batch(batch)


# ------------------------------------------------------------------------------------------------ inputs
def test_single_input_item_is_batched_and_loader_batch_of_one_is_accepted():
    port = conv_model().inputs[0]
    item = np.arange(3 * 16 * 16, dtype=np.float32).reshape(3, 16, 16)
    fed = batch_input(port, [item])
    assert fed.shape == (1, 3, 16, 16) and np.shares_memory(fed, item)
    np.testing.assert_array_equal(batch_input(port, [item[None]]), fed)


def test_numeric_items_are_cast_to_the_input_element_type():
    port = conv_model().inputs[0]
    fed = batch_input(port, [np.ones((3, 16, 16), dtype=np.float64)])
    assert fed.dtype == np.float32


def test_same_sized_item_is_reshaped_to_a_static_input_as_pot_did():
    port = conv_model().inputs[0]
    item = np.arange(3 * 16 * 16, dtype=np.float32).reshape(16, 16, 3)
    np.testing.assert_array_equal(batch_input(port, [item]), item.reshape(1, 3, 16, 16))


def test_wrong_shape_names_input_and_both_shapes():
    port = conv_model().inputs[0]
    with pytest.raises(DataItemError, match=r"'input' has the static shape \[1, 3, 16, 16\].*\(3, 15, 15\)"):
        batch_input(port, [np.zeros((3, 15, 15), np.float32)])


def test_wrong_rank_names_input_and_both_shapes():
    port = conv_model().inputs[0]
    with pytest.raises(DataItemError, match=r"'input' has rank 4 \(shape \[1,3,16,16\]\).*\(16, 16\)"):
        batch_input(port, [np.zeros((16, 16), np.float32)])


def test_sampler_batch_bigger_than_static_model_batch_is_explained():
    port = conv_model().inputs[0]
    items = [np.zeros((3, 16, 16), np.float32)] * 2
    with pytest.raises(DataItemError, match=r"batch of 2 item\(s\).*gives \(2, 3, 16, 16\); the model has a static "
                                            r"batch of 1: use batch_size 1"):
        batch_input(port, items)


def test_shape_errors_give_the_hint_that_fits_the_kind_of_data():
    with pytest.raises(DataItemError, match=r"\(3, 15, 15\) gives \(1, 3, 15, 15\); resize the images to the "
                                            r"model's input size \(e.g. torchvision.transforms.Resize\(\(16, 16\)\) "
                                            r"or cv2.resize\), or convert the model with those axes dynamic: "
                                            r"quantize\(..., input_shapes=\{'input': \[-1, 3, -1, -1\]\}\) \(or "
                                            r"convert_torch_model's input_shapes; for an openvino.Model, "
                                            r"model.reshape\(\{'input': \[-1, 3, -1, -1\]\}\)\)"):
        batch_input(conv_model().inputs[0], [np.zeros((3, 15, 15), np.float32)])
    ids = ops.parameter(ov.PartialShape([-1, 8]), np.int64, name="input_ids")
    with pytest.raises(DataItemError, match=r"'input_ids' takes shape \[\?,8\] but .* gives \(1, 13\) .*; 'input_ids' "
                                            r"takes integer data \(token ids, masks\) of a fixed length \(8 on axis "
                                            r"1\); pad or truncate .*max_length=8.*input_shapes=\{'input_ids': "
                                            r"\[-1, -1\]\}") as caught:
        batch_input(ov.Model([ops.result(ops.convert(ids, "f32"))], [ids]).inputs[0], [np.zeros(13, np.int64)])
    assert "Resize" not in str(caught.value)
    vector = ops.parameter([1, 5], np.float32, name="features")
    with pytest.raises(DataItemError, match=r"give items of the model's input size, or convert the model with that "
                                            r"axis dynamic: quantize\(..., input_shapes=\{'features': \[-1, -1\]\}"):
        batch_input(ov.Model([ops.result(vector)], [vector]).inputs[0], [np.zeros(4, np.float32)])


def test_reshape_that_reorders_axes_warns_once_and_unit_axes_do_not(caplog):
    port = conv_model(size=8).inputs[0]  # shapes no other test reshapes: the warning is given once per process
    channels_last = np.arange(3 * 8 * 8, dtype=np.float32).reshape(8, 8, 3)
    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        batch_input(port, [channels_last])
        batch_input(port, [channels_last])
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == ["data of shape (1, 8, 8, 3) for model input 'input' is reshaped to its static shape "
                        "[1, 3, 8, 8] as POT did, which mixes up the values if the axes are in another order (e.g. "
                        "height, width, channels images for a channels-first input); if that is not intended, give "
                        "items of shape [3, 8, 8] (transpose them in the data loader)"]
    caplog.clear()
    x = ops.parameter([1, 1, 4], np.float32, name="x")
    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        fed = batch_input(ov.Model([ops.result(x)], [x]).inputs[0], [np.ones((4, 1), np.float32)])
    assert fed.shape == (1, 1, 4) and not caplog.records


def test_loader_and_sampler_batching_together_is_rejected():
    port = _dynamic_model().inputs[0]
    items = [np.zeros((2, 3, 4, 4), np.float32)] * 2
    with pytest.raises(DataItemError, match=r"already batched.*sampler batches 2"):
        batch_input(port, items)


def test_non_numeric_data_is_a_type_error():
    port = conv_model().inputs[0]
    with pytest.raises(DataItemTypeError, match=r"'input' has dtype <U1, expected numbers for element type f32"):
        batch_input(port, [np.array(["a"])])
    assert issubclass(DataItemTypeError, TypeError)


def test_dynamic_input_is_fed_as_is():
    port = _dynamic_model().inputs[0]
    assert batch_input(port, [np.zeros((3, 5, 7), np.float32)]).shape == (1, 3, 5, 7)
    assert batch_input(port, [np.zeros((3, 5, 7), np.float32)] * 3).shape == (3, 3, 5, 7)
    assert batch_input(port, [np.zeros((4, 3, 5, 7), np.float32)]).shape == (4, 3, 5, 7)
    with pytest.raises(DataItemError, match=r"'x' takes shape \[\?,3,\?,\?\] but the batch of 1 item\(s\) gives \(1, 4, 5, 7\)"):
        batch_input(port, [np.zeros((4, 5, 7), np.float32)])


def test_batch_dim_one():
    x = ops.parameter([3, 2, 4], np.float32, name="x")
    port = ov.Model([ops.result(x)], [x]).inputs[0]
    items = [np.full((3, 4), i, np.float32) for i in range(2)]
    fed = batch_input(port, items, batch_dim=1)
    np.testing.assert_array_equal(fed[:, 1, :], items[1])


def test_dict_data_by_friendly_name_or_tensor_name():
    model = two_input_model()
    model.inputs[1].get_tensor().add_names({"b_tensor"})
    data = [{"a": np.ones((1, 4), np.float32), "b_tensor": np.zeros(4, np.float32)}]
    feed = fill_inputs(model.inputs, data)
    assert set(feed) == {0, 1} and feed[0].shape == (1, 4) and feed[1].shape == (1, 4)


def test_dict_data_with_unknown_or_missing_key_lists_inputs():
    model = two_input_model()
    with pytest.raises(DataItemError, match=r"key 'c' is not a model input; the model's inputs are 'a' \[1,4\], 'b'"):
        fill_inputs(model.inputs, [{"a": np.ones(4), "c": np.ones(4)}])
    with pytest.raises(DataItemError, match=r"no value for model input\(s\) \['b'\]"):
        fill_inputs(model.inputs, [{"a": np.ones(4)}])


def test_two_inputs_without_image_info_need_dicts():
    with pytest.raises(DataItemError, match=r"two inputs 'a' \[1,4\], 'b' \[1,4\].*as a dict"):
        fill_inputs(two_input_model().inputs, [np.ones(4)])


def test_image_info_input_is_filled_with_height_width_channels():
    model = _image_info_model()
    feed = fill_inputs(model.inputs, [np.zeros((3, 8, 8), np.float32)])
    np.testing.assert_array_equal(feed[1], [[8, 8, 3]])
    assert feed[1].dtype == np.float32


def test_three_inputs_without_dicts_are_rejected():
    params = [ops.parameter([1, 2], np.float32, name=n) for n in "xyz"]
    model = ov.Model([ops.result(ops.add(ops.add(params[0], params[1]), params[2]))], params)
    with pytest.raises(DataItemError, match=r"3 inputs 'x' \[1,2\], 'y' \[1,2\], 'z' \[1,2\]"):
        fill_inputs(model.inputs, [np.ones(2)])


# ------------------------------------------------------------------------------------------------- utils
def test_clean_names_and_output_names():
    assert get_clean_name("prob/sink_port_0") == "prob"
    assert output_names(conv_model().outputs) == ["output"]
    model = two_input_model()
    assert output_names(model.outputs) == [o.get_node().get_friendly_name() for o in model.outputs]


def test_process_accumulated_stats_sorts_by_order_and_renames():
    stats = {"n.1": {"max": [(3, "c"), (1, "a"), (2, "b")]}}
    assert process_accumulated_stats(stats, {"n.1": ("n", 1)}) == {("n", 1): {"max": ["a", "b", "c"]}}


def test_pot_helpers_for_custom_engines_on_real_inference():
    model = two_input_model()
    cast_friendly_names(model.outputs)
    add_tensor_names([model.outputs[1]], [("prod", 0)])
    names = collect_model_outputs(model)
    prod_result = model.outputs[1].get_node().get_friendly_name()
    assert {"prod.0", prod_result} <= set(names)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    a, b = np.ones((1, 4), np.float32), np.full((1, 4), 2, np.float32)
    accumulated: dict = {}
    layout = {("prod", 0): {"max": np.max}}
    for order in (1, 0):
        append_stats(accumulated, layout, compiled.create_infer_request().infer([a * (order + 1), b]), order)
    assert process_accumulated_stats(accumulated) == {("prod", 0): {"max": [2.0, 4.0]}}


def test_append_stats_stacks_sequential_results_as_pot_did():
    """POT's ``append_stats`` took a list of results (one per step of a sequence) and stacked each output's
    activations: on axis 1 for 2-D activations, on axis 2 for higher ranks; ``fn`` gets the stack."""
    model = two_input_model()
    add_tensor_names([model.outputs[1]], [("prod", 0)])
    request = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    a, b = np.ones((1, 4), np.float32), np.full((1, 4), 2, np.float32)
    steps = [dict(request.infer([a * (step + 1), b])) for step in range(3)]
    accumulated: dict = {}
    append_stats(accumulated, {("prod", 0): {"seq": lambda x: x.copy()}}, steps, 5)
    [(order, stacked)] = accumulated[("prod", 0)]["seq"]
    assert order == 5 and stacked.shape == (1, 3, 4)
    np.testing.assert_array_equal(stacked[0, :, 0], [2.0, 4.0, 6.0])
    images = [{"feat": np.full((2, 3, 5), step, np.float32)} for step in range(4)]
    append_stats(accumulated, {"feat": {"shape": np.shape}}, tuple(images), 0)
    assert accumulated["feat"]["shape"] == [(0, (2, 3, 4, 5))]
    with pytest.raises(ValueError, match="'vec'.*1-D"):
        append_stats(accumulated, {"vec": {"max": np.max}}, [{"vec": np.ones(3)}, {"vec": np.ones(3)}], 0)


def test_pot_renaming_helpers():
    layout, aliases, node2result = {"conv": {"max": max}}, {"algo": {"conv": {"max": max}}}, {"x": "x"}
    align_stat_names_with_results(["conv.0"], ["conv"], node2result, layout, aliases)
    assert list(layout) == ["conv.0"] and list(aliases["algo"]) == ["conv.0"] and node2result["conv"] == "conv.0"
    stats = {"conv.0": {"max": [1]}, "x": {"max": [2]}}
    restore_original_node_names({"conv": "conv.0"}, stats, layout, aliases)
    assert stats == {"x": {"max": [2]}, "conv": {"max": [1]}} and list(layout) == ["conv"]
