"""POT's ``pot`` command line on ``pot-torch`` (issue #14 item 2): a POT user's shell history runs as it was.

Layout of every test (the current folder is ``tmp_path``, see ``conftest.cli_files_guard``; fixtures from
``test_cli_safety``)::

    proj/model/net.xml, net.bin     the FP32 input model
    proj/images/*.png, sub/*.png    the calibration images
"""
import json
import re

import openvino as ov
import pytest

from pot_torch.cli import main
from test_cli_safety import DATA, MODEL, no_work, project  # noqa: F401  (fixtures)

WEIGHTS = MODEL.replace(".xml", ".bin")
POT_Q = ["-q", "default", "-m", MODEL, "-w", WEIGHTS, "--engine", "simplified", "--data-source", DATA]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$")


def _fake_quantizes(xml):
    return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(xml)).get_ops())


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("pot-torch: error: "), err
    return err[-1][len("pot-torch: error: "):]


def _runs(folder):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def _config_file(tmp_path, **engine):
    config = {"model": {"model_name": "net", "model": MODEL, "weights": WEIGHTS},
              "engine": {"type": "simplified", "data_source": DATA, **engine},
              "compression": {"target_device": "ANY",
                              "algorithms": [{"name": "DefaultQuantization", "params": {"stat_subset_size": 2}}]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return "config.json"


# --------------------------------------------------------------------------------------------- layout
def test_quantize_default_writes_the_int8_ir_where_pot_did(project, tmp_path):
    assert main(POT_Q) == 0
    run_folder = tmp_path / "results" / "model_name_DefaultQuantization"
    (stamp,) = _runs(run_folder)
    assert TIMESTAMP.match(stamp)
    xml = run_folder / stamp / "optimized" / "model_name.xml"
    assert (run_folder / stamp / "optimized").is_dir() and sorted(_runs(xml.parent)) == [
        "model_name.bin", "model_name.xml"]
    assert _fake_quantizes(xml) > 0
    assert main(POT_Q) == 0  # a second run: a new timestamp folder, the first one kept
    assert len(_runs(run_folder)) == 2 and stamp in _runs(run_folder)


def test_name_names_the_files_not_the_folder_as_in_pot(project, tmp_path):
    assert main(POT_Q + ["-n", "mynet", "--output-dir", "out", "--preset", "mixed"]) == 0
    (stamp,) = _runs(tmp_path / "out" / "model_name_DefaultQuantization")
    assert _runs(tmp_path / "out" / "model_name_DefaultQuantization" / stamp / "optimized") == [
        "mynet.bin", "mynet.xml"]


def test_direct_dump_writes_into_output_dir_optimized_and_replaces_only_with_overwrite(project, tmp_path, capsys):
    argv = POT_Q + ["--output-dir", "dump", "-d"]
    assert main(argv) == 0
    assert _runs(tmp_path / "dump") == ["optimized"]
    assert _runs(tmp_path / "dump" / "optimized") == ["model_name.bin", "model_name.xml"]
    assert main(argv) == 1 and "already exists; pass --overwrite" in _error_line(capsys)
    assert main(argv + ["--overwrite"]) == 0


def test_direct_dump_keeps_the_input_safety_checks(project, no_work, tmp_path, capsys):
    assert main(POT_Q + ["--output-dir", DATA + "/sub", "-d", "--overwrite"]) == 1
    assert "inside the data folder" in _error_line(capsys)


def test_config_file_uses_pot_layout_with_the_config_model_name(project, tmp_path):
    assert main(["-c", _config_file(tmp_path), "--output-dir", "res"]) == 0
    (stamp,) = _runs(tmp_path / "res" / "net_DefaultQuantization")
    assert _fake_quantizes(tmp_path / "res" / "net_DefaultQuantization" / stamp / "optimized" / "net.xml") > 0


def test_config_file_takes_data_source_from_the_command_line(project, tmp_path):
    config = json.loads((tmp_path / _config_file(tmp_path)).read_text())
    del config["engine"]["data_source"]
    (tmp_path / "nodata.json").write_text(json.dumps(config))
    assert main(["-c", "nodata.json", "--data-source", DATA, "-o", "exact"]) == 0
    assert _runs(tmp_path / "exact") == ["net.bin", "net.xml"]


def test_ignored_options_are_said_not_refused(project, tmp_path, capsys):
    assert main(POT_Q + ["--max-drop", "0.01", "--log-level", "WARNING", "--progress-bar", "--stream-output"]) == 0
    assert "--max-drop is used only with -q accuracy_aware; ignored" in capsys.readouterr().err


# -------------------------------------------------------------------------------- POT's messages
CONFIG = "config.json"


@pytest.mark.parametrize("argv, message", [
    (["-m", MODEL], "Either --config or --quantize option should be specified"),
    (["-q", "default", "-c", CONFIG], "Either --config or --quantize option should be specified"),
    (["-q", "default", "-m", MODEL], "--quantize option requires model and weights to be specified."),
    (["-q", "default", "-m", MODEL, "-w", WEIGHTS],
     "--quantize option requires AC config to be specified or --engine should be `simplified`."),
    (["-q", "accuracy_aware", "-m", MODEL, "-w", WEIGHTS, "--engine", "simplified", "--data-source", DATA],
     "For AccuracyAwareQuantization --max-drop should be specified"),
    (["-q", "default", "-m", MODEL, "-w", WEIGHTS, "--engine", "simplified"],
     "For Simplified mode `--data-source` option should be specified"),
    (["-c", CONFIG, "-m", MODEL], "Either --config or --model option should be specified"),
    (["-c", CONFIG, "-w", WEIGHTS], "Either --config or --weights option should be specified"),
    (["-c", CONFIG, "--preset", "mixed"], "Either --config or --preset option should be specified"),
    (["-c", CONFIG, "--ac-config", "ac.yml"], "Either --config or --ac_config option should be specified"),
    (POT_Q + ["-e"], "Can not make evaluation in simplified mode"),
    (["-c", CONFIG, "--evaluate"], "Can not make evaluation in simplified mode"),
])
def test_wrong_combinations_exit_1_with_pots_message(argv, message, project, no_work, tmp_path, capsys):
    _config_file(tmp_path)
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith(message), line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("argv", [
    ["-q", "default", "-m", MODEL, "-w", WEIGHTS, "--ac-config", "ac.yml"],
    ["-q", "default", "-m", MODEL, "-w", WEIGHTS, "--ac-config", "ac.yml", "--engine", "accuracy_checker"],
    ["-c", CONFIG, "--engine", "accuracy_checker"],
])
def test_accuracy_checker_is_refused_with_the_python_api_route(argv, project, no_work, tmp_path, capsys):
    _config_file(tmp_path)
    assert main(argv) == 1
    line = _error_line(capsys)
    assert "Accuracy Checker" in line and "pot_torch.DataLoader and pot_torch.Metric" in line, line


def test_accuracy_aware_on_the_simplified_engine_is_refused_with_pots_message(project, no_work, tmp_path, capsys):
    assert main(["-q", "accuracy_aware", "--max-drop", "0.01"] + POT_Q[2:]) == 1
    line = _error_line(capsys)
    assert "Could not find the required metrics for optimization in the engine" in line
    assert "pot_torch.Metric" in line and not (tmp_path / "results").exists()


@pytest.mark.parametrize("layout", [["-d"], ["--output-dir", "./results"], ["--output-dir", "elsewhere"]])
def test_exact_output_and_pot_layout_are_exclusive(layout, project, no_work, tmp_path, capsys):
    assert main(POT_Q + ["-o", "out"] + layout) == 1
    assert "-o OUT writes into OUT itself" in _error_line(capsys)


@pytest.mark.parametrize("option", [["--log-level", "INFO"], ["--output-dir", "./results"]])
def test_pot_options_with_a_command_is_a_usage_error(option, project, capsys):
    assert main(["-q", "default", "demo"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(option + ["demo"]) == 2  # an option given at its default value is still given
    assert "not both" in capsys.readouterr().err


def test_abbreviated_options_are_refused_as_pot_did(capsys):
    assert main(["--quant", "default"]) == 2
