"""``scripts/demo`` and ``scripts/test``: set up on first use, skip the set-up later, pass arguments through.

Each test runs the scripts in a copy of the files they read, with a stand-in ``.venv`` whose ``python`` and
``pot-torch`` only record how they were called (the real first-use install is checked by hand, see README).
"""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_RECORDER = ('#!/bin/sh\necho "$(basename "$0") $*" >> "$(dirname "$0")/../calls.log"\n'
             'exit "${FAKE_EXIT:-0}"\n')


@pytest.fixture()
def checkout(tmp_path):
    for name in ("pyproject.toml", "setup.cfg"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    for tool in ("python", "pot-torch"):
        path = tmp_path / ".venv" / "bin" / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_RECORDER)
        path.chmod(0o755)
    return tmp_path


def _run(checkout, script, *args, **env):
    return subprocess.run([str(checkout / "scripts" / script), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env}, cwd=checkout, timeout=60)


def _calls(checkout):
    log = checkout / ".venv" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_setup_installs_once_and_again_only_when_the_packaging_changes(checkout):
    pip = f"python -m pip install -e {checkout}[torch,test,ray]"
    assert _run(checkout, "setup.sh").returncode == 0
    assert _calls(checkout) == [pip]
    assert _run(checkout, "setup.sh").returncode == 0
    assert _calls(checkout) == [pip]  # the stamp matches: no pip
    with open(checkout / "setup.cfg", "a") as cfg:
        cfg.write("\n# a changed setting\n")
    assert _run(checkout, "setup.sh").returncode == 0
    assert _calls(checkout) == [pip, pip]


def test_a_failed_install_fails_and_is_retried(checkout):
    run = _run(checkout, "setup.sh", FAKE_EXIT="1")
    assert run.returncode != 0
    assert not (checkout / ".venv" / ".pot_torch_setup").exists()
    assert _run(checkout, "setup.sh").returncode == 0
    assert len(_calls(checkout)) == 2


def test_setup_names_a_missing_or_old_python(checkout):
    shutil.rmtree(checkout / ".venv")
    run = _run(checkout, "setup.sh", PYTHON=str(checkout / "no-such-python"))
    assert run.returncode == 1
    assert "needs Python 3.9 or newer" in run.stderr and "PYTHON=" in run.stderr
    assert not (checkout / ".venv").exists()


def test_demo_and_test_pass_their_arguments_through(checkout):
    assert _run(checkout, "demo", "--quick", "-o", "out dir").returncode == 0
    assert _run(checkout, "test", "-k", "cli and not slow", "-x").returncode == 0
    assert _calls(checkout)[1:] == ["pot-torch demo --quick -o out dir",
                                    "python -m pytest -k cli and not slow -x"]


def test_test_script_fails_when_pytest_fails(checkout):
    assert _run(checkout, "setup.sh").returncode == 0
    assert _run(checkout, "test", FAKE_EXIT="1").returncode == 1
