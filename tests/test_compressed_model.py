"""CompressedModel: single models, cascades, the networkx view, deep copies and friendly-name clashes."""
from __future__ import annotations

import copy

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer, two_input_model
from pot_torch import CompressedModel

X = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype(np.float32)


def cascade(**members: ov.Model) -> CompressedModel:
    return CompressedModel(models=[{"name": name, "model": model} for name, model in members.items()])


def _split_model() -> ov.Model:
    """x -> split into 2 -> (part0 * part0, relu(part1)): a multi-output op and a doubly-fed op."""
    x = ops.parameter([2, 4], np.float32, name="x")
    split = ops.split(x, 0, 2)
    split.set_friendly_name("split")
    square = ops.multiply(split.output(0), split.output(0))
    square.set_friendly_name("square")
    relu = ops.relu(split.output(1))
    relu.set_friendly_name("relu")
    return ov.Model([ops.result(square), ops.result(relu)], [x], "split_model")


def _names(model: ov.Model) -> list:
    return [op.get_friendly_name() for op in model.get_ordered_ops()]


def test_single_in_memory_model_is_wrapped_not_copied():
    original = conv_model()
    model = CompressedModel(original)
    assert model.get_model() is original and not model.is_cascade
    assert model.name == "conv_model" and model.member_names == ["conv_model"]
    assert model.models == [{"name": "conv_model", "model": original}]
    assert CompressedModel(original, model_name="renamed").name == "renamed"
    assert "CompressedModel(model 'conv_model'" in repr(model)


def test_cascade_of_two_models():
    first, second = conv_model(), two_input_model()
    model = CompressedModel(models=[{"name": "pnet", "model": first}, {"name": "rnet", "model": second}],
                            model_name="mtcnn")
    assert model.is_cascade and model.name == "mtcnn" and model.member_names == ["pnet", "rnet"]
    assert model.get_model("pnet") is first and model.get_model("rnet") is second
    assert CompressedModel(models=[{"name": "a", "model": first}, {"name": "b", "model": second}]).name == "a"
    with pytest.raises(ValueError, match=r"this is a cascade; name one of its models: \['pnet', 'rnet'\]"):
        model.get_model()
    with pytest.raises(KeyError, match=r"no model named 'onet' in this CompressedModel; members: \['pnet'"):
        model.get_model("onet")


def test_constructor_errors():
    with pytest.raises(ValueError, match="CompressedModel needs exactly one of 'model'"):
        CompressedModel()
    with pytest.raises(ValueError, match="CompressedModel needs exactly one of 'model'"):
        CompressedModel(conv_model(), models=[{"name": "a", "model": conv_model()}])
    with pytest.raises(TypeError, match=r"model must be an openvino.Model, got str; read IR files with"):
        CompressedModel("model.xml")
    with pytest.raises(ValueError, match=r"models\[0\] must be a dict with 'name' and 'model', got"):
        CompressedModel(models=[conv_model()])
    with pytest.raises(TypeError, match=r"models\[1\]\['model'\] must be an openvino.Model, got int"):
        CompressedModel(models=[{"name": "a", "model": conv_model()}, {"name": "b", "model": 3}])
    with pytest.raises(ValueError, match=r"CompressedModel\(models=...\) needs at least one model"):
        CompressedModel(models=[])
    with pytest.raises(ValueError, match=r"cascade member names must be unique, repeated: \['a'\]"):
        CompressedModel(models=[{"name": "a", "model": conv_model()}, {"name": "a", "model": conv_model()}])


def test_networkx_view_matches_the_model():
    ov_model = _split_model()
    graph = CompressedModel(ov_model).get_graph()
    ops_by_name = {op.get_friendly_name(): op for op in ov_model.get_ops()}
    assert set(graph.nodes) == set(ops_by_name)
    for name, data in graph.nodes(data=True):
        assert data["type"] == ops_by_name[name].get_type_name()
        assert data["op"].get_friendly_name() == name
    expected = sorted((src.get_node().get_friendly_name(), op.get_friendly_name(), src.get_index(), port)
                      for op in ov_model.get_ops() for port, src in enumerate(op.input_values()))
    got = sorted((u, v, d["out_port"], d["in_port"]) for u, v, d in graph.edges(data=True))
    assert got == expected
    assert ("split", "relu", 1, 0) in got  # the second output of split
    square_inputs = [edge for edge in got if edge[:2] == ("split", "square")]
    assert square_inputs == [("split", "square", 0, 0), ("split", "square", 0, 1)]


def test_networkx_view_of_a_cascade_member_reflects_later_edits():
    model = cascade(p=conv_model(), r=two_input_model())
    assert "mm" in model.get_graph("r") and "mm" not in model.get_graph("p")
    relu = ops.relu(model.get_model("r").get_parameters()[1])
    relu.set_friendly_name("new_relu")
    model.get_model("r").add_results([ops.result(relu)])
    assert model.get_graph("r").has_edge("b", "new_relu")


def test_deepcopy_is_independent():
    original = conv_model()
    model = CompressedModel(original, model_name="net")
    clone = copy.deepcopy(model)
    assert clone.get_model() is not original and clone.name == "net" and not clone.is_cascade
    relu2 = next(op for op in clone.get_model().get_ops() if op.get_friendly_name() == "relu2")
    relu2.set_friendly_name("edited")
    clone.get_model().add_results([ops.result(relu2)])
    assert "relu2" in _names(original) and "edited" not in _names(original) and len(original.outputs) == 1
    np.testing.assert_array_equal(reference_infer(model.get_model(), [X])[0],
                                  reference_infer(conv_model(), [X])[0])
    two = cascade(a=conv_model(), b=conv_model(seed=1))
    two_clone = copy.deepcopy(two)
    assert two_clone.is_cascade and two_clone.member_names == ["a", "b"]
    assert all(two_clone.get_model(n) is not two.get_model(n) for n in ["a", "b"])


def test_duplicate_friendly_names_are_made_unique_on_a_clone():
    user_model = conv_model()
    for op in user_model.get_ops():
        if op.get_friendly_name() in ("relu1", "relu2"):
            op.set_friendly_name("relu")
    user_names = _names(user_model)
    model = CompressedModel(user_model)
    assert _names(user_model) == user_names  # the user's model is not renamed
    assert model.get_model() is not user_model
    names = _names(model.get_model())
    assert len(set(names)) == len(names) and "relu" in names and "relu_1" in names
    assert set(model.get_graph().nodes) == set(names)
    np.testing.assert_array_equal(reference_infer(model.get_model(), [X])[0],
                                  reference_infer(user_model, [X])[0])


def test_replace_model():
    model = cascade(a=conv_model(), b=conv_model())
    new = two_input_model()
    model.replace_model("b", new)
    assert model.get_model("b") is new
    with pytest.raises(KeyError, match=r"no model named 'c' in this CompressedModel; members: \['a', 'b'\]"):
        model.replace_model("c", new)
    with pytest.raises(TypeError, match=r"new_model must be an openvino.Model, got NoneType"):
        model.replace_model("a", None)
    single = CompressedModel(conv_model())
    single.replace_model(None, new)
    assert single.get_model() is new


def test_statistics_on_an_op_name_two_cascade_members_share_are_refused():
    from pot_torch.engines.ie_engine import IEEngine
    from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
    from pot_torch.statistics.spec import layout_specs
    from pot_torch.statistics.reducers import make_reducer

    model = cascade(pnet=conv_model(), rnet=conv_model(seed=1))
    name = next(op.get_friendly_name() for op in conv_model().get_ops() if op.get_type_name() == "Convolution")
    request = StatisticsRequest(layout_specs({name: {"max": make_reducer("max", False)}}))
    with pytest.raises(ValueError, match=rf"cascade members \['pnet', 'rnet'\] each have an op named '{name}': "
                                         r"statistics are keyed by op name, so theirs would mix\. Give each "
                                         r"member's ops unique names"):
        collect_statistics(IEEngine({"device": "CPU"}, None), model, [request])


def test_save_writes_one_ir_per_cascade_member_and_returns_the_paths(tmp_path):
    """POT's MTCNN sample, step 8: ``compressed_model.save(save_path, model_name)`` on a cascade."""
    model = cascade(pnet=conv_model(size=16), rnet=conv_model(size=16))
    paths = model.save(str(tmp_path / "out"), model_name="mtcnn")
    assert paths == [{"name": member, "model": str(tmp_path / "out" / f"mtcnn_{member}.xml"),
                      "weights": str(tmp_path / "out" / f"mtcnn_{member}.bin")} for member in ("pnet", "rnet")]
    for entry in paths:
        np.testing.assert_allclose(reference_infer(ov.Core().read_model(entry["model"]), X),
                                   reference_infer(model.get_model(entry["name"]), X), rtol=0, atol=0)
    single = CompressedModel(conv_model(size=16), model_name="net")
    assert single.save(str(tmp_path / "one")) == [
        {"model": str(tmp_path / "one" / "net.xml"), "weights": str(tmp_path / "one" / "net.bin")}]
