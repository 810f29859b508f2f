"""POT's helpers for the ``ignored`` parameter: ``preprocess_ignored_params`` (the parameter with its
defaults, per cascade member) and ``is_ignored`` (whether one op stays in floating point)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import openvino as ov

from pot_torch.algorithms.params import ignored_for_member
from pot_torch.algorithms.quantization.ignored import op_matches
from pot_torch.graph.nx_model import CompressedModel

_DEFAULTS = {"skip_model": False, "scope": [], "operations": []}


def _with_defaults(ignored: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return {key: (list(default) if isinstance(default, list) else default) for key, default in _DEFAULTS.items()
            } | dict(ignored or {})


def preprocess_ignored_params(ignored_params: Optional[Mapping[str, Any]], model: CompressedModel
                              ) -> Dict[str, Any]:
    """``ignored_params`` with every key present (``skip_model`` False, empty ``scope`` and ``operations``);
    for a cascade, ``{member name: that}`` (a single ``ignored`` applies to every member, a per-member one to
    its member).

    :raises ValueError: a per-member ``ignored`` on a single model, or one naming members the cascade lacks.
    """
    if not model.is_cascade:
        return _with_defaults(ignored_for_member(ignored_params, None, model.member_names))
    return {name: _with_defaults(ignored_for_member(ignored_params, name, model.member_names))
            for name in model.member_names}


def is_ignored(ignored_params: Mapping[str, Any], op: ov.Node, skipped: bool = True) -> bool:
    """Whether ``op`` stays in floating point under ``ignored_params`` (one model's, as
    ``preprocess_ignored_params`` gives it): ``skip_model``, its friendly name in ``scope``, or its type (and
    attributes) in ``operations``. ``skipped`` is accepted for POT's signature: POT also honoured a
    ``skipped`` mark its own passes put on nodes, which ``openvino.Node`` objects do not carry."""
    del skipped  # documented above
    if ignored_params.get("skip_model") or op.get_friendly_name() in ignored_params.get("scope", ()):
        return True
    return any(op_matches(op, pattern) for pattern in ignored_params.get("operations", ()))
