"""Faults during quantization and saving: each leaves the input model and existing output files untouched and
raises an error that says what happened and, for data faults, at which data set item."""
from __future__ import annotations

import os
import re
import resource
import signal
import sys
from pathlib import Path

import openvino as ov
import pytest

from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline, save_model
from tests.classification_metrics import Accuracy
from tests.model_builders import conv_model, outlier_classifier


class FaultyLoader(DataLoader):
    """Items ``(array, label)``; the ``fail_at``-th read (counting every read, 0-based) raises ``error``."""

    def __init__(self, inputs, labels, fail_at: int, error: BaseException) -> None:
        super().__init__()
        self.inputs, self.labels, self.fail_at, self.error, self.reads = inputs, labels, fail_at, error, 0

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        self.reads += 1
        if self.reads - 1 == self.fail_at:
            raise self.error
        return self.inputs[index], int(self.labels[index])


def snapshot(model: CompressedModel, folder: Path) -> bytes:
    """The IR bytes of ``model`` (to prove it did not change)."""
    folder.mkdir(exist_ok=True)
    ov.save_model(model.get_model(), str(folder / "snap.xml"), compress_to_fp16=False)
    return (folder / "snap.xml").read_bytes() + (folder / "snap.bin").read_bytes()


def folder_contents(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture()
def outputs(tmp_path):
    """An output folder already holding a saved model (``model.xml``/``.bin``) and its contents."""
    folder = tmp_path / "out"
    save_model(CompressedModel(conv_model(seed=3)), str(folder), model_name="model")
    return folder, folder_contents(folder)


def _classifier_run(loader, algorithm="DefaultQuantization", metric=None, **engine_config):
    ov_model, _, _ = outlier_classifier()
    model = CompressedModel(ov_model)
    engine = IEEngine({"device": "CPU", **engine_config}, loader, metric)
    params = {"stat_subset_size": 16}
    if algorithm == "AccuracyAwareQuantization":
        params.update(maximal_drop=0.0, ranking_subset_size=8)
    return model, create_pipeline([{"name": algorithm, "params": params}], engine)


@pytest.mark.parametrize("requests", [1, 0])
@pytest.mark.parametrize("error", [ValueError("corrupt image file"), KeyboardInterrupt()],
                         ids=["ValueError", "KeyboardInterrupt"])
def test_data_loader_fault_during_statistics_names_the_item_and_changes_nothing(error, requests, tmp_path, outputs):
    _, inputs, labels = outlier_classifier()
    loader = FaultyLoader(inputs[:16], labels[:16], fail_at=5, error=error)
    model, pipeline = _classifier_run(loader, stat_requests_number=requests)
    before = snapshot(model, tmp_path / "before")
    with pytest.raises(type(error)) as raised:
        pipeline.run(model)
    if isinstance(error, ValueError):
        assert str(raised.value) == "corrupt image file"  # the user's error, unchanged
    assert any("data set item 5 (sample 6 of 16 in this pass) from FaultyLoader" in note
               for note in getattr(raised.value, "__notes__", []))
    assert snapshot(model, tmp_path / "after") == before
    folder, contents = outputs
    assert folder_contents(folder) == contents


def test_ctrl_c_during_accuracy_search_names_the_item_and_changes_nothing(tmp_path, outputs):
    _, inputs, labels = outlier_classifier()
    # 16 statistics reads (MinMax/FBC share a pass), 1 annotation check, then FP and INT8 evaluations on 40
    # items: read 100 falls inside the accuracy search's evaluations
    loader = FaultyLoader(inputs[:40], labels[:40], fail_at=100, error=KeyboardInterrupt())
    model, pipeline = _classifier_run(loader, "AccuracyAwareQuantization", Accuracy(percent=False))
    before = snapshot(model, tmp_path / "before")
    with pytest.raises(KeyboardInterrupt) as raised:
        pipeline.run(model)
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == 1 and notes[0].startswith("raised while reading data set item ")
    assert snapshot(model, tmp_path / "after") == before
    folder, contents = outputs
    assert folder_contents(folder) == contents


def test_nan_metric_in_accuracy_search_is_an_error(tmp_path):
    _, inputs, labels = outlier_classifier()
    loader = FaultyLoader(inputs[:40], labels[:40], fail_at=-1, error=ValueError())
    model, pipeline = _classifier_run(loader, "AccuracyAwareQuantization", Accuracy(percent=False, nan=True))
    before = snapshot(model, tmp_path / "before")
    with pytest.raises(ValueError, match="metric 'accuracy' .*NaN"):
        pipeline.run(model)
    assert snapshot(model, tmp_path / "after") == before


def _in_child(action) -> str:
    """Run ``action()`` in a forked child; return ``'<ErrorType>: <message>'`` or ``'ok'``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            action()
            message = "ok"
        except BaseException as error:  # noqa: B902 - reported to the parent
            message = f"{type(error).__name__}: {error}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return pipe.read()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs fork (Linux)")


@needs_fork
def test_full_disk_while_saving_leaves_existing_files(outputs):
    folder, contents = outputs
    model = CompressedModel(conv_model(seed=5, channels=64, size=8))  # ~150 kB of weights

    def save_with_4kb_file_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        save_model(model, str(folder), model_name="model")

    message = _in_child(save_with_4kb_file_limit)
    assert message.startswith(f"RuntimeError: writing the model into save_path '{folder}' failed part way "
                              "(is the disk full?)")
    assert "existing files there are unchanged" in message
    assert folder_contents(folder) == contents  # old model intact, no partial or temporary files


@needs_fork
def test_read_only_output_folder_gives_permission_error_and_leaves_files(outputs):
    folder, contents = outputs
    model = CompressedModel(conv_model(seed=5))
    folder.chmod(0o555)
    folder.parent.chmod(0o755)
    for parent in folder.parents:  # let an unprivileged child reach the folder
        if str(parent).startswith("/tmp/") and parent.exists():
            parent.chmod(parent.stat().st_mode | 0o005)

    def save_without_privileges():
        if os.geteuid() == 0:  # root ignores file modes: drop to 'nobody'
            os.setgid(65534)
            os.setuid(65534)
        save_model(model, str(folder), model_name="model")

    try:
        message = _in_child(save_without_privileges)
    finally:
        folder.chmod(0o755)
    assert message == (f"PermissionError: [Errno 13] cannot write the model into save_path '{folder}': Permission "
                       "denied; give a folder you can write to (existing files there are unchanged)")
    assert folder_contents(folder) == contents


def _test_is_xfail(source: str, name: str) -> bool:
    """Whether ``def name`` in ``source`` carries a ``pytest.mark.xfail`` decorator."""
    before = source[:source.index(f"def {name}(")].rstrip().splitlines()
    decorators = []
    for line in reversed(before):
        if not line.startswith("@") and not line.startswith(" "):
            break
        decorators.append(line)
    return any("xfail" in line for line in decorators)


def test_bad_input_page_names_real_tests_and_only_open_bugs_as_open():
    """docs/bad-input.md stays true: every test it cites exists, and a row says "open bug" exactly when its
    test is an expected failure (a fixed bug's row must say what happens now)."""
    root = Path(__file__).resolve().parent.parent
    problems = []
    for row in (root / "docs" / "bad-input.md").read_text().splitlines():
        if not row.startswith("| ") or "tests/" not in row:
            continue
        current_file = None
        for file_name, test_name in re.findall(r"(?:(tests/\w+\.py))?(?:::(\w+))?", row):
            current_file = file_name or current_file
            if file_name and not (root / file_name).is_file():
                problems.append(f"{file_name} does not exist")
            if not test_name:
                continue
            source = (root / current_file).read_text()
            if f"def {test_name}(" not in source:
                problems.append(f"{current_file}::{test_name} does not exist")
            elif _test_is_xfail(source, test_name) != ("open bug" in row):
                problems.append(f"{current_file}::{test_name}: the row's 'open bug' and the test's xfail disagree")
    assert not problems, "\n".join(problems)
