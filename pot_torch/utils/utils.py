"""POT's ``utils/utils.py`` helpers that scripts and custom engines imported: ``create_tmp_dir``,
``convert_output_key``."""
from __future__ import annotations

import os
import tempfile

from pot_torch.graph.node_key import node_key_label as convert_output_key  # noqa: F401  (POT's name)


def create_tmp_dir(parent_dir: str | os.PathLike = tempfile.gettempdir()) -> tempfile.TemporaryDirectory:
    """A new uniquely named folder inside ``parent_dir``, removed when the returned object is cleaned up
    (``.cleanup()``, a ``with`` block, or garbage collection); its path is ``.name``.

    :raises FileNotFoundError: ``parent_dir`` does not exist.
    :raises PermissionError: ``parent_dir`` is not writable.
    """
    if not os.path.isdir(parent_dir):
        raise FileNotFoundError(f"create_tmp_dir: parent folder '{parent_dir}' does not exist; create it first "
                                "or pass an existing folder")
    try:
        return tempfile.TemporaryDirectory(dir=parent_dir)
    except PermissionError as error:
        raise PermissionError(f"create_tmp_dir: cannot create a folder in '{parent_dir}' (permission denied); "
                              "pass a writable parent_dir") from error
