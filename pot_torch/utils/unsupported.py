"""Names POT exported that have no meaning on the current OpenVINO runtime: importable, refused when used.

A POT script that only imports such a name keeps working; calling it (or creating an instance) raises
``NotImplementedError`` saying why the name has no pot_torch counterpart and what to use instead.
"""
from __future__ import annotations

from typing import Any, Callable, NoReturn


def _refusal(pot_path: str, reason: str) -> str:
    return f"{pot_path} is not available in pot_torch: {reason}"


def unsupported_function(pot_path: str, reason: str) -> Callable[..., NoReturn]:
    """A function named as POT's ``pot_path`` that raises ``NotImplementedError(reason)`` when called."""
    message = _refusal(pot_path, reason)

    def refused(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(message)

    refused.__name__ = refused.__qualname__ = pot_path.rsplit(".", 1)[-1]
    refused.__doc__ = message
    return refused


def unsupported_class(pot_path: str, reason: str) -> type:
    """A class named as POT's ``pot_path`` whose construction raises ``NotImplementedError(reason)``."""
    message = _refusal(pot_path, reason)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(message)

    name = pot_path.rsplit(".", 1)[-1]
    return type(name, (), {"__init__": __init__, "__doc__": message, "__qualname__": name})
