"""Output folders that are filled completely or not at all, and never replaced unless asked.

``check_output_folder`` is called before any long work, so a run that would be refused fails at once;
``staged_output_folder`` gives a hidden folder beside the target to write into, and moves it into place only
when the ``with`` body succeeds.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_output_folder(folder: os.PathLike | str, overwrite: bool) -> Path:
    """Return ``folder`` as a path if it may be written.

    :raises FileExistsError: it exists and ``overwrite`` is False.
    :raises NotADirectoryError: it exists and is not a folder.
    """
    path = Path(os.path.expanduser(str(folder)))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output path '{path}' exists and is not a folder; choose another output path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output folder '{path}' already exists; pass --overwrite to replace it or choose "
                              "another folder with -o")
    return path


@contextmanager
def staged_output_folder(folder: os.PathLike | str, overwrite: bool) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder``; on success it replaces ``folder``.

    On an error in the ``with`` body the staging folder is deleted and ``folder`` is untouched.
    """
    target = check_output_folder(folder, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    staging = target.with_name(f".{target.name}.tmp-{token}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{token}")
        target.rename(backup)
        staging.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        staging.rename(target)
