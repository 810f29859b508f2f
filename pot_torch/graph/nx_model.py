"""``CompressedModel``: one model or a cascade of models being compressed."""
from __future__ import annotations

import importlib
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import networkx as nx
import numpy as np
import openvino as ov

from pot_torch.graph.nx_view import build_graph
from pot_torch.utils.logger import get_logger, stdout_redirect  # noqa: F401  (POT's nx_model had them)

logger = get_logger(__name__)

#: POT's ``nx_model`` also exported these; they live in modules that import this one, so they load on first use.
_LAZY_NAMES = {"load_graph": "pot_torch.graph.graph_utils", "save_graph": "pot_torch.graph.graph_utils",
               "is_ignored": "pot_torch.graph.ignored_params",
               "preprocess_ignored_params": "pot_torch.graph.ignored_params"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CompressedModel:
    """A model (or a cascade of models) that algorithms read and transform.

    Build it from an in-memory ``openvino.Model`` (``CompressedModel(ov_model)``), from several named models
    (``CompressedModel(models=[{'name': 'pnet', 'model': m1}, ...])``), or with ``load_model`` from IR files.
    The ``openvino.Model`` objects are wrapped, not copied (where op friendly names repeat, a clone with unique
    names is wrapped instead); ``copy.deepcopy`` clones them.

    :param model: a single ``openvino.Model``.
    :param models: cascade members ``[{'name': str, 'model': openvino.Model}, ...]``.
    :param model_name: the model's name (default: the graph's friendly name).
    """

    def __init__(self, model: Optional[ov.Model] = None, *, models: Optional[List[Dict[str, Any]]] = None,
                 model_name: Optional[str] = None) -> None:
        if (model is None) == (models is None):
            raise ValueError("CompressedModel needs exactly one of 'model' (an openvino.Model) or 'models' "
                             "(a list of {'name': str, 'model': openvino.Model})")
        if model is not None:
            _check_ov_model(model, "model")
            members = [{"name": model_name or model.get_friendly_name(), "model": model}]
            self._is_cascade = False
        else:
            members = []
            for i, entry in enumerate(models or []):
                if not isinstance(entry, dict) or "name" not in entry or "model" not in entry:
                    raise ValueError(f"models[{i}] must be a dict with 'name' and 'model', got {entry!r}")
                _check_ov_model(entry["model"], f"models[{i}]['model']")
                members.append({"name": str(entry["name"]), "model": entry["model"]})
            if not members:
                raise ValueError("CompressedModel(models=...) needs at least one model")
            names = [m["name"] for m in members]
            repeated = sorted(n for n, c in Counter(names).items() if c > 1)
            if repeated:
                raise ValueError(f"cascade member names must be unique, repeated: {repeated}")
            self._is_cascade = len(members) > 1
        for member in members:
            member["model"] = with_unique_friendly_names(member["model"])
        self._models = members
        self._name = model_name or members[0]["name"]
        #: Set by bias correction when it starts: ``{(member name or None, layer): [C] bias}`` of every layer with
        #: a bias as it was then (reverting a quantized layer to floating point puts it back); None before.
        self.biases_before_correction: Optional[Dict[Tuple[Optional[str], str], np.ndarray]] = None

    @property
    def models(self) -> List[Dict[str, Any]]:
        """The members: ``[{'name': str, 'model': openvino.Model}, ...]``."""
        return self._models

    @property
    def name(self) -> str:
        """The model's name (used as the default file name on save)."""
        return self._name

    @property
    def is_cascade(self) -> bool:
        """Whether the model is a cascade of several models."""
        return self._is_cascade

    def get_model(self, name: Optional[str] = None) -> ov.Model:
        """Return the ``openvino.Model`` of member ``name`` (the only one when not a cascade)."""
        if name is None:
            if self._is_cascade:
                raise ValueError(f"this is a cascade; name one of its models: {self.member_names}")
            return self._models[0]["model"]
        for member in self._models:
            if member["name"] == name:
                return member["model"]
        raise KeyError(f"no model named '{name}' in this CompressedModel; members: {self.member_names}")

    @property
    def member_names(self) -> List[str]:
        """Names of the members, in order."""
        return [m["name"] for m in self._models]

    def get_graph(self, name: Optional[str] = None) -> nx.MultiDiGraph:
        """A networkx view of member ``name``'s graph (see ``pot_torch.graph.nx_view.build_graph``).

        The view is built afresh on each call, so it reflects edits made to the model since.
        """
        return build_graph(self.get_model(name))

    def replace_model(self, name: Optional[str], new_model: ov.Model) -> None:
        """Replace a member's ``openvino.Model`` (``name`` None for a single model)."""
        _check_ov_model(new_model, "new_model")
        new_model = with_unique_friendly_names(new_model)
        target = self._models[0] if name is None and not self._is_cascade else None
        for member in self._models:
            if member["name"] == name:
                target = member
        if target is None:
            raise KeyError(f"no model named '{name}' in this CompressedModel; members: {self.member_names}")
        target["model"] = new_model

    def save(self, save_path: str, model_name: Optional[str] = None,
             for_stat_collection: bool = False) -> List[Dict[str, str]]:
        """Write the model as IR into ``save_path`` and return the file paths (POT's ``CompressedModel.save``).

        The same as ``pot_torch.save_model(self, save_path, model_name, for_stat_collection)``: one IR per
        cascade member (``<model_name>_<member>.xml``/``.bin``, or ``<member>`` without ``model_name``).

        :return: ``[{'model': xml_path, 'weights': bin_path}]``, with ``'name'`` per member for a cascade.
        """
        from pot_torch.graph.model_io import save_model  # model_io imports this module

        return save_model(self, save_path, model_name=model_name, for_stat_collection=for_stat_collection)

    def __deepcopy__(self, memo: dict) -> "CompressedModel":
        clone = object.__new__(CompressedModel)
        clone._models = [{"name": m["name"], "model": m["model"].clone()} for m in self._models]
        clone._is_cascade = self._is_cascade
        clone._name = self._name
        clone.biases_before_correction = (None if self.biases_before_correction is None
                                          else dict(self.biases_before_correction))
        memo[id(self)] = clone
        return clone

    def __repr__(self) -> str:
        kind = "cascade" if self._is_cascade else "model"
        return f"CompressedModel({kind} '{self._name}', members={self.member_names})"


def _check_ov_model(model: Any, what: str) -> None:
    if not isinstance(model, ov.Model):
        raise TypeError(f"{what} must be an openvino.Model, got {type(model).__name__}; read IR files with "
                        "pot_torch.load_model or openvino.Core().read_model")


def with_unique_friendly_names(model: ov.Model) -> ov.Model:
    """Return ``model`` itself if its op friendly names are unique, else a clone with repeats renamed.

    Repeats become ``name_1``, ``name_2``, ... so names identify ops; the caller's model is never renamed.
    """
    names = [op.get_friendly_name() for op in model.get_ops()]
    if len(set(names)) == len(names):
        return model
    model = model.clone()
    seen: Counter = Counter()
    taken = {op.get_friendly_name() for op in model.get_ops()}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        seen[name] += 1
        if seen[name] > 1:
            suffix = seen[name] - 1
            while f"{name}_{suffix}" in taken:
                suffix += 1
            new_name = f"{name}_{suffix}"
            taken.add(new_name)
            op.set_friendly_name(new_name)
    return model
