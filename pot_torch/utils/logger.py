"""Logging set-up with POT's helper names: ``init_logger``, ``get_logger``, ``root``, ``manager``,
``RegularLogger``, ``ProgressBarLogger``, ``stdout_redirect``.

pot_torch's loggers live under the ``pot_torch`` logger of Python's logging hierarchy (``root`` here, as POT's
``root`` was the top of its own hierarchy); ``manager`` is the manager that holds them.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
from typing import Any, Callable, Iterator, Optional, TextIO, TypeVar, Union

from tqdm import tqdm

_ROOT = "pot_torch"
_progress_bar_enabled = False
_T = TypeVar("_T")

#: POT's name of the DEBUG level.
DEBUG_LEVEL = logging.DEBUG
#: The manager of pot_torch's loggers (Python's logging manager).
manager = logging.Logger.manager


class RegularLogger(logging.Logger):
    """The class of pot_torch's loggers, as POT's: ``info`` accepts (and ignores) POT's ``force=True``, and the
    progress methods do nothing (no progress bar is attached)."""

    def __init__(self, name: str, level: int = logging.NOTSET) -> None:
        super().__init__(name, level)
        self.progress_bar_disabled = True

    def update_progress(self, value: float) -> None:
        """Advance the progress bar by ``value`` (no bar here: nothing to advance)."""

    def reset_progress_total(self, total: int, increase_percent: float) -> None:
        """Restart the progress bar with ``total`` steps (no bar here: nothing to restart)."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` at INFO; POT's ``force`` keyword is accepted. Records name the caller, not this method."""
        kwargs.pop("force", None)
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().info(msg, *args, **kwargs)


class ProgressBarLogger(RegularLogger):
    """A logger that drives a tqdm progress bar, as POT's ``--progress-bar`` mode did: ``update_progress(n)``
    advances it by ``n`` steps (closing it at the end), ``reset_progress_total(total, fraction)`` restarts it
    with ``total`` steps, ``fraction`` of them done; ``info(msg, force=True)`` also shows ``msg`` on the bar."""

    def __init__(self, name: str, level: int = logging.NOTSET) -> None:
        super().__init__(name, level)
        self.progress_bar_disabled = False
        self._bar: Optional[tqdm] = None

    def _progress(self) -> tqdm:
        if self._bar is None:
            self._bar = tqdm(total=100, leave=False)
        return self._bar

    def update_progress(self, value: float) -> None:
        bar = self._progress()
        step = min(int(value), bar.total - bar.n)
        bar.update(step)
        if bar.n >= bar.total:
            bar.close()
            self._bar = None

    def reset_progress_total(self, total: int, increase_percent: float) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = tqdm(total=int(total), initial=int(total * increase_percent), leave=False)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("force"):
            self._progress().set_description(str(msg))
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().info(msg, *args, **kwargs)


def get_logger(name: str) -> logging.Logger:
    """Return a logger under the ``pot_torch`` hierarchy (module names are used as they are).

    Loggers created here are ``RegularLogger`` objects, as POT's were; Python's default logger class for other
    libraries is left alone.
    """
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    # Manager.getLogger creates loggers under logging's module lock (a private name, present since Python 3.2):
    # holding it while the class is swapped keeps other threads from creating a logger of the swapped class.
    with logging._lock:  # type: ignore[attr-defined]
        previous = manager.loggerClass
        manager.loggerClass = RegularLogger
        try:
            return manager.getLogger(name)
        finally:
            manager.loggerClass = previous


#: The top of pot_torch's logger hierarchy (the ``pot_torch`` logger).
root = get_logger(_ROOT)


def init_logger(level: str | int = "INFO", stream: Union[TextIO, bool] = False, file_name: Optional[str] = None,
                progress_bar: bool = False) -> None:
    """Configure pot_torch logging as POT's ``init_logger`` did.

    :param level: logging level name or number.
    :param stream: where log lines go: a text stream (POT's ``sys.stdout`` default), ``True`` for stdout or
        ``False`` (the default) for stderr.
    :param file_name: also write the log to this file.
    :param progress_bar: show tqdm progress bars in long loops even when not asked per call.
    """
    global _progress_bar_enabled
    _progress_bar_enabled = bool(progress_bar)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("%(levelname)s:%(name)s:%(message)s")
    target = stream if hasattr(stream, "write") else (sys.stdout if stream else sys.stderr)
    handler: logging.Handler = logging.StreamHandler(target)
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


def stdout_redirect(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call ``fn(*args, **kwargs)`` with its stdout and stderr captured, log what it printed at DEBUG level and
    return its result (POT used it to quiet Model Optimizer)."""
    with io.StringIO() as captured, contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        result = fn(*args, **kwargs)
        printed = captured.getvalue()
    if printed:
        get_logger(__name__).debug(printed)
    return result
