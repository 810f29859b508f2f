"""``pot-torch`` never removes or replaces an input or a file the user owns, and refuses before any work.

Layout of every test (the current folder is ``tmp_path``, see ``conftest.cli_files_guard``)::

    proj/model/net.xml, net.bin     the FP32 input model
    proj/images/*.png, sub/*.png    the calibration images
"""
import json
import os
import pathlib

import numpy as np
import openvino as ov
import pytest
from PIL import Image

from model_builders import conv_model
from pot_torch.cli import main

MODEL = "proj/model/net.xml"
DATA = "proj/images"


@pytest.fixture()
def project(tmp_path):
    ov.save_model(conv_model(size=16), str(tmp_path / MODEL), compress_to_fp16=False)
    (tmp_path / DATA / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        where = tmp_path / DATA / ("sub" if index % 2 else "")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(where / f"{index}.png")
    return tmp_path / "proj"


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if the CLI starts loading a model or training the demo's CNN."""
    def refuse(*_, **__):
        raise AssertionError("the command started working before refusing its output folder")

    monkeypatch.setattr("pot_torch.cli_config.load_model", refuse)
    try:
        monkeypatch.setattr("pot_torch_showcase.demo._train", refuse)
    except ImportError:  # no torch: the demo commands fail at once anyway
        pass


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def _refused(argv, capsys, tmp_path, *needles):
    """Run ``argv``; assert exit 1, one error line containing ``needles``, and no file added or changed."""
    before = _tree(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pot-torch: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    assert _tree(tmp_path) == before
    return err[0]


QUANTIZE = ["quantize", "-m", MODEL, "--data", DATA, "--subset-size", "2"]


# --------------------------------------------------------------------------------- outputs holding inputs
@pytest.mark.parametrize("output, needle", [
    ("proj/model", "holds the input model"),             # the user's report: net.bin replaced by the INT8 one
    ("proj/model/", "holds the input model"),
    ("proj/images/../model", "holds the input model"),
    ("proj", "holds the input model"),                   # the user's report: images/ and model/ deleted
    ("proj/images", "holds the data folder"),
])
@pytest.mark.parametrize("overwrite", [True, False])
def test_quantize_refuses_an_output_folder_holding_an_input(output, needle, overwrite, project, no_work,
                                                            tmp_path, capsys):
    line = _refused(QUANTIZE + ["-o", output] + ["--overwrite"] * overwrite, capsys, tmp_path, needle,
                    "choose a new output folder")
    assert "pass --overwrite" not in line  # it would be refused anyway


def test_quantize_refuses_an_output_folder_inside_the_data_folder_with_overwrite(project, no_work, tmp_path,
                                                                                  capsys):
    _refused(QUANTIZE + ["-o", "proj/images/sub", "--overwrite"], capsys, tmp_path, "inside the data folder",
             "proj/images")


def test_quantize_refuses_a_symlink_to_the_model_folder(project, no_work, tmp_path, capsys):
    (tmp_path / "link").symlink_to(project / "model", target_is_directory=True)
    _refused(QUANTIZE + ["-o", "link", "--overwrite"], capsys, tmp_path, "holds the input model")


def test_quantize_refuses_the_weights_folder(project, no_work, tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    os.replace(project / "model" / "net.bin", tmp_path / "weights" / "net.bin")
    _refused(QUANTIZE + ["-w", "weights/net.bin", "-o", "weights", "--overwrite"], capsys, tmp_path,
             "holds the input weights 'weights/net.bin'")


def test_config_file_refuses_an_output_folder_holding_its_inputs(project, no_work, tmp_path, capsys):
    config = {"model": {"model_name": "net", "model": MODEL},
              "engine": {"type": "simplified", "data_source": DATA},
              "compression": {"algorithms": [{"name": "DefaultQuantization"}]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _refused(["-c", "config.json", "-o", "proj/model", "--overwrite"], capsys, tmp_path,
             "holds the input model", "proj/model/net.xml")
    _refused(["-c", "config.json", "-o", "proj", "--overwrite"], capsys, tmp_path, "holds the input")
    _refused(["-c", "config.json", "-o", "proj/images/sub", "--overwrite"], capsys, tmp_path,
             "inside the data folder")


# ---------------------------------------------------------------------------------- folders never replaced
@pytest.mark.parametrize("output, needle", [
    (".", "is the current folder"),
    ("./", "is the current folder"),
    ("..", "holds the current folder"),
    ("/", "is the root folder"),
    ("~", "is your home folder"),
])
@pytest.mark.parametrize("command", ["quantize", "demo"])
def test_refuses_the_current_folder_its_parents_home_and_root(command, output, needle, project, no_work,
                                                              tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    argv = (QUANTIZE if command == "quantize" else ["demo", "--quick"]) + ["-o", output, "--overwrite"]
    _refused(argv, capsys, tmp_path, needle, "give a folder of its own")


def test_demo_refuses_to_replace_a_folder_holding_other_files(no_work, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("mine")
    _refused(["demo", "--quick", "-o", "results", "--overwrite"], capsys, tmp_path,
             "holds files pot-torch did not write (notes.txt)")


def test_quantize_refuses_to_replace_a_folder_holding_other_files(project, no_work, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "other.xml").write_text("<net/>")
    _refused(QUANTIZE + ["-o", "out", "--overwrite"], capsys, tmp_path, "holds files pot-torch did not write",
             "other.xml")


def test_quantize_overwrite_replaces_its_previous_output(project, tmp_path, capsys):
    assert main(QUANTIZE + ["-o", "out"]) == 0
    first = (tmp_path / "out" / "net.bin").read_bytes()
    assert main(QUANTIZE + ["-o", "out/", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["net.bin", "net.xml"]
    assert (tmp_path / "out" / "net.bin").read_bytes() == first


def test_quantize_into_a_new_folder_inside_the_model_folder_keeps_the_model(project, tmp_path):
    before = (project / "model" / "net.bin").read_bytes()
    assert main(QUANTIZE + ["-o", "proj/model/int8"]) == 0
    assert main(QUANTIZE + ["-o", "proj/model/int8", "--overwrite"]) == 0
    assert (project / "model" / "net.bin").read_bytes() == before
    assert (project / "model" / "int8" / "net.xml").is_file()


# ------------------------------------------------------------------------------------------ OutputFolder
def test_output_folder_resolves_dots_symlinks_and_home(tmp_path, monkeypatch):
    from pot_torch.utils.output_folder import OutputFolder

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert OutputFolder.checked("link/out/", False, expected=()).path == (tmp_path / "real" / "out").resolve()
    assert OutputFolder.checked("~/out", False, expected=()).path == (tmp_path / "home" / "out").resolve()
    assert OutputFolder.checked("home/../out", False, expected=()).path == (tmp_path / "out").resolve()


def test_output_folder_staging_keeps_the_old_output_if_the_move_fails(tmp_path, monkeypatch):
    from pot_torch.utils.output_folder import OutputFolder

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("old")
    folder = OutputFolder.checked("out", True, expected=("a.txt",))
    real_rename = pathlib.Path.rename

    def failing_rename(self, target):
        if ".tmp-" in self.name:
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        with folder.staged() as staging:
            (staging / "a.txt").write_text("new")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_folder_rechecks_before_replacing(tmp_path):
    from pot_torch.utils.output_folder import OutputFolder

    (tmp_path / "out").mkdir()
    folder = OutputFolder.checked("out", True, expected=("a.txt",))
    with pytest.raises(FileExistsError, match="did not write \\(b.txt\\)"):
        with folder.staged() as staging:
            (staging / "a.txt").write_text("new")
            (tmp_path / "out" / "b.txt").write_text("the user's, written during the run")
    assert (tmp_path / "out" / "b.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
