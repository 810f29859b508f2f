"""Atomic file writing: write beside the targets under temporary names, then rename them into place.

A crash or error while writing leaves the targets as they were (old content or absent) and removes the
temporary files. Renaming several files cannot be one atomic step; if a rename fails part way, the targets
already moved are taken back and the previous files restored from their backups.
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

_TMP_TAG = "tmp"
_BACKUP_TAG = "bak"


def sibling_path(target: Path, tag: str, token: str) -> Path:
    """A hidden file beside ``target`` that keeps its suffix: ``dir/.stem.<tag>-<token>.suffix``.

    Files written together with one ``token`` share a stem, so a writer that derives one name from another
    (``model.xml`` -> ``model.bin``) finds the right temporary name.
    """
    return target.with_name(f".{target.stem}.{tag}-{token}{target.suffix}")


@contextmanager
def atomic_output_files(targets: Sequence[os.PathLike | str]) -> Iterator[List[Path]]:
    """Yield temporary paths (one per target, same folder and suffix) to write; on success move them in.

    The targets' folders must exist. If the ``with`` body raises, the temporary files are deleted and the
    targets are untouched. Targets that already exist are replaced only after every temporary file is written.

    :param targets: the final file paths.
    """
    final = [Path(t) for t in targets]
    if len(set(final)) != len(final):
        raise ValueError(f"atomic_output_files got the same target twice: {[str(p) for p in final]}")
    token = secrets.token_hex(6)
    temporary = [sibling_path(p, _TMP_TAG, token) for p in final]
    try:
        yield temporary
        missing = [str(t) for t in temporary if not t.is_file()]
        if missing:
            raise RuntimeError(f"the writer did not create the expected files {missing}")
        _move_into_place(list(zip(temporary, final)), token)
    finally:
        for path in temporary:
            _remove_quietly(path)


def _move_into_place(pairs: List[Tuple[Path, Path]], token: str) -> None:
    backups: List[Tuple[Path, Path]] = []
    placed: List[Path] = []
    try:
        for _, target in pairs:
            if target.exists():
                backup = sibling_path(target, _BACKUP_TAG, token)
                os.replace(target, backup)
                backups.append((backup, target))
        for temporary, target in pairs:
            os.replace(temporary, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            _remove_quietly(target)
        for backup, target in backups:
            os.replace(backup, target)
        raise
    for backup, _ in backups:
        _remove_quietly(backup)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
