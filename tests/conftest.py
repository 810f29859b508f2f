"""Shared fixtures.

``cli_files_guard`` (automatic in every ``tests/test_cli*.py`` module) checks the bar "no CLI invocation in
the tests removes or modifies a file it did not create": each call of ``main`` in such a module (and each
``cli_files_guard.subprocess`` run) hashes every file of the test's project folder (``tmp_path``, also the
current folder during the test) before and after, and fails the test if a file that existed before and was not
written by an earlier CLI call of the same test was removed or changed, or if staging leftovers remain.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
from typing import Callable, Dict, List, Sequence, Set

import pytest

_LEFTOVER_TAGS = (".tmp-", ".old-")


def _tree_hashes(root: pathlib.Path) -> Dict[pathlib.Path, str]:
    hashes = {}
    for path in root.rglob("*"):
        if path.is_symlink():
            hashes[path] = "link:" + os.readlink(path)
        elif path.is_file():
            hashes[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            hashes[path] = "dir"
    return hashes


class CliFilesGuard:
    """Runs CLI invocations and checks that they leave the user's files (everything under ``root``) alone."""

    def __init__(self, root: pathlib.Path, main: Callable[[List[str]], int]) -> None:
        self.root = root
        self._main = main
        self._tool_files: Set[pathlib.Path] = set()

    def _guarded(self, argv: Sequence[str], call: Callable[[], object]) -> object:
        outside = [arg for arg in argv if os.path.isabs(arg) and os.path.exists(arg)
                   and self.root not in pathlib.Path(arg).resolve().parents
                   and pathlib.Path(arg).resolve() != self.root
                   and pathlib.Path(arg).resolve() not in self.root.parents]
        assert not outside, f"CLI test uses existing paths outside its project folder {self.root}: {outside}"
        before = _tree_hashes(self.root)
        result = call()
        after = _tree_hashes(self.root)
        user_files = {path: digest for path, digest in before.items() if path not in self._tool_files}
        removed = sorted(str(p) for p in user_files if p not in after)
        changed = sorted(str(p) for p, digest in user_files.items() if p in after and after[p] != digest)
        assert not removed and not changed, (
            f"pot-torch {' '.join(argv)} removed {removed} and changed {changed}, files it did not create")
        leftovers = sorted(str(p) for p in after if any(tag in p.name for tag in _LEFTOVER_TAGS))
        assert not leftovers, f"pot-torch {' '.join(argv)} left staging files behind: {leftovers}"
        self._tool_files.update(path for path in after if path not in before or path in self._tool_files)
        return result

    def main(self, argv: List[str]) -> int:
        """``pot_torch.cli.main(argv)`` under the guard."""
        return self._guarded(argv, lambda: self._main(argv))  # type: ignore[return-value]

    def subprocess(self, argv: List[str], **kwargs) -> subprocess.CompletedProcess:
        """``python -m pot_torch.cli *argv`` in a subprocess (cwd: the project folder) under the guard."""
        command = [sys.executable, "-m", "pot_torch.cli", *argv]
        kwargs.setdefault("cwd", self.root)
        return self._guarded(argv, lambda: subprocess.run(command, capture_output=True, text=True, **kwargs))


@pytest.fixture(autouse=True)
def cli_files_guard(request, monkeypatch):
    """In ``test_cli*`` modules: run in ``tmp_path`` and put every call of the module's ``main`` under a
    :class:`CliFilesGuard` (elsewhere: ``None``)."""
    if not request.module.__name__.startswith("test_cli"):
        yield None
        return
    from pot_torch.cli import main

    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch.chdir(tmp_path)
    guard = CliFilesGuard(tmp_path.resolve(), main)
    if hasattr(request.module, "main"):
        monkeypatch.setattr(request.module, "main", guard.main)
    yield guard
