"""The quantization plan of a model, computed once: FakeQuantize sites with their quantizers, levels, estimators.

``plan_member`` runs the placement (with the device filters) and chooses each site's quantizer; ``PlanCache``
keeps the plans of the last model asked about, so an algorithm's ``statistics_requests`` and ``run`` use one
plan (recomputed only if the model's structure changed in between).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, Hashable, Optional, Tuple, TypeVar

import openvino as ov

from pot_torch.algorithms.quantization.quantizer_ranges import choose_quantizer, levels_of
from pot_torch.algorithms.quantization.placement import place_quantizers
from pot_torch.algorithms.quantization.range_estimator import estimator_config
from pot_torch.algorithms.quantization.sites import Placement
from pot_torch.graph.hardware.config import HardwareConfig
from pot_torch.graph.structure import graph_structure

T = TypeVar("T")


@dataclass(frozen=True)
class PlannedQuantizer:
    """A FakeQuantize site with its chosen quantizer, levels and range estimator."""

    site: Any
    quantizer: Dict[str, Any]
    levels: int
    estimator: Dict[str, Any]


@dataclass(frozen=True)
class MemberPlan:
    """The quantization plan of one ``openvino.Model`` (a cascade member)."""

    member: Optional[str]
    placement: Placement
    activations: Tuple[PlannedQuantizer, ...]
    weights: Tuple[PlannedQuantizer, ...]


def plan_member(ov_model: ov.Model, hw: HardwareConfig, config: Any, ignored: Optional[Any],
                member: Optional[str], cpu_plugin: bool) -> MemberPlan:
    """Place the FakeQuantize ops of ``ov_model`` and choose each one's quantizer and range estimator.

    :param config: the resolved ``MinMaxQuantization`` parameters (``preset``, ``model_type``, ``weights``,
        ``activations``, ``range_estimator`` ...).
    :param ignored: POT's ``ignored`` for this member.
    :param cpu_plugin: leave out the sites the OpenVINO CPU plugin cannot run (``place_quantizers``).
    """
    placement = place_quantizers(ov_model, hw, ignored, config.model_type, cpu_plugin=cpu_plugin)

    def planned(site: Any, kind: str) -> PlannedQuantizer:
        quantizer = choose_quantizer(site.options, config.preset, kind, config.get(kind), where=site.name)
        estimator = estimator_config(config, kind, quantizer["granularity"], quantizer["mode"])
        return PlannedQuantizer(site, quantizer, levels_of(quantizer, kind == "weights"), estimator)

    return MemberPlan(member, placement, tuple(planned(s, "activations") for s in placement.activations),
                      tuple(planned(s, "weights") for s in placement.weights))


def structure_of(model: Any) -> Hashable:
    """What a plan depends on in ``model`` (a ``CompressedModel``): each member's name and graph structure."""
    return tuple((entry["name"], graph_structure(entry["model"])) for entry in model.models)


class PlanCache(Generic[T]):
    """The value computed for the last model asked about, kept while that model's structure is unchanged."""

    def __init__(self) -> None:
        self._key: Optional[Hashable] = None
        self._value: Optional[T] = None

    def get(self, model: Any, compute: Callable[[], T]) -> T:
        """The cached value for ``model``, or ``compute()`` (then cached) when ``model`` is new or changed."""
        key = structure_of(model)
        if self._key != key:
            self._key, self._value = key, compute()
        return self._value  # type: ignore[return-value]
