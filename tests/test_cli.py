"""The ``pot-torch`` command: simplified mode, POT config files, the demo, and every bad-input path."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from PIL import Image

from model_builders import conv_model
from pot_torch.cli import main
from pot_torch.cli_config import check_config, read_config_file, strip_json_comments
from pot_torch.image_folder import ImageFolderLoader, image_layout

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture()
def ir(tmp_path):
    xml = tmp_path / "model" / "net.xml"
    ov.save_model(conv_model(size=16), str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        where = folder / "sub" if index % 2 else folder
        Image.fromarray(rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)).save(where / f"{index}.png")
    return folder


def _fake_quantize_count(xml):
    return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(xml)).get_ops())


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pot-torch: error: ")
    return err[-1]


# --------------------------------------------------------------------------------------------------- help
def test_help_explains_every_command_with_examples(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "pot-torch demo" in text and "pot-torch quantize -m" in text and "pot-torch -c" in text
    for command in ("demo", "quantize"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "example" in text
    assert "--subset-size" in text and "--preset" in text and "--overwrite" in text


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: pot-torch" in capsys.readouterr().out


def test_config_and_command_together_is_a_usage_error(tmp_path, capsys):
    assert main(["-c", str(tmp_path / "c.json"), "demo"]) == 2
    assert "either -c/--config or the 'demo' command" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- simplified mode
def test_quantize_writes_an_int8_ir_that_infers(ir, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["quantize", "-m", str(ir), "--data", str(images), "--subset-size", "4", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Calibration data: 6 images" in err and "NCHW" in err
    xml = out / "net.xml"
    assert sorted(p.name for p in out.iterdir()) == ["net.bin", "net.xml"]
    assert _fake_quantize_count(xml) > 0
    compiled = ov.Core().compile_model(str(xml), "CPU")
    result = compiled(np.zeros((1, 3, 16, 16), np.float32))[0]
    assert result.shape == (1, 10) and np.isfinite(result).all()


def test_quantize_refuses_an_existing_output_folder_unless_overwrite(ir, images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["quantize", "-m", str(ir), "--data", str(images), "-o", str(out)]) == 1
    assert "already exists; pass --overwrite" in _error(capsys)
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["quantize", "-m", str(ir), "--data", str(images), "-o", str(out), "--overwrite"]) == 1
    assert "holds files pot-torch did not write (keep.txt)" in _error(capsys)  # the user's file stays
    assert (out / "keep.txt").read_text() == "mine"
    new = tmp_path / "new"
    assert main(["quantize", "-m", str(ir), "--data", str(images), "-o", str(new)]) == 0
    assert main(["quantize", "-m", str(ir), "--data", str(images), "-o", str(new), "--overwrite"]) == 0
    assert sorted(p.name for p in new.iterdir()) == ["net.bin", "net.xml"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging leftovers


@pytest.mark.parametrize("case, message", [
    ("missing_model", "does not exist"),
    ("missing_weights", "does not exist"),
    ("missing_folder", "data folder"),
    ("empty_folder", "holds no images"),
    ("unreadable_image", "cannot read image"),
    ("bad_subset", "--subset-size must be a positive"),
])
def test_quantize_bad_input_fails_with_one_line(case, message, ir, images, tmp_path, capsys):
    args = ["quantize", "-m", str(ir), "--data", str(images), "-o", str(tmp_path / "out")]
    if case == "missing_model":
        args[2] = str(tmp_path / "nope.xml")
    elif case == "missing_weights":
        args += ["-w", str(tmp_path / "nope.bin")]
    elif case == "missing_folder":
        args[4] = str(tmp_path / "no_such_folder")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("not an image")
        args[4] = str(tmp_path / "empty")
    elif case == "unreadable_image":
        (images / "0.png").write_bytes(b"this is not a png")
    elif case == "bad_subset":
        args += ["--subset-size", "0"]
    assert main(args) == 1
    line = _error(capsys)
    assert message in line
    assert not (tmp_path / "out").exists()


def test_image_loader_follows_the_model_layout(images):
    x = ops.parameter([1, 12, 10, 3], np.float32, name="x")
    nhwc = ov.Model([ops.relu(x)], [x])
    loader = ImageFolderLoader(images, nhwc.inputs[0], channel_order="rgb")
    assert loader.layout == "NHWC" and len(loader) == 6
    image, annotation = loader[0]
    assert image.shape == (12, 10, 3) and annotation is None
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 255
    bgr = ImageFolderLoader(images, nhwc.inputs[0])[0][0]
    np.testing.assert_array_equal(bgr, image[:, :, ::-1])
    ov.layout_helpers.set_layout(nhwc.inputs[0], ov.Layout("NCHW"))  # the model's own layout wins
    assert image_layout(nhwc.inputs[0]) == "NCHW"


def test_image_layout_rejects_non_image_inputs():
    x = ops.parameter([1, 16], np.float32, name="tokens")
    with pytest.raises(ValueError, match="model input 'tokens' has shape \\[1,16\\]"):
        image_layout(ov.Model([ops.relu(x)], [x]).inputs[0])


# ------------------------------------------------------------------------------------------------- configs
def _config(ir, images, **changes):
    config = {
        "model": {"model_name": "net", "model": str(ir), "weights": str(ir.with_suffix(".bin"))},
        "engine": {"type": "simplified", "data_source": str(images)},
        "compression": {"target_device": "ANY", "algorithms": [
            {"name": "DefaultQuantization", "params": {"preset": "performance", "stat_subset_size": 4}}]},
    }
    config.update(changes)
    return config


def test_json_config_with_comments_runs(ir, images, tmp_path, capsys):
    text = "/* POT template style */\n" + json.dumps(_config(ir, images), indent=1).replace(
        '"model": {', '"model": { // the model\n', 1)
    path = tmp_path / "config.json"
    path.write_text(text)
    out = tmp_path / "results"
    assert main(["-c", str(path), "-o", str(out)]) == 0
    assert _fake_quantize_count(out / "net.xml") > 0
    assert "Quantizing with DefaultQuantization" in capsys.readouterr().err


def test_yaml_config_runs(ir, images, tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(_config(ir, images)))
    assert main(["-c", str(path), "-o", str(tmp_path / "results")]) == 0
    assert (tmp_path / "results" / "net.xml").is_file()


def test_strip_json_comments_keeps_strings():
    text = '{"a": "http://x/*y*/", /* c */ "b": 1 // d\n}'
    assert json.loads(strip_json_comments(text)) == {"a": "http://x/*y*/", "b": 1}


def test_check_config_fills_pot_cli_defaults(ir, images):
    config = _config(ir, images)
    del config["model"]["model_name"]
    config["compression"]["algorithms"][0]["params"]["preset"] = "accuracy"
    checked = check_config(config)
    params = checked["compression"]["algorithms"][0]["params"]
    assert checked["model"]["model_name"] == "net"
    assert params["preset"] == "mixed" and params["target_device"] == "ANY" and params["inplace_statistics"] is True
    assert checked["engine"]["device"] == "CPU"
    assert config["model"].get("model_name") is None  # the caller's dict is not changed


def test_config_without_preset_keeps_the_model_type_default(ir, images):
    """An unset preset is the model type's default (mixed for transformers), not a hidden 'performance'."""
    from pot_torch.algorithms.params import resolve_params

    config = _config(ir, images)
    config["compression"]["model_type"] = "transformer"
    del config["compression"]["algorithms"][0]["params"]["preset"]
    params = check_config(config)["compression"]["algorithms"][0]["params"]
    assert "preset" not in params
    assert resolve_params("DefaultQuantization", params).preset == "mixed"


@pytest.mark.parametrize("change, message", [
    ({"engine": {"config": "ac.yml"}}, "Accuracy Checker engine is not supported"),
    ({"engine": {"type": "tensorflow"}}, "unknown engine type 'tensorflow'"),
    ({"engine": {"type": "simplified"}}, "needs a data_source folder"),
    ({"compression": {"algorithms": [{"name": "FancyQuantization"}]}}, "Unknown algorithm 'FancyQuantization'"),
    ({"compression": {"algorithms": [{"name": "AccuracyAwareQuantization"}]}}, "needs an accuracy metric"),
    ({"compression": {"algorithms": []}}, "needs \"algorithms\""),
    ({"model": {"model_name": "c", "cascade": [{"name": "a", "model": "a.xml"}]}}, "is a cascade"),
    ({"engine": None}, "has no 'engine' section"),
])
def test_bad_config_fails_with_one_line(change, message, ir, images, tmp_path, capsys):
    config = _config(ir, images, **change)
    config = {key: value for key, value in config.items() if value is not None}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["-c", str(path), "-o", str(tmp_path / "results")]) == 1
    assert message in _error(capsys)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name, text, message", [
    ("config.json", "{not json", "is not valid JSON"),
    ("config.txt", "{}", "must end in .json, .yaml or .yml"),
    ("config.json", "[1, 2]", "must hold a mapping"),
])
def test_unreadable_config_file(name, text, message, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(text)
    assert main(["-c", str(path)]) == 1
    assert message in _error(capsys)


def test_missing_config_file(tmp_path, capsys):
    assert main(["-c", str(tmp_path / "none.json")]) == 1
    line = _error(capsys)
    assert "config file" in line and "none.json' does not exist" in line


def test_read_config_file_reads_pot_templates_format(tmp_path):
    path = tmp_path / "template.json"
    path.write_text('/* comment */\n{\n "model": {"model": "m.xml"}, // trailing\n "engine": {}, "compression": {}\n}')
    assert read_config_file(path)["model"] == {"model": "m.xml"}


# ---------------------------------------------------------------------------------------------------- demo
def test_demo_quick_prints_the_table_and_writes_ir(tmp_path, cli_files_guard):
    out = tmp_path / "demo"
    run = cli_files_guard.subprocess(["demo", "--quick", "-o", str(out)], timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 4  # header + FP32 + two INT8 rows
    assert "FP32" in rows[1] and "DefaultQuantization" in rows[2] and "AccuracyAwareQuantization" in rows[3]
    assert "CPU default inference precision" in run.stdout
    assert "[1/6]" in run.stderr and "Training" in run.stderr
    for folder in ("fp32", "int8_default", "int8_accuracy_aware"):
        xml = out / folder / "demo_cnn.xml"
        assert xml.is_file()
        assert (_fake_quantize_count(xml) > 0) == (folder != "fp32")
    assert (out / "results.md").read_text().startswith("| model |")
    assert f"Quantization report: {out / 'report.html'}" in run.stdout
    assert "<svg" in (out / "report.html").read_text() and (out / "report.json").is_file()


def test_demo_refuses_an_existing_output_folder_before_training(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    assert main(["demo", "--quick", "-o", str(tmp_path / "demo")]) == 1
    assert "already exists; pass --overwrite" in _error(capsys)
    assert "[1/6]" not in capsys.readouterr().err


def test_cli_modules_do_not_import_torch():
    code = "import sys, pot_torch.cli, pot_torch.cli_config, pot_torch.image_folder; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
