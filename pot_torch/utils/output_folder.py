"""Output folders that are filled completely or not at all, and never replace what the user owns.

``OutputFolder.checked`` is called before any long work, so a run that would be refused fails at once. It
refuses (one error naming the paths and what to do):

- the root folder, the user's home folder, the current folder, or a folder holding any of them;
- a folder that is or holds an input (the model's .xml or .bin, the data folder), with or without
  ``overwrite``; with ``overwrite`` also a folder inside the data folder (read with its subfolders);
- an existing folder, unless ``overwrite``; and with ``overwrite`` an existing folder holding anything but
  what the command writes (``expected``): ``--overwrite`` replaces a previous output, never the user's files.

Paths are compared after ``~`` expansion both as written (made absolute, ``..`` folded) and with symlinks
resolved. ``OutputFolder.staged()`` gives a hidden folder beside the target to write into and moves it into
place only when the ``with`` body succeeds (the checks are repeated then).
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Iterable, Iterator, Optional, Sequence, Tuple

#: (what the input is, its path as the user gave it), e.g. ``("input model", "net.xml")``.
Input = Tuple[str, str]
#: The label of an input read with its subfolders; an output inside it is refused with ``overwrite``.
DATA_FOLDER = "data folder"


def _spellings(path: str) -> FrozenSet[Path]:
    """``path`` (``~`` expanded) made absolute as written and with symlinks resolved."""
    expanded = os.path.expanduser(path)
    return frozenset({Path(os.path.abspath(expanded)), Path(expanded).resolve()})


def _holds(folder: FrozenSet[Path], path: FrozenSet[Path]) -> bool:
    """True if some spelling of ``folder`` is some spelling of ``path`` or one of its parents."""
    return any(f == p or f in p.parents for f in folder for p in path)


def _protected(spellings: FrozenSet[Path]) -> Optional[str]:
    """Why a folder with these ``spellings`` must never be an output folder, or None."""
    named = (("the current folder", Path.cwd()), ("your home folder", Path.home()),
             ("the root folder", Path("/")))
    places = [(what, place, _spellings(str(place))) for what, place in named]
    for what, place, place_spellings in places:
        if spellings & place_spellings:
            return f"is {what} ('{place}')"
    for what, place, place_spellings in places:
        if _holds(spellings, place_spellings):
            return f"holds {what} ('{place}')"
    return None


@dataclass(frozen=True)
class OutputFolder:
    """A checked output folder: ``path`` is where the files go (absolute, symlinks resolved).

    :param given: the folder as the user wrote it (for messages).
    :param overwrite: whether an existing previous output may be replaced.
    :param inputs: what the command reads, as ``(label, path)``; see the module docstring.
    :param expected: the names the command writes into the folder; an existing folder holding anything
        else is never replaced.
    """

    given: str
    path: Path
    overwrite: bool
    inputs: Tuple[Input, ...]
    expected: FrozenSet[str]

    @classmethod
    def checked(cls, folder: os.PathLike | str, overwrite: bool, inputs: Sequence[Input] = (),
                expected: Iterable[str] = ()) -> "OutputFolder":
        """Check ``folder`` for a command that reads ``inputs`` and writes the entries ``expected``.

        :raises ValueError: it is or holds a protected folder or an input (see the module docstring).
        :raises NotADirectoryError: it exists and is not a folder.
        :raises FileExistsError: it exists and ``overwrite`` is False, or it holds entries not in
            ``expected``.
        """
        given = str(folder)
        output = cls(given, Path(os.path.expanduser(given)).resolve(), overwrite, tuple(inputs),
                     frozenset(expected))
        output.check()
        return output

    def check(self) -> None:
        """Run the checks of :meth:`checked` again (the folder may have changed since)."""
        spellings = _spellings(self.given)
        reason = _protected(spellings)
        if reason:
            raise ValueError(f"output folder '{self.given}' {reason}, where pot-torch never writes its "
                             "output (--overwrite would replace everything in it); give a folder of its own, "
                             "e.g. -o results")
        self._check_inputs(spellings)
        path = self.path
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"output path '{self.given}' exists and is not a folder; choose another "
                                     "output path")
        if path.exists() and not self.overwrite:
            raise FileExistsError(f"output folder '{self.given}' already exists; pass --overwrite to replace "
                                  "it or choose another folder with -o")
        if path.exists():
            foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in self.expected)
            if foreign:
                raise FileExistsError(
                    f"output folder '{self.given}' holds files pot-torch did not write "
                    f"({', '.join(foreign)}); "
                    f"--overwrite replaces only a previous output ({', '.join(sorted(self.expected))}): move "
                    "those files away or choose another folder with -o")

    def _check_inputs(self, spellings: FrozenSet[Path]) -> None:
        for label, given in self.inputs:
            input_spellings = _spellings(given)
            home = given if label == DATA_FOLDER else os.path.dirname(given) or "."
            if _holds(spellings, input_spellings):
                raise ValueError(f"output folder '{self.given}' holds the {label} '{given}', which must "
                                 "never be replaced or removed; choose a new output folder that neither is "
                                 f"nor holds '{home}'")
            if self.overwrite and label == DATA_FOLDER and _holds(input_spellings, spellings):
                raise ValueError(f"output folder '{self.given}' is inside the {label} '{given}', whose "
                                 "subfolders are read as input too, so --overwrite could replace data; "
                                 f"choose an output folder outside '{given}'")

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """Yield an empty hidden folder beside the target; on success it replaces the target.

        On an error (in the ``with`` body, the repeated check or the move) the staging folder is deleted and
        the target is as it was.
        """
        self.check()
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(6)
        staging = target.with_name(f".{target.name}.tmp-{token}")
        staging.mkdir()
        try:
            yield staging
            self.check()
            _move_into_place(staging, target, target.with_name(f".{target.name}.old-{token}"))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, target: Path, backup: Path) -> None:
    """Replace ``target`` (if any) by ``staging``; if that fails, put the old ``target`` back."""
    if not target.exists():
        staging.rename(target)
        return
    target.rename(backup)
    try:
        staging.rename(target)
    except BaseException:
        backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
