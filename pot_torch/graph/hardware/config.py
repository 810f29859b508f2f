"""Load and query the hardware descriptions (``cpu.json``, ``gpu.json``, ``npu.json``), parsed once into typed rules.

A description says, per target device, which op classes get FakeQuantize on which inputs and with which
quantizer options (``quantizers``), which op types only move quantized data (``quantize_agnostic``), whether the
OpenVINO CPU plugin's workarounds apply (``cpu_plugin_workarounds``), and the extra rules of a ``model_type``.
``operations`` is keyed by op class (:mod:`~pot_torch.graph.hardware.op_classes`: an op type, or a refinement
such as ``DepthwiseConvolution`` or ``ResidualAdd``); each entry becomes a frozen :class:`OpRule`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from pot_torch.graph.hardware.op_classes import REFINED_CLASSES
from pot_torch.graph.op_types import is_op_type

_HERE = Path(__file__).parent
#: Which description file serves each ``target_device``.
DEVICE_FILES = {"ANY": "cpu.json", "CPU": "cpu.json", "CPU_SPR": "cpu.json", "GPU": "gpu.json", "NPU": "npu.json"}
_BELOW_MIN_SPATIAL = ("skip", "weights_only")
#: Fields of earlier descriptions that op classes replaced, with what to write instead.
_REPLACED_FIELDS = {
    "only_if": "key the rule by op class instead ('ResidualAdd' for all_inputs_activations, 'EmbeddingGather' "
               "for embedding_table)",
    "depthwise_activations": "give 'DepthwiseConvolution' its own rule",
    "depthwise_weights_only": "give 'DepthwiseConvolution' a rule with weights and no activations",
}


@dataclass(frozen=True)
class OpRule:
    """What one op class gets (an entry of ``operations``).

    :param activations: the quantizer of the op's activation (non-constant) inputs; ``None``: none.
    :param weights: allowed quantizers of its constant inputs, the symmetric one first; empty: none.
    :param weight_channel_axes: the output-channel axes of the weight, or ``"matmul"`` (the output axis given
        ``transpose_b``).
    :param min_input_spatial: below this product of the input's spatial sizes the op computes in floating point;
    :param below_min_spatial: and then ``"skip"`` (no FakeQuantize at all) or ``"weights_only"`` (weights still
        quantized, so ``compress_model_weights`` stores them in INT8).
    :param unified_scales: the FakeQuantize ops on the op's inputs share one range.
    :param why: the measured reason for the rule (documentation only).
    """

    activations: Optional[str] = None
    weights: Tuple[str, ...] = ()
    weight_channel_axes: Union[Tuple[int, ...], str] = ()
    min_input_spatial: int = 1
    below_min_spatial: str = "skip"
    unified_scales: bool = False
    why: str = ""

    @property
    def quantizes(self) -> bool:
        """Whether the rule puts any FakeQuantize on the op's inputs."""
        return bool(self.activations or self.weights)


_OP_FIELDS = {f.name for f in fields(OpRule)}


@dataclass(frozen=True)
class ModelTypeRules:
    """The extra rules of one ``model_type`` (an entry of ``model_types``), device exceptions applied.

    :param default_preset: the preset when the user gives none (``None``: the algorithm's default).
    :param ignored_operations: op types left in floating point.
    :param symmetric_activations_without_weights: op classes whose activation inputs get symmetric quantizers
        when the op has no constant weight (MatMul of two activations).
    :param skip_activations_from: ``(op class, producer types)`` pairs: that op class's activation inputs are
        not quantized when produced by one of those types (MatMul after Softmax).
    """

    default_preset: Optional[str] = None
    ignored_operations: Tuple[str, ...] = ()
    symmetric_activations_without_weights: Tuple[str, ...] = ()
    skip_activations_from: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    def skipped_producers(self, op_class: str) -> Tuple[str, ...]:
        """The producer types whose outputs ``op_class``'s activation inputs are not quantized after."""
        return dict(self.skip_activations_from).get(op_class, ())


#: Fields of a ``model_types`` entry: the rule's fields plus the device exceptions of ``ignored_operations``.
_MODEL_TYPE_FIELDS = {f.name for f in fields(ModelTypeRules)} | {"ignored_operations_except"}


class HardwareConfig:
    """A parsed hardware description for one ``target_device``.

    :param description: the JSON content.
    :param target_device: the device asked for (``ANY`` and ``CPU_SPR`` read ``cpu.json``).
    :param source: where the description came from (for error messages).
    :raises ValueError: for an unknown op class, field, quantizer name or ``below_min_spatial`` value.
    """

    def __init__(self, description: Mapping[str, Any], target_device: str, source: str = "<dict>") -> None:
        self.target_device = target_device
        self.source = source
        self.quantizers: Dict[str, Dict[str, Any]] = {k: dict(v) for k, v in description["quantizers"].items()}
        self.operations: Dict[str, OpRule] = {k: self._parse(k, v) for k, v in description["operations"].items()}
        self.quantize_agnostic: Tuple[str, ...] = tuple(description.get("quantize_agnostic", ()))
        self.saturation_fix_devices: Tuple[str, ...] = tuple(description.get("saturation_fix_devices", ()))
        self.cpu_plugin_workarounds: bool = bool(description.get("cpu_plugin_workarounds", False))
        self.model_types: Dict[str, ModelTypeRules] = {
            name: self._parse_model_type(name, entry) for name, entry in description.get("model_types", {}).items()}

    def _parse_model_type(self, model_type: str, entry: Mapping[str, Any]) -> ModelTypeRules:
        unknown = sorted(set(entry) - _MODEL_TYPE_FIELDS)
        if unknown:
            raise ValueError(f"{self.source}: model type '{model_type}' has unknown fields {unknown}; valid fields: "
                             f"{sorted(_MODEL_TYPE_FIELDS)}")
        excepted = set(entry.get("ignored_operations_except", {}).get(self.target_device, ()))
        return ModelTypeRules(
            default_preset=entry.get("default_preset"),
            ignored_operations=tuple(t for t in entry.get("ignored_operations", ()) if t not in excepted),
            symmetric_activations_without_weights=tuple(entry.get("symmetric_activations_without_weights", ())),
            skip_activations_from=tuple((op_class, tuple(producers)) for op_class, producers
                                        in sorted(entry.get("skip_activations_from", {}).items())))

    def _parse(self, op_class: str, entry: Mapping[str, Any]) -> OpRule:
        where = f"{self.source}: operation '{op_class}'"
        if op_class not in REFINED_CLASSES and not is_op_type(op_class):
            raise ValueError(f"{where} is neither an OpenVINO op type nor an op class; op classes: "
                             f"{sorted(REFINED_CLASSES)}")
        for name, instead in _REPLACED_FIELDS.items():
            if name in entry:
                raise ValueError(f"{where} has the field '{name}', which op classes replaced: {instead}")
        unknown = sorted(set(entry) - _OP_FIELDS)
        if unknown:
            raise ValueError(f"{where} has unknown fields {unknown}; valid fields: {sorted(_OP_FIELDS)}")
        for field_name in ("activations", "weights"):
            for name in _as_list(entry.get(field_name)):
                if name not in self.quantizers:
                    raise ValueError(f"{where} uses quantizer '{name}' that is not defined; defined quantizers: "
                                     f"{sorted(self.quantizers)}")
        if entry.get("below_min_spatial", "skip") not in _BELOW_MIN_SPATIAL:
            raise ValueError(f"{where} has below_min_spatial {entry['below_min_spatial']!r}; "
                             f"valid: {list(_BELOW_MIN_SPATIAL)}")
        axes = entry.get("weight_channel_axes", ())
        return OpRule(activations=entry.get("activations"), weights=tuple(_as_list(entry.get("weights"))),
                      weight_channel_axes=axes if isinstance(axes, str) else tuple(axes),
                      min_input_spatial=int(entry.get("min_input_spatial", 1)),
                      below_min_spatial=entry.get("below_min_spatial", "skip"),
                      unified_scales=bool(entry.get("unified_scales", False)), why=str(entry.get("why", "")))

    def rule(self, op_class: str) -> Optional[OpRule]:
        """The rule for ``op_class`` (``classify_op``), or ``None`` if the device does not quantize it."""
        return self.operations.get(op_class)

    def quantizer_options(self, names: Any) -> List[Dict[str, Any]]:
        """The quantizer dicts named by ``names`` (one name, a sequence of names or ``None``), in order."""
        return [dict(self.quantizers[name]) for name in _as_list(names)]

    def is_agnostic(self, op_type: str) -> bool:
        """Whether ``op_type`` only moves or selects values, so a FakeQuantize can move across it."""
        return op_type in self.quantize_agnostic

    def has_unified_scales(self, op_class: str) -> bool:
        """Whether the FakeQuantize ops on the inputs of ``op_class`` must share one range."""
        rule = self.operations.get(op_class)
        return rule is not None and rule.unified_scales

    @property
    def saturation_fix_applies(self) -> bool:
        """Whether POT's ``saturation_fix`` acts on this target device."""
        return self.target_device in self.saturation_fix_devices

    def model_type_rules(self, model_type: Optional[str]) -> ModelTypeRules:
        """The extra rules of ``model_type`` (no rules for ``None``), with device exceptions applied.

        :raises ValueError: for a model type the description has no rules for, listing the known ones.
        """
        if model_type is None:
            return ModelTypeRules()
        if model_type not in self.model_types:
            raise ValueError(f"{self.source} has no rules for model_type '{model_type}'; "
                             f"known model types: {sorted(self.model_types)}")
        return self.model_types[model_type]


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@lru_cache(maxsize=None)
def _read(file_name: str) -> Dict[str, Any]:
    with open(_HERE / file_name, encoding="utf-8") as handle:
        return json.load(handle)


def check_target_device(target_device: Any) -> str:
    """Return ``target_device`` if it has a hardware description (a key of ``DEVICE_FILES``).

    This is the one check of ``target_device`` (``load_model``, algorithm parameters and
    ``load_hardware_config`` all call it), so every caller gives the same message.

    :raises ValueError: naming the bad value and listing the valid ones; POT's GNA targets (``GNA``, ``GNA3``,
        ``GNA3.5``) get an explanation of why they are not supported.
    """
    valid = f"valid values: {', '.join(DEVICE_FILES)}"
    if isinstance(target_device, str) and target_device.upper().startswith("GNA"):
        raise ValueError(f"target_device {target_device!r} is not supported: the GNA plugin was removed from "
                         f"OpenVINO in 2024 and pot_torch does not implement POT's GNA transformations; {valid}")
    if not isinstance(target_device, str) or target_device not in DEVICE_FILES:
        raise ValueError(f"unknown target_device {target_device!r}; {valid}")
    return target_device


def load_hardware_config(target_device: str = "ANY") -> HardwareConfig:
    """The hardware description for ``target_device`` (``ANY``, ``CPU``, ``CPU_SPR``, ``GPU`` or ``NPU``).

    :raises ValueError: for another device, from ``check_target_device``.
    """
    file_name = DEVICE_FILES[check_target_device(target_device)]
    return HardwareConfig(_read(file_name), target_device, source=file_name)
