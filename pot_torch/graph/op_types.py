"""The op types OpenVINO knows, to check the op type names users write (``ignored.operations[].type``).

OpenVINO has no Python call listing its ops, so :func:`is_op_type` asks ``NodeFactory`` of every opset
(``opset1``, ``opset2``, ... as far as the installed runtime goes) to build the type, and :func:`close_op_types`
suggests names among the types the ``openvino.opsetN`` functions build. :func:`warn_op_types_not_in` checks
names against one model.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from typing import Iterable, List, Optional, Tuple

import openvino as ov
from openvino.utils.node_factory import NodeFactory

from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Op types that exist but ``NodeFactory`` cannot build without a value.
_NOT_BUILDABLE = frozenset({"Constant"})


@functools.lru_cache(maxsize=None)
def _factories() -> Tuple[NodeFactory, ...]:
    factories = []
    while True:
        try:
            factories.append(NodeFactory(f"opset{len(factories) + 1}"))
        except RuntimeError:  # the first opset this runtime does not have
            return tuple(factories)


@functools.lru_cache(maxsize=None)
def is_op_type(name: str) -> bool:
    """Whether ``name`` is the type name of an op of some OpenVINO opset (e.g. ``'Convolution'``)."""
    if name in _NOT_BUILDABLE:
        return True
    for factory in _factories():
        try:
            factory.create(name)
            return True
        except RuntimeError:
            continue
    return False


@functools.lru_cache(maxsize=None)
def _opset_type_names() -> Tuple[str, ...]:
    """The op type names the ``openvino.opsetN`` functions build (the names are constants of their code)."""
    names = set(_NOT_BUILDABLE)
    for version in range(1, len(_factories()) + 1):
        try:
            module = importlib.import_module(f"openvino.opset{version}")
        except ImportError:
            continue
        for function in vars(module).values():
            code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
            names.update(c for c in getattr(code, "co_consts", ()) if isinstance(c, str) and c[:1].isupper()
                         and c.isidentifier())
    return tuple(sorted(name for name in names if is_op_type(name)))


def close_op_types(name: str, extra: Iterable[str] = ()) -> List[str]:
    """OpenVINO op types (and ``extra`` names, e.g. a model's own op types) spelled like ``name``."""
    candidates = sorted(set(_opset_type_names()) | set(extra))
    return difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)


def unknown_op_type_problem(name: str) -> Optional[str]:
    """``None`` if ``name`` is an OpenVINO op type, else a sentence saying so with close names."""
    if is_op_type(name):
        return None
    return (f"'operations' names the op type {name!r}, which OpenVINO does not have; close op types: "
            f"{close_op_types(name)}. Use the type names of openvino.Node.get_type_name(), e.g. 'Convolution' "
            "(an op of an extension is never quantized, so it needs no ignoring)")


def warn_op_types_not_in(model: ov.Model, names: Iterable[str], what: str = "ignored operations") -> List[str]:
    """Warn about each of ``names`` that no op of ``model`` has as its type (it then selects nothing).

    :param what: what named the types, for the message.
    :returns: those names, sorted.
    """
    present = {op.get_type_name() for op in model.get_ops()}
    missing = sorted(set(names) - present)
    for name in missing:
        logger.warning("%s name the op type '%s', which no op of model '%s' has, so it selects nothing; the "
                       "model's op types: %s%s", what, name, model.get_friendly_name(), ", ".join(sorted(present)),
                       _close_hint(name, present))
    return missing


def _close_hint(name: str, present: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(present), n=3, cutoff=0.6)
    return f" (close: {', '.join(close)})" if close else ""
