"""load_model / save_model on real IR files, and the atomic file helper they use."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from model_builders import conv_model, reference_infer, two_input_model
from pot_torch import CompressedModel
from pot_torch.graph import model_io
from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.model_utils import add_outputs
from pot_torch.utils.atomic import atomic_output_files
from pot_torch.utils.config import AttrDict

X = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)


def _write_ir(folder: Path, name: str, model: ov.Model) -> Path:
    xml = folder / f"{name}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def _ops_snapshot(model: ov.Model) -> list:
    return [(op.get_friendly_name(), op.get_type_name(), [str(o.get_names()) for o in op.outputs()])
            for op in model.get_ordered_ops()]


def _cascade(**members: ov.Model) -> CompressedModel:
    return CompressedModel(models=[{"name": name, "model": model} for name, model in members.items()])


def _f32(model: ov.Model, *inputs: np.ndarray) -> list:
    return reference_infer(model, list(inputs))


def _listing(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---- load_model ------------------------------------------------------------------------------------------

def test_load_single_model_weights_default_next_to_xml(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model())
    model = load_model({"model_name": "my_net", "model": str(xml)})
    assert isinstance(model, CompressedModel) and not model.is_cascade
    assert model.name == "my_net"
    got = reference_infer(model.get_model(), [X])[0]
    np.testing.assert_allclose(got, reference_infer(conv_model(), [X])[0], rtol=0, atol=1e-6)


def test_load_single_model_attrdict_explicit_weights_and_path_objects(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model())
    weights = tmp_path / "elsewhere.bin"
    (tmp_path / "net.bin").rename(weights)
    model = load_model(AttrDict(model_name="n", model=xml, weights=weights), target_device="CPU")
    assert model.get_model().get_friendly_name() == "conv_model"


def test_load_cascade_of_two_models(tmp_path):
    a, b = _write_ir(tmp_path, "a", conv_model(seed=1)), _write_ir(tmp_path, "b", two_input_model())
    config = {"model_name": "casc", "cascade": [
        {"name": "first", "model": str(a), "weights": str(a.with_suffix(".bin"))},
        {"name": "second", "model": str(b)}]}
    model = load_model(config)
    assert model.is_cascade and model.name == "casc" and model.member_names == ["first", "second"]
    assert model.get_model("second").get_friendly_name() == "two_input_model"
    np.testing.assert_allclose(reference_infer(model.get_model("first"), [X])[0],
                               reference_infer(conv_model(seed=1), [X])[0], atol=1e-6)


def test_cascade_of_one_model_is_not_a_cascade(tmp_path):
    a = _write_ir(tmp_path, "a", conv_model())
    model = load_model({"model_name": "m", "cascade": [{"name": "only", "model": str(a)}]})
    assert not model.is_cascade and model.member_names == ["only"]


def test_load_missing_xml(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model_config\['model'\]: file '.*nope\.xml' does not"):
        load_model({"model_name": "m", "model": str(tmp_path / "nope.xml")})


def test_load_missing_default_bin(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model())
    os.remove(tmp_path / "net.bin")
    with pytest.raises(FileNotFoundError, match=r"\['weights'\]: file '.*net\.bin' does not exist \(the"):
        load_model({"model_name": "m", "model": str(xml)})


def test_load_missing_explicit_bin_in_cascade(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model())
    entry = {"name": "p", "model": str(xml), "weights": str(tmp_path / "x.bin")}
    config = {"model_name": "m", "cascade": [entry]}
    with pytest.raises(FileNotFoundError, match=r"\['cascade'\]\[0\]\['weights'\]: file '.*x\.bin'"):
        load_model(config)


def test_load_corrupt_xml(tmp_path):
    _write_ir(tmp_path, "net", conv_model())
    (tmp_path / "net.xml").write_text('<net name="x" version="11"><layers>')
    with pytest.raises(RuntimeError, match=r"OpenVINO could not read the IR '.*net\.xml' with weights '"):
        load_model({"model_name": "m", "model": str(tmp_path / "net.xml")})


def test_load_mismatched_bin(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model())
    short = tmp_path / "short.bin"
    short.write_bytes((tmp_path / "net.bin").read_bytes()[:64])
    with pytest.raises(RuntimeError, match=r"could not read the IR .* and \.bin that do not belong together"):
        load_model({"model_name": "m", "model": str(xml), "weights": str(short)})


def test_load_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.xml").mkdir()
    with pytest.raises(ValueError, match=r"\['model'\]: '.*dir\.xml' is not a file"):
        load_model({"model_name": "m", "model": str(tmp_path / "dir.xml"), "weights": str(tmp_path)})


def test_load_non_xml_path(tmp_path):
    with pytest.raises(ValueError, match=r"must be an OpenVINO IR \.xml file, got '.*model\.onnx'.*convert_"):
        load_model({"model_name": "m", "model": str(tmp_path / "model.onnx")})


@pytest.mark.parametrize("config, key", [
    ({"model": "a.xml"}, "model_name"),
    ({"model_name": "m"}, r"model' \(or 'cascade' for a cascade of models\)"),
    ({"model_name": "m", "model": ""}, "model"),
])
def test_load_missing_key_names_it_and_shows_example(config, key):
    with pytest.raises(ValueError, match=rf"model_config is missing the required key '{key}.*example: "):
        load_model(config)


def test_load_cascade_entry_without_name_or_model(tmp_path):
    with pytest.raises(ValueError, match=r"\['cascade'\]\[0\] is missing the required key 'name'.*example"):
        load_model({"model_name": "m", "cascade": [{"model": "a.xml"}]})
    with pytest.raises(ValueError, match=r"\['cascade'\]\[1\] is missing the required key 'model'"):
        xml = str(_write_ir(tmp_path, "a", conv_model()))
        load_model({"model_name": "m", "cascade": [{"name": "a", "model": xml}, {"name": "b"}]})


def test_load_bad_config_types():
    with pytest.raises(TypeError, match=r"model_config must be a dict, got str; example"):
        load_model("model.xml")
    with pytest.raises(ValueError, match=r"model_config\['cascade'\] must be a list of model entries"):
        load_model({"model_name": "m", "cascade": "pnet.xml"})
    with pytest.raises(ValueError, match=r"model_config\['cascade'\]\[0\] must be a dict, got str"):
        load_model({"model_name": "m", "cascade": ["pnet.xml"]})


@pytest.mark.parametrize("device", ["GNA", "GNA3", "GNA3.5"])
def test_load_gna_not_supported(device):
    with pytest.raises(ValueError, match=rf"^target_device '{device}' is not supported: the GNA plugin was removed "
                                         r"from OpenVINO .*; valid values: ANY, CPU, CPU_SPR, GPU, NPU$"):
        load_model({"model_name": "m", "model": "a.xml"}, target_device=device)


def test_load_unknown_target_device():
    with pytest.raises(ValueError, match=r"^unknown target_device 'cpu'; valid values: ANY, CPU, CPU_SPR, GPU, NPU$"):
        load_model({"model_name": "m", "model": "a.xml"}, target_device="cpu")


# ---- save_model ------------------------------------------------------------------------------------------

def test_save_single_model_reloads_with_same_outputs_and_fp32_weights(tmp_path):
    original = conv_model()
    model = CompressedModel(original, model_name="net")
    before = _ops_snapshot(original)
    paths = save_model(model, str(tmp_path / "out"))
    out = str(tmp_path / "out")
    assert paths == [{"model": os.path.join(out, "net.xml"), "weights": os.path.join(out, "net.bin")}]
    assert _ops_snapshot(original) == before  # the in-memory model is not modified
    reloaded = ov.Core().read_model(paths[0]["model"])
    np.testing.assert_array_equal(reference_infer(reloaded, [X])[0], reference_infer(original, [X])[0])
    real_consts = {op.get_output_element_type(0) for op in reloaded.get_ops()
                   if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real()}
    assert real_consts == {ov.Type.f32}
    fp32_bytes = sum(op.get_byte_size() for op in original.get_ops() if op.get_type_name() == "Constant")
    assert os.path.getsize(paths[0]["weights"]) == fp32_bytes
    assert sorted(os.listdir(out)) == ["net.bin", "net.xml"]  # no temporary files left


def test_save_uses_model_name_argument_and_is_deterministic(tmp_path):
    model = CompressedModel(conv_model())
    first = save_model(model, tmp_path / "a", model_name="custom")
    second = save_model(model, tmp_path / "b", model_name="custom")
    assert Path(first[0]["model"]).name == "custom.xml"
    assert _listing(tmp_path / "a") == _listing(tmp_path / "b")
    assert Path(save_model(model, tmp_path / "c")[0]["model"]).name == "conv_model.xml"  # default: model.name


def test_save_cascade_names_files_per_member(tmp_path):
    model = _cascade(pnet=conv_model(), rnet=two_input_model())
    paths = save_model(model, str(tmp_path), model_name="q")
    folder = str(tmp_path)
    assert paths == [{"name": member, "model": os.path.join(folder, f"q_{member}.xml"),
                      "weights": os.path.join(folder, f"q_{member}.bin")} for member in ("pnet", "rnet")]
    assert [Path(p["model"]).name for p in save_model(model, tmp_path / "plain")] == ["pnet.xml", "rnet.xml"]
    entries = [{"name": p["name"], "model": p["model"]} for p in paths]
    reloaded = load_model({"model_name": "mtcnn", "cascade": entries})
    assert reloaded.member_names == ["pnet", "rnet"]
    a, b = np.ones((1, 4), np.float32), np.full((1, 4), 2.0, np.float32)
    for got, want in zip(_f32(reloaded.get_model("rnet"), a, b), _f32(two_input_model(), a, b)):
        np.testing.assert_array_equal(got, want)


def test_save_keeps_extra_outputs_for_stat_collection(tmp_path):
    model = CompressedModel(conv_model())
    add_outputs(model, ["relu1"])
    paths = save_model(model, tmp_path, for_stat_collection=True)
    reloaded = ov.Core().read_model(paths[0]["model"])
    assert len(reloaded.outputs) == 2 and "relu1/sink_port_0" in reloaded.outputs[1].get_names()


def test_save_overwrites_existing_files(tmp_path):
    save_model(CompressedModel(conv_model(seed=1), model_name="net"), tmp_path)
    save_model(CompressedModel(conv_model(seed=2), model_name="net"), tmp_path)
    reloaded = ov.Core().read_model(str(tmp_path / "net.xml"))
    np.testing.assert_array_equal(_f32(reloaded, X)[0], _f32(conv_model(seed=2), X)[0])
    assert sorted(os.listdir(tmp_path)) == ["net.bin", "net.xml"]


def test_save_over_the_files_the_model_was_loaded_from(tmp_path):
    xml = _write_ir(tmp_path, "net", conv_model(seed=4))
    model = load_model({"model_name": "net", "model": str(xml)})
    save_model(model, tmp_path)
    np.testing.assert_array_equal(reference_infer(ov.Core().read_model(str(xml)), [X])[0],
                                  reference_infer(conv_model(seed=4), [X])[0])


def test_failed_save_leaves_existing_files_and_no_temporaries(tmp_path, monkeypatch):
    model = _cascade(a=conv_model(), b=two_input_model())
    save_model(model, tmp_path)
    before = _listing(tmp_path)
    real_save = ov.save_model
    calls = []

    def failing_save(ov_model, path, compress_to_fp16=True):
        calls.append(path)
        if len(calls) == 2:  # the first member is fully written, the second fails half way
            Path(path).write_text("<net")
            raise RuntimeError("disk full")
        real_save(ov_model, path, compress_to_fp16=compress_to_fp16)

    monkeypatch.setattr(model_io.ov, "save_model", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(_cascade(a=conv_model(seed=9), b=two_input_model(seed=9)), tmp_path)
    assert _listing(tmp_path) == before


def test_save_errors(tmp_path):
    model = CompressedModel(conv_model())
    with pytest.raises(TypeError, match=r"save_model expects a CompressedModel, got Model; wrap an openvino"):
        save_model(conv_model(), tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"save_path '.*file' exists and is not a folder"):
        save_model(model, tmp_path / "file")
    with pytest.raises(ValueError, match=r"cannot save a model under the file name 'sub/net': give"):
        save_model(model, tmp_path, model_name="sub/net")
    assert sorted(os.listdir(tmp_path)) == ["file"]


# ---- atomic_output_files ---------------------------------------------------------------------------------

def test_atomic_output_files_commits_all_or_nothing(tmp_path):
    targets = [tmp_path / "a.txt", tmp_path / "b.txt"]
    targets[0].write_text("old")
    with pytest.raises(KeyError):
        with atomic_output_files(targets) as temporary:
            assert all(t.parent == tmp_path and t.name.startswith(".") for t in temporary)
            temporary[0].write_text("new")
            raise KeyError("stop")
    assert sorted(os.listdir(tmp_path)) == ["a.txt"] and targets[0].read_text() == "old"
    with atomic_output_files(targets) as temporary:
        for t, text in zip(temporary, ("A", "B")):
            t.write_text(text)
    assert [t.read_text() for t in targets] == ["A", "B"]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_atomic_output_files_rolls_back_a_failed_rename(tmp_path, monkeypatch):
    targets = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for t in targets:
        t.write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".b.tmp"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr("pot_torch.utils.atomic.os.replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_output_files(targets) as temporary:
            for t in temporary:
                t.write_text("new")
    assert [t.read_text() for t in targets] == ["old", "old"]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_atomic_output_files_errors(tmp_path):
    with pytest.raises(ValueError, match="got the same target twice"):
        with atomic_output_files([tmp_path / "a", tmp_path / "a"]):
            pass
    with pytest.raises(RuntimeError, match=r"the writer did not create the expected files \['.*\.b\.tmp-"):
        with atomic_output_files([tmp_path / "b"]):
            pass
    assert os.listdir(tmp_path) == []
