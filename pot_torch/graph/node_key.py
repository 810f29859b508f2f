"""``NodeKey``: how statistics and ignored scopes name one op output (the op's friendly name, or with its port).

A key is the friendly name (output 0) or ``(friendly_name, output_index)`` for another output, as POT's
statistics layouts keyed them. Inserting FakeQuantize ops never renames ops, so a key measured on the FP model
names the same tensor on the quantized one.
"""
from __future__ import annotations

from typing import Hashable, Tuple, Union

import openvino as ov

#: An op output: ``'name'`` (output 0) or ``('name', output_index)``.
NodeKey = Union[str, Tuple[str, int]]


def node_key(name: str, port: int = 0) -> NodeKey:
    """The key of output ``port`` of the op named ``name``."""
    return name if port == 0 else (name, port)


def output_key(output: ov.Output) -> NodeKey:
    """The key of ``output``."""
    return node_key(output.get_node().get_friendly_name(), output.get_index())


def split_node_key(key: Hashable) -> Tuple[str, int]:
    """``(friendly_name, output_index)`` of a node key.

    :raises ValueError: ``key`` is neither a name nor a ``(name, int)`` pair.
    """
    if isinstance(key, str):
        return key, 0
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], int):
        return key[0], key[1]
    raise ValueError(f"a statistics node key is an op friendly name or (friendly_name, output_index), got {key!r}")


def node_key_label(key: Hashable) -> Hashable:
    """A node key as a text name: ``'name'`` stays, ``('name', port)`` becomes ``'name.port'`` (POT's
    ``convert_output_key``)."""
    if not isinstance(key, tuple):
        return key
    if len(key) != 2:
        raise ValueError(f"a statistics node key is a name or a (name, output_index) pair, got {key!r}")
    return f"{key[0]}.{key[1]}"
