"""Algorithm registry: algorithms are found by their POT name."""
from __future__ import annotations

import difflib
from typing import Callable, Dict, List, Type, TypeVar

T = TypeVar("T")


class Registry:
    """Maps names to classes; ``register`` is a class decorator.

    :param name: the registry's own name; ``'<registry name>.<algorithm name>'`` is accepted in look-ups, as
        in POT.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: Dict[str, type] = {}

    def register(self, name: str | None = None) -> Callable[[Type[T]], Type[T]]:
        """Register a class under ``name`` (default: the class name) and set its ``name`` attribute."""

        def decorator(cls: Type[T]) -> Type[T]:
            key = name or cls.__name__
            if key in self._items and self._items[key] is not cls:
                raise ValueError(f"'{key}' is already registered in {self.name} by {self._items[key]!r}")
            self._items[key] = cls
            cls.name = key  # type: ignore[attr-defined]
            return cls

        return decorator

    def get(self, name: str) -> type:
        """Return the class registered as ``name``; an unknown name raises ``ValueError`` listing the valid ones
        (and the close ones first)."""
        key = name
        prefix = f"{self.name}."
        if isinstance(key, str) and key.startswith(prefix):
            key = key[len(prefix):]
        if key not in self._items:
            close = difflib.get_close_matches(str(key), self.names, n=3, cutoff=0.8)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(f"Unknown algorithm '{name}'{hint}. Registered algorithms: {', '.join(self.names)}.")
        return self._items[key]

    @property
    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


COMPRESSION_ALGORITHMS = Registry("QuantizationAlgos")
