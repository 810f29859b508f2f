"""Algorithm parameters: POT's names and defaults as data, validation with instructive errors.

Every algorithm resolves its ``params`` with ``resolve_params(name, params)``: unknown keys and invalid values
raise ``ValueError`` naming the valid ones, and missing keys get POT's defaults. An algorithm that composes
others (DefaultQuantization, AccuracyAwareQuantization) hands each part ``sub_params(config, part_name)``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from pot_torch.graph.hardware.config import check_target_device, load_hardware_config
from pot_torch.graph.op_types import unknown_op_type_problem
from pot_torch.utils.config import AttrDict

_NO_DEFAULT = object()
#: Parameters whose ``None`` is a user's choice ("off"), passed on by ``sub_params`` rather than defaulted.
_NONE_TURNS_OFF = ("smooth_quant_alpha",)


@dataclass(frozen=True)
class Param:
    """One parameter: its default, and allowed ``choices`` or a ``check`` returning an error text (for a dict
    parameter, ``check`` runs after its ``schema``, for rules between its keys).

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
        if self.schema is not None:  # the keys first, so that ``check`` sees valid ones
            if not isinstance(value, Mapping):
                raise ValueError(f"'{path}' must be a dict with keys among {sorted(self.schema)}, got {value!r}")
            validate_mapping(path, value, self.schema)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(f"invalid value {value!r} for '{path}': {problem}")


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


Check = Callable[[Any], Optional[str]]


def _rule(base: Optional[Check], accept: Callable[[Any], bool], expected: str) -> Check:
    """A check: ``expected`` unless ``value`` passes ``base`` (if any) and ``accept``."""
    def check(value: Any) -> Optional[str]:
        return expected if (base is not None and base(value)) or not accept(value) else None
    return check


_NUMBER_TYPES = (int, float, np.integer, np.floating)
_integer_type = _rule(None, lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
                      "expected an integer")
_positive_int = _rule(_integer_type, lambda v: v >= 1, "expected a positive integer")
_non_negative_int = _rule(_integer_type, lambda v: v >= 0, "expected a non-negative integer")
_boolean = _rule(None, lambda v: isinstance(v, bool), "expected True or False")
#: Any real number but NaN (which compares false with everything, so no range check would catch it).
_number = _rule(None, lambda v: isinstance(v, _NUMBER_TYPES) and not isinstance(v, bool) and not np.isnan(v),
                "expected a number")
_finite = _rule(_number, np.isfinite, "expected a finite number")
_integer = _rule(_finite, lambda v: float(v) == int(v), "expected an integer")
_accuracy_drop = _rule(_finite, lambda v: v >= 0,
                       "expected a finite number >= 0, the largest metric drop accepted (e.g. 0.01)")
_unit_interval = _rule(_number, lambda v: 0.0 <= v <= 1.0, "expected a number in [0, 1]")
_probability = _rule(_number, lambda v: 0.0 <= v < 0.5, "expected a number in [0, 0.5)")
_fraction = _rule(_number, lambda v: 0.0 < v <= 1.0, "expected a number in (0, 1]")


def fraction_below_one(expected: str) -> Check:
    """A check accepting a number in [0, 1) and answering ``expected`` otherwise."""
    return _rule(_number, lambda v: 0.0 <= v < 1.0, expected)


_bits = _rule(_positive_int, lambda v: 2 <= v <= 8, "expected an integer number of bits from 2 to 8")
_bias_threshold = _rule(_number, lambda v: v > 0, "expected a positive number: a bias correction whose shift "
                                                  "magnitude is not below it is skipped (inf: never skip)")
_level_low = _rule(_integer, lambda v: v <= 0,
                   "expected an integer <= 0 (the lowest quantization level, e.g. -128 or 0)")
_level_high = _rule(_integer, lambda v: v >= 1,
                    "expected an integer >= 1 (the highest quantization level, e.g. 127 or 255)")


def _quantizer_levels(value: Mapping[str, Any]) -> Optional[str]:
    """``level_low``/``level_high`` against each other and ``bits`` (FakeQuantize needs at least 3 levels here:
    2 would divide by zero in the signed symmetric range, 1 is refused by the CPU plugin)."""
    bits = value.get("bits")
    allowed = 2 ** (8 if bits is None else int(bits))
    bits_text = f"'bits' {bits}" if bits is not None else "'bits' 8 (the default)"
    low, high = value.get("level_low"), value.get("level_high")
    if low is not None and high is not None:
        levels = int(high) - int(low) + 1
        if levels < 3:
            return (f"level_low {low} and level_high {high} give {levels} quantization level(s); expected "
                    f"level_low <= 0 < level_high with at least 3 levels, e.g. -128 and 127")
        if levels > allowed:
            return (f"level_low {low} and level_high {high} give {levels} quantization level(s); {bits_text} "
                    f"allows at most {allowed}: raise 'bits' or narrow the levels")
    for name, level, limit in (("level_low", low, allowed // 2), ("level_high", high, allowed - 1)):
        if level is not None and abs(int(level)) > limit:
            return (f"{name} {level} does not fit: {bits_text} allows at most {allowed} levels; raise 'bits' or "
                    f"give a {name} of magnitude up to {limit}")
    return None


def _target_device(value: Any) -> Optional[str]:
    check_target_device(value)  # raises the hardware descriptions' own ValueError, the same for every caller
    return None


#: The keys of one model's ``ignored``; other keys name cascade members (``{member: {scope...}}``).
IGNORED_KEYS = ("scope", "operations", "skip_model")


def _ignored_scope(value: Any) -> Optional[str]:
    if not isinstance(value, Mapping):
        return "expected a dict such as {'scope': [node names], 'operations': [{'type': 'Add'}]}"
    members = [v for k, v in value.items() if k not in IGNORED_KEYS]
    if members and all(isinstance(v, Mapping) for v in members):  # per cascade member
        return next((problem for problem in map(_ignored_scope, members) if problem), None)
    unknown = sorted(set(value) - set(IGNORED_KEYS))
    if unknown:
        return f"unknown keys {unknown}; valid keys: operations, scope, skip_model"
    if _boolean(value.get("skip_model", False)):
        return f"'skip_model' must be True or False, got {value['skip_model']!r}"
    scope = value.get("scope", [])
    if not isinstance(scope, (list, tuple)) or not all(isinstance(s, str) for s in scope):
        example = [scope] if isinstance(scope, str) else ["conv1", "fc"]
        return f"'scope' must be a list of node names such as {example!r}, got {scope!r}"
    operations = value.get("operations", [])
    if not isinstance(operations, (list, tuple)) or not all(
            isinstance(o, Mapping) and isinstance(o.get("type"), str) for o in operations):
        return "'operations' must be a list of dicts like {'type': 'Add', 'attributes': {...}}"
    for index, operation in enumerate(operations):
        unknown = sorted(set(operation) - {"type", "attributes"})
        if unknown:
            return f"operations[{index}] has unknown key(s) {unknown}; valid keys: attributes, type"
        if not isinstance(operation.get("attributes") or {}, Mapping):
            return (f"'attributes' of operations[{index}] must be a dict of op attributes, e.g. "
                    f"{{'auto_broadcast': 'numpy'}}, got {operation['attributes']!r}")
        problem = unknown_op_type_problem(operation["type"])
        if problem:
            return problem
    return None


def _smooth_quant_alpha(value: Any) -> Optional[str]:
    if value is None or value == "auto" or (not _number(value) and float(value) <= 1.0):
        return None
    return ("expected a number in [0, 1], 'auto' (chosen per smoothing group on calibration activations), or None "
            "or a negative number to turn SmoothQuant off")


def _metrics_list(value: Any) -> Optional[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, Mapping) and "name" in m for m in value):
        return "expected a list like [{'name': 'accuracy', 'baseline_value': 0.72}]"
    for index, metric in enumerate(value):
        unknown = sorted(set(metric) - {"name", "baseline_value"})
        if unknown:
            return f"'metrics[{index}]' has unknown key(s) {unknown}; valid keys: baseline_value, name"
        if not isinstance(metric["name"], str):
            return f"'metrics[{index}].name' is {metric['name']!r}; expected a metric name (a string)"
        baseline = metric.get("baseline_value")
        if baseline is not None and _finite(baseline):
            return (f"'metrics[{index}].baseline_value' is {baseline!r}; expected a finite number, the metric "
                    "value to measure the drop from (e.g. 0.72), or leave it out to use the FP model's")
    return None


_ESTIMATOR_SIDE = {
    "type": Param(choices=("min", "max", "abs_max", "quantile", "abs_quantile")),
    "outlier_prob": Param(check=_probability),
    "granularity": Param(choices=("pertensor", "perchannel")),
    "clipping_value": Param(check=_finite),
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
    "level_low": Param(check=_level_low),
    "level_high": Param(check=_level_high),
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
    "weights": Param(None, schema=QUANTIZER_SCHEMA, check=_quantizer_levels),
    "activations": Param(None, schema=QUANTIZER_SCHEMA, check=_quantizer_levels),
    "saturation_fix": Param("first_layer", choices=("first_layer", "all", "no")),
}
#: Statistics of activations [batch, seq, ...] over the real tokens only (where the model's attention_mask input
#: is non-zero; pot_torch.statistics.padding); the transformer model type's default.
PADDING_PARAMS: Dict[str, Param] = {"padding_aware_statistics": Param(False, check=_boolean)}
#: SmoothQuant's migration strength: 'auto' chooses it per smoothing group on calibration activations, a number
#: is used as given (NNCF's MatMul default is 0.95); only transformers get SmoothQuant in DefaultQuantization.
SMOOTH_QUANT_PARAMS: Dict[str, Param] = {
    "smooth_quant_alpha": Param("auto", check=_smooth_quant_alpha),
    **PADDING_PARAMS,
}
BIAS_CORRECTION_PARAMS: Dict[str, Param] = {
    "apply_for_all_nodes": Param(False, check=_boolean),
}
ACCURACY_AWARE_PARAMS: Dict[str, Param] = {
    "maximal_drop": Param(0.01, check=_accuracy_drop),
    "drop_type": Param("absolute", choices=("absolute", "relative")),
    "max_iter_num": Param(None, check=_positive_int),
    "ranking_subset_size": Param(None, check=_positive_int),
    "metric_subset_ratio": Param(0.5, check=_fraction),
    "base_algorithm": Param("DefaultQuantization", choices=("DefaultQuantization",)),
    "convert_to_mixed_preset": Param(False, check=_boolean),
    "tune_hyperparams": Param(False, check=_boolean),
    "use_prev_if_drop_increase": Param(True, check=_boolean),
    "annotation_free": Param(False, choices=(False,)),
    "annotation_conf_threshold": Param(0.6, check=_unit_interval),
    "metrics": Param(None, check=_metrics_list),
    "report_path": Param(None, check=_rule(None, lambda v: isinstance(v, str) and v.lower().endswith(".html"),
                                           "expected the path of an .html file for the quantization report")),
}
_DEFAULT_QUANTIZATION = {
    **COMMON_PARAMS, **QUANTIZATION_PARAMS, **BIAS_CORRECTION_PARAMS, **SMOOTH_QUANT_PARAMS,
    "threshold": Param(None, check=_bias_threshold),
    "use_fast_bias": Param(True, check=_boolean),
    "use_layerwise_tuning": Param(False, choices=(False,)),
}

#: Defaults that change with ``model_type`` (besides the hardware description's ``default_preset``). A
#: transformer gets the full BiasCorrection: on the benchmarks' BERT-style encoder it halves the output error
#: of FastBiasCorrection on every weight seed tried, for under a second more (docs/quantization.md).
MODEL_TYPE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "transformer": {"use_fast_bias": False, "padding_aware_statistics": True}}

#: Parameters of each algorithm by its registered name.
ALGORITHM_PARAMS: Dict[str, Dict[str, Param]] = {
    "MinMaxQuantization": {**COMMON_PARAMS, **QUANTIZATION_PARAMS, **PADDING_PARAMS},
    "FastBiasCorrection": {**COMMON_PARAMS, **BIAS_CORRECTION_PARAMS,
                           "threshold": Param(2.0, check=_bias_threshold)},
    "BiasCorrection": {**COMMON_PARAMS, **BIAS_CORRECTION_PARAMS, **PADDING_PARAMS,
                       "threshold": Param(1000.0, check=_bias_threshold)},
    "ActivationChannelAlignment": dict(COMMON_PARAMS),
    "SmoothQuant": {**COMMON_PARAMS, **SMOOTH_QUANT_PARAMS, "preset": QUANTIZATION_PARAMS["preset"]},
    "DefaultQuantization": _DEFAULT_QUANTIZATION,
    "AccuracyAwareQuantization": {**_DEFAULT_QUANTIZATION, **ACCURACY_AWARE_PARAMS},
}


def declare_params(algorithm: str, spec: Mapping[str, Param]) -> None:
    """Declare the parameters of ``algorithm`` (its registered name); an algorithm module calls this once.

    :raises ValueError: if ``algorithm`` already has parameters declared.
    """
    if algorithm in ALGORITHM_PARAMS:
        raise ValueError(f"parameters of '{algorithm}' are already declared")
    ALGORITHM_PARAMS[algorithm] = dict(spec)


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
    defaults = {"preset": rules.default_preset} if rules.default_preset else {}
    return {**defaults, **MODEL_TYPE_DEFAULTS.get(model_type, {})}


def ignored_for_member(ignored: Optional[Mapping[str, Any]], member: Optional[str],
                       member_names: Sequence[str]) -> Optional[Mapping[str, Any]]:
    """The part of a (validated) ``ignored`` parameter for model member ``member`` (``None``: a single model).

    ``ignored`` is either one scope for every member or ``{member name: scope}``.

    :raises ValueError: for a per-member ``ignored`` on a single model, or one naming members the cascade does
        not have (with the close names).
    """
    if not ignored or all(key in IGNORED_KEYS for key in ignored):
        return ignored
    named = sorted(key for key in ignored if key not in IGNORED_KEYS)
    if member is None:
        raise ValueError(f"'ignored' is given per cascade member ({named}), but the model is a single model: give "
                         "{'scope': [...], 'operations': [...]} without member names")
    unknown = [name for name in named if name not in member_names]
    if unknown:
        close = sorted({match for name in unknown
                        for match in difflib.get_close_matches(name, list(member_names), n=2, cutoff=0.8)})
        raise ValueError(f"'ignored' names the model member(s) {unknown}, which the cascade does not have; its "
                         f"members: {list(member_names)}" + (f" (close: {', '.join(close)})" if close else ""))
    return ignored.get(member)


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
