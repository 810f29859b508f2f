"""Attribute-access dictionaries, the stand-in for POT's addict-based configs."""
from __future__ import annotations

from typing import Any, Mapping


class AttrDict(dict):
    """A ``dict`` whose keys can also be read and written as attributes.

    POT configs were ``addict.Dict`` objects, so user code such as ``self.config.data_source`` works on them.
    Nested mappings (also inside lists) are converted on construction. As with addict, reading a missing key
    as an attribute gives an empty ``AttrDict`` (falsy, so ``if self.config.annotation_file:`` works); the key
    is not added. Algorithm parameters never rely on this: they are validated and completed with defaults.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return AttrDict()

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def __deepcopy__(self, memo: dict) -> "AttrDict":
        import copy

        return AttrDict({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        """Return a plain nested ``dict`` copy."""
        return {k: _unwrap(v) for k, v in self.items()}


def _wrap(value: Any) -> Any:
    if isinstance(value, AttrDict):
        return value
    if isinstance(value, Mapping):
        return AttrDict(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, AttrDict):
        return value.to_dict()
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def as_config(config: Any) -> Any:
    """Return ``config`` with attribute access if it is a plain mapping; other objects pass unchanged."""
    if config is None or isinstance(config, AttrDict):
        return config
    if isinstance(config, Mapping):
        return AttrDict(config)
    return config
