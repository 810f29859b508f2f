"""Logging set-up with POT's helper names (``init_logger``, ``get_logger``)."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, Optional

_ROOT = "pot_torch"
_progress_bar_enabled = False


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``pot_torch`` hierarchy (module names are used as they are)."""
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


def init_logger(level: str | int = "INFO", stream: bool = False, file_name: Optional[str] = None,
                progress_bar: bool = False) -> None:
    """Configure pot_torch logging as POT's ``init_logger`` did.

    :param level: logging level name or number.
    :param stream: log to stdout instead of stderr.
    :param file_name: also write the log to this file.
    :param progress_bar: show tqdm progress bars in long loops even when not asked per call.
    """
    global _progress_bar_enabled
    _progress_bar_enabled = bool(progress_bar)
    root = logging.getLogger(_ROOT)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("%(levelname)s:%(name)s:%(message)s")
    handler: logging.Handler = logging.StreamHandler(sys.stdout if stream else sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    if file_name:
        file_handler = logging.FileHandler(file_name)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    root.propagate = False


def progress_bar_enabled() -> bool:
    """Whether ``init_logger(progress_bar=True)`` asked for progress bars everywhere."""
    return _progress_bar_enabled


@contextlib.contextmanager
def progress_enabled(enabled: bool = True) -> Iterator[None]:
    """Within the block, show progress bars everywhere if ``enabled`` (restores the previous setting)."""
    global _progress_bar_enabled
    previous = _progress_bar_enabled
    _progress_bar_enabled = bool(enabled) or previous
    try:
        yield
    finally:
        _progress_bar_enabled = previous
