"""Which ops of a model stay in floating point: POT's ``ignored`` (scope names, operation patterns, skip_model)."""
from __future__ import annotations

import difflib
from typing import Any, Mapping, Optional, Sequence, Set

import numpy as np
import openvino as ov

from pot_torch.graph.op_types import warn_op_types_not_in


def _same_value(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, (list, tuple, np.ndarray)) or isinstance(wanted, (list, tuple, np.ndarray)):
        return list(np.ravel(actual)) == list(np.ravel(wanted))
    if isinstance(actual, str) or isinstance(wanted, str):
        return str(actual).lower() == str(wanted).lower()
    return actual == wanted


def _matches(op: ov.Node, pattern: Mapping[str, Any]) -> bool:
    if op.get_type_name() != pattern["type"]:
        return False
    attributes = op.get_attributes()
    return all(key in attributes and _same_value(attributes[key], value)
               for key, value in (pattern.get("attributes") or {}).items())


#: Whether an op matches one ``operations`` pattern ``{'type': ..., 'attributes': {...}}`` of ``ignored``.
op_matches = _matches


def ignored_op_names(model: ov.Model, ignored: Optional[Mapping[str, Any]],
                     extra_types: Sequence[str] = ()) -> Set[str]:
    """Names of the ops of ``model`` that must stay in floating point.

    :param ignored: POT's ``ignored`` for this model: ``{'scope': [names], 'operations': [{'type', 'attributes'}],
        'skip_model': bool}``.
    :param extra_types: op types ignored in addition (``model_type`` rules).
    :raises ValueError: for a name in ``scope`` that is not an op of the model, listing close names.
    """
    ignored = ignored or {}
    ordered = model.get_ordered_ops()
    names = [op.get_friendly_name() for op in ordered]
    if ignored.get("skip_model"):
        return set(names)
    known = set(names)
    for name in ignored.get("scope", ()):
        if name not in known:
            close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
            raise ValueError(f"ignored scope names '{name}', which is not an op of model "
                             f"'{model.get_friendly_name()}'; close op names: {close or names[:10]}. "
                             "Use the op friendly names of the model (openvino.Model.get_ordered_ops()).")
    result = set(ignored.get("scope", ()))
    warn_op_types_not_in(model, [pattern["type"] for pattern in ignored.get("operations", ())])
    patterns = list(ignored.get("operations", ())) + [{"type": t} for t in extra_types]
    result.update(op.get_friendly_name() for op in ordered if any(_matches(op, p) for p in patterns))
    return result
