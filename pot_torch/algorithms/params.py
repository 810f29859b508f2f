"""Algorithm parameters: POT's names and defaults as data, validation with instructive errors.

Every algorithm resolves its ``params`` with ``resolve_params(name, params)``: unknown keys and invalid values
raise ``ValueError`` naming the valid ones, and missing keys get POT's defaults. An algorithm that composes
others (DefaultQuantization, AccuracyAwareQuantization) hands each part ``sub_params(config, part_name)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from pot_torch.graph.hardware.config import check_target_device, load_hardware_config
from pot_torch.utils.config import AttrDict

_NO_DEFAULT = object()
#: Parameters whose ``None`` is a user's choice ("off"), passed on by ``sub_params`` rather than defaulted.
_NONE_TURNS_OFF = ("smooth_quant_alpha",)


@dataclass(frozen=True)
class Param:
    """One parameter: its default, and either allowed ``choices`` or a ``check`` returning an error text.

    A ``check`` may instead raise ``ValueError`` itself when another module owns the message (``target_device``).
    """

    default: Any = None
    choices: Optional[Tuple[Any, ...]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    schema: Optional[Mapping[str, Any]] = None  # nested dict parameter: allowed keys -> Param or schema

    def validate(self, path: str, value: Any) -> None:
        """Raise ``ValueError`` if ``value`` is not acceptable for the parameter at ``path``."""
        if value is None and self.default is None:
            return
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"invalid value {value!r} for '{path}'; valid values: "
                             f"{', '.join(repr(c) for c in self.choices)}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(f"invalid value {value!r} for '{path}': {problem}")
        if self.schema is not None:
            if not isinstance(value, Mapping):
                raise ValueError(f"'{path}' must be a dict with keys among {sorted(self.schema)}, got {value!r}")
            validate_mapping(path, value, self.schema)


def validate_mapping(path: str, value: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check the keys and values of a nested parameter dict against ``schema``."""
    for key, item in value.items():
        if key not in schema:
            raise ValueError(f"unknown parameter '{path}.{key}'; valid parameters of '{path}': "
                             f"{', '.join(sorted(schema))}")
        spec = schema[key]
        if isinstance(spec, Param):
            spec.validate(f"{path}.{key}", item)
        else:
            if not isinstance(item, Mapping):
                raise ValueError(f"'{path}.{key}' must be a dict with keys among {sorted(spec)}, got {item!r}")
            validate_mapping(f"{path}.{key}", item, spec)


def _positive_int(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        return "expected a positive integer"
    return None


def _non_negative_int(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        return "expected a non-negative integer"
    return None


def _boolean(value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else "expected True or False"


def _number(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return "expected a number"
    return None


def _probability(value: Any) -> Optional[str]:
    if _number(value) or not 0.0 <= float(value) < 0.5:
        return "expected a number in [0, 0.5)"
    return None


def _fraction(value: Any) -> Optional[str]:
    if _number(value) or not 0.0 < float(value) <= 1.0:
        return "expected a number in (0, 1]"
    return None


def _bits(value: Any) -> Optional[str]:
    if _positive_int(value) or not 2 <= int(value) <= 8:
        return "expected an integer number of bits from 2 to 8"
    return None


def _target_device(value: Any) -> Optional[str]:
    check_target_device(value)  # raises the hardware descriptions' own ValueError, the same for every caller
    return None


def _ignored_scope(value: Any) -> Optional[str]:
    if not isinstance(value, Mapping):
        return "expected a dict such as {'scope': [node names], 'operations': [{'type': 'Add'}]}"
    keys = {"scope", "operations", "skip_model"}
    members = [v for k, v in value.items() if k not in keys]
    if members and all(isinstance(v, Mapping) for v in members):  # per cascade member
        return next((problem for problem in map(_ignored_scope, members) if problem), None)
    unknown = sorted(set(value) - keys)
    if unknown:
        return f"unknown keys {unknown}; valid keys: operations, scope, skip_model"
    scope = value.get("scope", [])
    if not isinstance(scope, (list, tuple)) or not all(isinstance(s, str) for s in scope):
        return "'scope' must be a list of node names"
    operations = value.get("operations", [])
    if not isinstance(operations, (list, tuple)) or not all(
            isinstance(o, Mapping) and isinstance(o.get("type"), str) for o in operations):
        return "'operations' must be a list of dicts like {'type': 'Add', 'attributes': {...}}"
    return None


def _smooth_quant_alpha(value: Any) -> Optional[str]:
    if value is None or (not _number(value) and float(value) <= 1.0):
        return None
    return "expected a number in [0, 1], or None or a negative number to turn SmoothQuant off"


def _metrics_list(value: Any) -> Optional[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, Mapping) and "name" in m for m in value):
        return "expected a list like [{'name': 'accuracy', 'baseline_value': 0.72}]"
    return None


_ESTIMATOR_SIDE = {
    "type": Param(choices=("min", "max", "abs_max", "quantile", "abs_quantile")),
    "outlier_prob": Param(check=_probability),
    "granularity": Param(choices=("pertensor", "perchannel")),
    "clipping_value": Param(check=_number),
    "aggregator": Param(choices=("min", "max", "mean", "median", "mean_no_outliers", "median_no_outliers",
                                 "hl_estimator", "batch_mean")),
}
RANGE_ESTIMATOR_SCHEMA = {
    "preset": Param(choices=("default", "quantile")),
    "min": dict(_ESTIMATOR_SIDE),
    "max": dict(_ESTIMATOR_SIDE),
}
QUANTIZER_SCHEMA = {
    "bits": Param(check=_bits),
    "mode": Param(choices=("symmetric", "asymmetric")),
    "level_low": Param(check=_number),
    "level_high": Param(check=_number),
    "granularity": Param(choices=("pertensor", "perchannel")),
    "range_estimator": Param(schema=RANGE_ESTIMATOR_SCHEMA),
}

COMMON_PARAMS: Dict[str, Param] = {
    "target_device": Param("ANY", check=_target_device),
    "model_type": Param(None, choices=(None, "transformer")),
    "stat_subset_size": Param(None, check=_positive_int),
    "stat_batch_size": Param(1, check=_positive_int),
    "shuffle_data": Param(False, check=_boolean),
    "seed": Param(0, check=_non_negative_int),
    "ignored": Param(None, check=_ignored_scope),
    # POT's API left this False and its CLI True; the numbers are identical, in-graph is faster and lighter.
    "inplace_statistics": Param(True, check=_boolean),
    "dump_intermediate_model": Param(False, check=_boolean),
}
QUANTIZATION_PARAMS: Dict[str, Param] = {
    "preset": Param("performance", choices=("performance", "mixed", "accuracy")),
    "range_estimator": Param(None, schema=RANGE_ESTIMATOR_SCHEMA),
    "weights": Param(None, schema=QUANTIZER_SCHEMA),
    "activations": Param(None, schema=QUANTIZER_SCHEMA),
    "saturation_fix": Param("first_layer", choices=("first_layer", "all", "no")),
}
#: SmoothQuant's migration strength (NNCF's MatMul default); only transformers get it in DefaultQuantization.
SMOOTH_QUANT_PARAMS: Dict[str, Param] = {
    "smooth_quant_alpha": Param(0.95, check=_smooth_quant_alpha),
}
BIAS_CORRECTION_PARAMS: Dict[str, Param] = {
    "apply_for_all_nodes": Param(False, check=_boolean),
}
ACCURACY_AWARE_PARAMS: Dict[str, Param] = {
    "maximal_drop": Param(0.01, check=_number),
    "drop_type": Param("absolute", choices=("absolute", "relative")),
    "max_iter_num": Param(None, check=_positive_int),
    "ranking_subset_size": Param(None, check=_positive_int),
    "metric_subset_ratio": Param(0.5, check=_fraction),
    "base_algorithm": Param("DefaultQuantization", choices=("DefaultQuantization",)),
    "convert_to_mixed_preset": Param(False, check=_boolean),
    "tune_hyperparams": Param(False, check=_boolean),
    "use_prev_if_drop_increase": Param(True, check=_boolean),
    "annotation_free": Param(False, choices=(False,)),
    "annotation_conf_threshold": Param(0.6, check=_number),
    "metrics": Param(None, check=_metrics_list),
}
_DEFAULT_QUANTIZATION = {
    **COMMON_PARAMS, **QUANTIZATION_PARAMS, **BIAS_CORRECTION_PARAMS, **SMOOTH_QUANT_PARAMS,
    "threshold": Param(None, check=_number),
    "use_fast_bias": Param(True, check=_boolean),
    "use_layerwise_tuning": Param(False, choices=(False,)),
}

#: Defaults that change with ``model_type`` (besides the hardware description's ``default_preset``). A
#: transformer gets the full BiasCorrection: on the benchmarks' BERT-style encoder it halves the output error
#: of FastBiasCorrection on every weight seed tried, for under a second more (docs/quantization.md).
MODEL_TYPE_DEFAULTS: Dict[str, Dict[str, Any]] = {"transformer": {"use_fast_bias": False}}

#: Parameters of each algorithm by its registered name.
ALGORITHM_PARAMS: Dict[str, Dict[str, Param]] = {
    "MinMaxQuantization": {**COMMON_PARAMS, **QUANTIZATION_PARAMS},
    "FastBiasCorrection": {**COMMON_PARAMS, **BIAS_CORRECTION_PARAMS, "threshold": Param(2.0, check=_number)},
    "BiasCorrection": {**COMMON_PARAMS, **BIAS_CORRECTION_PARAMS, "threshold": Param(1000.0, check=_number)},
    "ActivationChannelAlignment": dict(COMMON_PARAMS),
    "SmoothQuant": {**COMMON_PARAMS, **SMOOTH_QUANT_PARAMS},
    "DefaultQuantization": _DEFAULT_QUANTIZATION,
    "AccuracyAwareQuantization": {**_DEFAULT_QUANTIZATION, **ACCURACY_AWARE_PARAMS},
}


def resolve_params(algorithm: str, params: Optional[Mapping[str, Any]]) -> AttrDict:
    """Validate ``params`` of ``algorithm`` and return them with POT's defaults filled in.

    With a ``model_type``, the parameters not given take that model type's defaults: the hardware description's
    ``default_preset`` (``mixed`` for transformers) and :data:`MODEL_TYPE_DEFAULTS`.

    :raises ValueError: for an unknown parameter (listing the valid ones) or an invalid value.
    """
    spec = ALGORITHM_PARAMS[algorithm]
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {algorithm}; valid parameters: "
                         f"{', '.join(sorted(spec))}")
    resolved = AttrDict()
    for key, param in spec.items():
        value = given.get(key, param.default)
        if key in given:
            param.validate(key, value)
        resolved[key] = value
    if resolved.get("model_type"):
        for key, value in _model_type_defaults(resolved.target_device, resolved.model_type).items():
            if key in spec and key not in given:
                resolved[key] = value
    return resolved


def _model_type_defaults(target_device: str, model_type: str) -> Dict[str, Any]:
    rules = load_hardware_config(target_device).model_type_rules(model_type)
    defaults = {"preset": rules["default_preset"]} if "default_preset" in rules else {}
    return {**defaults, **MODEL_TYPE_DEFAULTS.get(model_type, {})}


def sub_params(config: Mapping[str, Any], algorithm: str) -> AttrDict:
    """The part of a composite algorithm's resolved ``config`` that ``algorithm`` takes, resolved for it.

    Values left ``None`` by the composite fall back to ``algorithm``'s own defaults (e.g. ``threshold``), except
    for parameters where ``None`` means "off" (``smooth_quant_alpha``).
    """
    spec = ALGORITHM_PARAMS[algorithm]
    return resolve_params(algorithm, {k: v for k, v in config.items()
                                      if k in spec and (v is not None or k in _NONE_TURNS_OFF)})


def calibration_indices(config: Mapping[str, Any], dataset_size: int,
                        subset_size: Optional[int] = None) -> Sequence[int]:
    """Data set indices for statistics: ``stat_subset_size`` items (all by default, as in POT).

    With ``shuffle_data`` they are drawn at random with ``seed`` from a private generator (POT seeded
    Python's global one); otherwise they are the first ones. ``subset_size`` overrides ``stat_subset_size``.
    """
    if dataset_size < 1:
        raise ValueError("the data loader is empty: statistics need at least one item")
    size = subset_size if subset_size is not None else config.get("stat_subset_size")
    size = dataset_size if size is None else min(int(size), dataset_size)
    if config.get("shuffle_data", False):
        rng = np.random.default_rng(int(config.get("seed", 0) or 0))
        return sorted(int(i) for i in rng.choice(dataset_size, size=size, replace=False))
    return range(size)
