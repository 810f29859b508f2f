"""Load and query the hardware descriptions (``cpu.json``, ``gpu.json``, ``npu.json``).

A description says, per target device, which op types get FakeQuantize on which inputs and with which
quantizer options (``quantizers``), which ops only move quantized data (``quantize_agnostic``), which
FakeQuantize ops must share ranges (``unified_scales``), and the extra rules of a ``model_type``. Fields of an
entry in ``operations``:

- ``activations``: quantizer for the op's activation (non-constant) inputs; ``depthwise_activations`` replaces
  it for a depthwise GroupConvolution, and ``depthwise_weights_only: true`` quantizes only a depthwise
  GroupConvolution's weights (it then computes in floating point from INT8-stored weights);
- ``weights``: allowed quantizers for constant inputs, the symmetric one first; ``weight_channel_axes``: the
  output-channel axes of the weight (``"matmul"``: the output axis given ``transpose_b``);
- ``only_if``: conditions: ``"all_inputs_activations"`` (a residual Add, not a bias Add),
  ``"embedding_table"`` (a Gather of rows of a constant 2-D table);
- ``min_input_spatial``: leave the op in floating point when the product of its input's spatial sizes is
  smaller (small convolutions where INT8 does not pay); ``below_min_spatial`` says what then happens to its
  weights: ``"skip"`` (default, no FakeQuantize at all) or ``"weights_only"`` (weights still quantized, so
  ``compress_model_weights`` stores them in INT8, while the op computes in floating point);
- ``unified_scales``: the FakeQuantize ops on the op's inputs share one range;
- ``why``: the measured reason for a rule (documentation only).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

_HERE = Path(__file__).parent
#: Which description file serves each ``target_device``.
DEVICE_FILES = {"ANY": "cpu.json", "CPU": "cpu.json", "CPU_SPR": "cpu.json", "GPU": "gpu.json", "NPU": "npu.json"}
_OP_FIELDS = {"activations", "depthwise_activations", "depthwise_weights_only", "weights", "weight_channel_axes", "only_if",
              "min_input_spatial", "below_min_spatial", "unified_scales", "why"}
_CONDITIONS = {"all_inputs_activations", "embedding_table"}
_BELOW_MIN_SPATIAL = ("skip", "weights_only")


class HardwareConfig:
    """A parsed hardware description for one ``target_device``.

    :param description: the JSON content.
    :param target_device: the device asked for (``ANY`` and ``CPU_SPR`` read ``cpu.json``).
    :param source: where the description came from (for error messages).
    """

    def __init__(self, description: Mapping[str, Any], target_device: str, source: str = "<dict>") -> None:
        self.target_device = target_device
        self.source = source
        self.quantizers: Dict[str, Dict[str, Any]] = {k: dict(v) for k, v in description["quantizers"].items()}
        self.operations: Dict[str, Dict[str, Any]] = {k: dict(v) for k, v in description["operations"].items()}
        self.quantize_agnostic: Tuple[str, ...] = tuple(description.get("quantize_agnostic", ()))
        self.saturation_fix_devices: Tuple[str, ...] = tuple(description.get("saturation_fix_devices", ()))
        self.model_types: Dict[str, Dict[str, Any]] = dict(description.get("model_types", {}))
        self._validate()

    def _validate(self) -> None:
        for op_type, rule in self.operations.items():
            unknown = sorted(set(rule) - _OP_FIELDS)
            if unknown:
                raise ValueError(f"{self.source}: operation '{op_type}' has unknown fields {unknown}; "
                                 f"valid fields: {sorted(_OP_FIELDS)}")
            for field in ("activations", "depthwise_activations", "weights"):
                for name in _as_list(rule.get(field)):
                    if name not in self.quantizers:
                        raise ValueError(f"{self.source}: operation '{op_type}' uses quantizer '{name}' that is not "
                                         f"defined; defined quantizers: {sorted(self.quantizers)}")
            if rule.get("below_min_spatial", "skip") not in _BELOW_MIN_SPATIAL:
                raise ValueError(f"{self.source}: operation '{op_type}' has below_min_spatial "
                                 f"{rule['below_min_spatial']!r}; valid: {list(_BELOW_MIN_SPATIAL)}")
            bad = sorted(set(rule.get("only_if", ())) - _CONDITIONS)
            if bad:
                raise ValueError(f"{self.source}: operation '{op_type}' has unknown conditions {bad}; "
                                 f"valid: {sorted(_CONDITIONS)}")

    def rule(self, op_type: str) -> Optional[Dict[str, Any]]:
        """The ``operations`` entry for ``op_type``, or ``None`` if the device does not quantize it."""
        return self.operations.get(op_type)

    def quantizer_options(self, names: Any) -> List[Dict[str, Any]]:
        """The quantizer dicts named by ``names`` (one name or a list), in order."""
        return [dict(self.quantizers[name]) for name in _as_list(names)]

    def is_agnostic(self, op_type: str) -> bool:
        """Whether ``op_type`` only moves or selects values, so a FakeQuantize can move across it."""
        return op_type in self.quantize_agnostic

    def has_unified_scales(self, op_type: str) -> bool:
        """Whether the FakeQuantize ops on the inputs of ``op_type`` must share one range."""
        return bool(self.operations.get(op_type, {}).get("unified_scales", False))

    @property
    def saturation_fix_applies(self) -> bool:
        """Whether POT's ``saturation_fix`` acts on this target device."""
        return self.target_device in self.saturation_fix_devices

    def model_type_rules(self, model_type: Optional[str]) -> Dict[str, Any]:
        """Extra rules for ``model_type`` (``{}`` for ``None``), with device exceptions applied."""
        if model_type is None:
            return {}
        if model_type not in self.model_types:
            raise ValueError(f"{self.source} has no rules for model_type '{model_type}'; "
                             f"known model types: {sorted(self.model_types)}")
        rules = dict(self.model_types[model_type])
        excepted = set(rules.pop("ignored_operations_except", {}).get(self.target_device, ()))
        rules["ignored_operations"] = [t for t in rules.get("ignored_operations", ()) if t not in excepted]
        return rules


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
