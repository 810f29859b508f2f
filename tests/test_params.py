"""Algorithm parameters: POT defaults, validation errors naming valid values, calibration subsets."""
import pytest

from pot_torch.algorithms.params import (ALGORITHM_PARAMS, calibration_indices, ignored_for_member, resolve_params,
                                         sub_params)


def test_pot_defaults_are_filled_in():
    config = resolve_params("DefaultQuantization", {})
    assert config.preset == "performance"
    assert config.target_device == "ANY"
    assert config.stat_subset_size is None  # the whole data set, as in POT
    assert config.stat_batch_size == 1 and config.shuffle_data is False and config.seed == 0
    assert config.use_fast_bias is True and config.saturation_fix == "first_layer"
    assert resolve_params("FastBiasCorrection", {}).threshold == 2.0
    assert resolve_params("BiasCorrection", {}).threshold == 1000.0
    aaq = resolve_params("AccuracyAwareQuantization", {})
    assert (aaq.maximal_drop, aaq.drop_type, aaq.metric_subset_ratio) == (0.01, "absolute", 0.5)


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['presett'\] for MinMaxQuantization; "
                                         r"valid parameters: activations, dump_intermediate_model, ignored"):
        resolve_params("MinMaxQuantization", {"presett": "mixed"})


@pytest.mark.parametrize("params, message", [
    ({"preset": "fast"}, "invalid value 'fast' for 'preset'; valid values: 'performance', 'mixed', 'accuracy'"),
    ({"target_device": "GNA3"}, "target_device 'GNA3' is not supported: the GNA plugin was removed from OpenVINO"),
    ({"target_device": "TPU"}, "unknown target_device 'TPU'; valid values: ANY, CPU, CPU_SPR, GPU, NPU"),
    ({"stat_subset_size": 0}, "expected a positive integer"),
    ({"shuffle_data": "yes"}, "expected True or False"),
    ({"weights": {"mode": "asym"}}, "invalid value 'asym' for 'weights.mode'"),
    ({"weights": {"bits": 16}}, "expected an integer number of bits from 2 to 8"),
    ({"activations": {"range_estimator": {"max": {"aggregator": "avg"}}}},
     "invalid value 'avg' for 'activations.range_estimator.max.aggregator'"),
    ({"activations": {"range_estimator": {"maxx": {}}}}, "unknown parameter 'activations.range_estimator.maxx'"),
    ({"ignored": {"scope": "conv1"}}, "'scope' must be a list of node names such as ['conv1'], got 'conv1'"),
    ({"ignored": {"operations": [{"name": "Add"}]}}, "'operations' must be a list of dicts"),
    ({"model_type": "cnn"}, "valid values: None, 'transformer'"),
    ({"use_layerwise_tuning": True}, "for 'use_layerwise_tuning'; valid values: False"),
    ({"smooth_quant_alpha": 1.5}, "invalid value 1.5 for 'smooth_quant_alpha': expected a number in [0, 1], "
                                  "'auto' (chosen per smoothing group on calibration activations), or None or a "
                                  "negative number to turn SmoothQuant off"),
    ({"smooth_quant_alpha": "0.5"}, "invalid value '0.5' for 'smooth_quant_alpha': expected a number in [0, 1]"),
])
def test_invalid_values_name_the_parameter(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resolve_params("DefaultQuantization", params)


def test_cascade_ignored_scope_per_member_is_accepted():
    config = resolve_params("MinMaxQuantization", {"ignored": {"pnet": {"scope": ["conv1"]}, "rnet": {}}})
    assert config.ignored.pnet.scope == ["conv1"]


def test_sub_params_takes_the_parts_own_keys_and_defaults():
    config = resolve_params("DefaultQuantization", {"preset": "mixed", "use_fast_bias": False})
    minmax = sub_params(config, "MinMaxQuantization")
    assert minmax.preset == "mixed" and "use_fast_bias" not in minmax
    assert sub_params(config, "BiasCorrection").threshold == 1000.0


def test_every_algorithm_shares_the_common_parameters():
    for name, spec in ALGORITHM_PARAMS.items():
        assert {"stat_subset_size", "seed", "ignored", "target_device"} <= set(spec), name


def test_calibration_indices_default_and_subset():
    assert list(calibration_indices({}, 5)) == [0, 1, 2, 3, 4]
    assert list(calibration_indices({"stat_subset_size": 3}, 5)) == [0, 1, 2]
    assert list(calibration_indices({"stat_subset_size": 300}, 5)) == [0, 1, 2, 3, 4]


def test_calibration_indices_shuffle_is_seeded_and_private():
    import random

    random.seed(123)
    state = random.getstate()
    first = calibration_indices({"stat_subset_size": 4, "shuffle_data": True, "seed": 7}, 50)
    again = calibration_indices({"stat_subset_size": 4, "shuffle_data": True, "seed": 7}, 50)
    other = calibration_indices({"stat_subset_size": 4, "shuffle_data": True, "seed": 8}, 50)
    assert first == again != other
    assert len(set(first)) == 4 and all(0 <= i < 50 for i in first)
    assert random.getstate() == state  # Python's global generator is not touched (POT's was)


def test_calibration_indices_empty_loader():
    with pytest.raises(ValueError, match="the data loader is empty"):
        calibration_indices({}, 0)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1, None, -1, "auto"])
def test_smooth_quant_alpha_accepts_numbers_up_to_one_and_off_values(alpha):
    for algorithm in ("SmoothQuant", "DefaultQuantization", "AccuracyAwareQuantization"):
        assert resolve_params(algorithm, {"smooth_quant_alpha": alpha}).smooth_quant_alpha == alpha
    assert resolve_params("SmoothQuant", {}).smooth_quant_alpha == "auto"
    assert "smooth_quant_alpha" not in ALGORITHM_PARAMS["MinMaxQuantization"]


def test_model_type_defaults_apply_to_parameters_not_given():
    plain = resolve_params("DefaultQuantization", {})
    assert (plain.preset, plain.use_fast_bias) == ("performance", True)
    transformer = resolve_params("DefaultQuantization", {"model_type": "transformer"})
    assert (transformer.preset, transformer.use_fast_bias) == ("mixed", False)
    given = resolve_params("DefaultQuantization", {"model_type": "transformer", "preset": "performance",
                                                   "use_fast_bias": True})
    assert (given.preset, given.use_fast_bias) == ("performance", True)
    # AccuracyAwareQuantization resolves them too, so the DefaultQuantization it runs gets them
    accuracy_aware = resolve_params("AccuracyAwareQuantization", {"model_type": "transformer"})
    inner = resolve_params("DefaultQuantization", sub_params(accuracy_aware, "DefaultQuantization"))
    assert (inner.preset, inner.use_fast_bias) == ("mixed", False)
    assert resolve_params("MinMaxQuantization", {"model_type": "transformer"}).preset == "mixed"


# Values that used to pass validation and broke later (issue #11, item 8): each error names the parameter, the
# value and what is expected.
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("algorithm, params, message", [
    ("DefaultQuantization", {"weights": {"level_low": 0, "level_high": 0}},
     "invalid value 0 for 'weights.level_high': expected an integer >= 1"),
    ("DefaultQuantization", {"activations": {"level_low": 0, "level_high": 1}},
     "invalid value {'level_low': 0, 'level_high': 1} for 'activations': level_low 0 and level_high 1 give 2 "
     "quantization level(s); expected level_low <= 0 < level_high with at least 3 levels"),
    ("DefaultQuantization", {"weights": {"bits": 4, "level_low": -128, "level_high": 127}},
     "level_low -128 and level_high 127 give 256 quantization level(s); 'bits' 4 allows at most 16"),
    ("DefaultQuantization", {"activations": {"level_high": 1000}}, "'bits' 8 (the default) allows at most 256"),
    ("DefaultQuantization", {"weights": {"level_low": 5}}, "invalid value 5 for 'weights.level_low': expected an "
                                                           "integer <= 0"),
    ("DefaultQuantization", {"weights": {"level_high": 12.5}}, "for 'weights.level_high': expected an integer >= 1"),
    ("DefaultQuantization", {"weights": {"level_high": NAN}}, "invalid value nan for 'weights.level_high'"),
    ("AccuracyAwareQuantization", {"maximal_drop": NAN},
     "invalid value nan for 'maximal_drop': expected a finite number >= 0"),
    ("AccuracyAwareQuantization", {"maximal_drop": INF}, "invalid value inf for 'maximal_drop': expected a finite"),
    ("AccuracyAwareQuantization", {"maximal_drop": -0.01}, "invalid value -0.01 for 'maximal_drop'"),
    ("AccuracyAwareQuantization", {"maximal_drop": "1%"}, "invalid value '1%' for 'maximal_drop'"),
    ("AccuracyAwareQuantization", {"metrics": [{"name": "accuracy", "baseline_value": "high"}]},
     "'metrics[0].baseline_value' is 'high'; expected a finite number"),
    ("AccuracyAwareQuantization", {"metrics": [{"name": "accuracy", "baseline_value": NAN}]},
     "'metrics[0].baseline_value' is nan; expected a finite number"),
    ("AccuracyAwareQuantization", {"metrics": [{"name": "accuracy", "baseline": 0.7}]},
     "'metrics[0]' has unknown key(s) ['baseline']; valid keys: baseline_value, name"),
    ("AccuracyAwareQuantization", {"metrics": [{"name": 3}]}, "'metrics[0].name' is 3; expected a metric name"),
    ("AccuracyAwareQuantization", {"metrics": "accuracy"}, "expected a list like [{'name': 'accuracy'"),
    ("AccuracyAwareQuantization", {"annotation_conf_threshold": 1.5},
     "for 'annotation_conf_threshold': expected a number in [0, 1]"),
    ("DefaultQuantization", {"threshold": NAN}, "invalid value nan for 'threshold': expected a positive number"),
    ("FastBiasCorrection", {"threshold": -1}, "invalid value -1 for 'threshold': expected a positive number"),
    ("BiasCorrection", {"threshold": 0}, "invalid value 0 for 'threshold': expected a positive number"),
    ("MinMaxQuantization", {"activations": {"range_estimator": {"max": {"clipping_value": NAN}}}},
     "invalid value nan for 'activations.range_estimator.max.clipping_value': expected a finite number"),
    ("MinMaxQuantization", {"ignored": {"operations": [{"type": "Convolutoin"}]}},
     "'operations' names the op type 'Convolutoin', which OpenVINO does not have; close op types: "
     "['Convolution'"),
    ("MinMaxQuantization", {"ignored": {"operations": [{"type": "Add", "attributes": ["auto_broadcast"]}]}},
     "'attributes' of operations[0] must be a dict"),
    ("MinMaxQuantization", {"ignored": {"operations": [{"type": "Add", "atributes": {}}]}},
     "operations[0] has unknown key(s) ['atributes']; valid keys: attributes, type"),
    ("MinMaxQuantization", {"ignored": {"skip_model": "false"}}, "'skip_model' must be True or False, got 'false'"),
])
def test_nonsense_values_are_refused_with_the_parameter_named(algorithm, params, message):
    with pytest.raises(ValueError) as raised:
        resolve_params(algorithm, params)
    assert message in str(raised.value)


@pytest.mark.parametrize("params", [
    {"weights": {"level_low": -127, "level_high": 127}},
    {"activations": {"bits": 4, "level_low": 0, "level_high": 15}},
    {"weights": {"bits": 2, "level_low": -1, "level_high": 1}},
    {"threshold": INF},
    {"ignored": {"operations": [{"type": "Convolution"}, {"type": "Constant"}, {"type": "Parameter"},
                                {"type": "ScaledDotProductAttention"}, {"type": "Add", "attributes": {}}]}},
])
def test_sensible_values_stay_accepted(params):
    resolve_params("DefaultQuantization", params)


def test_sensible_accuracy_aware_values_stay_accepted():
    config = resolve_params("AccuracyAwareQuantization", {"maximal_drop": 0, "annotation_conf_threshold": 1,
                                                          "metrics": [{"name": "top1", "baseline_value": 71}]})
    assert config.maximal_drop == 0 and config.metrics[0]["baseline_value"] == 71


def test_ignored_for_member_picks_the_member_part_of_a_cascade_scope():
    whole = {"scope": ["conv1"]}
    assert ignored_for_member(whole, None, []) is whole
    assert ignored_for_member(whole, "pnet", ["pnet", "rnet"]) is whole  # one scope for every member
    per_member = {"pnet": {"scope": ["conv1"]}}
    assert ignored_for_member(per_member, "pnet", ["pnet", "rnet"]) == {"scope": ["conv1"]}
    assert ignored_for_member(per_member, "rnet", ["pnet", "rnet"]) is None
    assert ignored_for_member(None, None, []) is None


def test_ignored_for_member_refuses_names_that_match_no_member():
    with pytest.raises(ValueError, match=r"'ignored' names the model member\(s\) \['pnett'\], which the cascade "
                                         r"does not have; its members: \['pnet', 'rnet'\] \(close: pnet\)"):
        ignored_for_member({"pnett": {"scope": ["conv1"]}}, "pnet", ["pnet", "rnet"])
    with pytest.raises(ValueError, match=r"'ignored' is given per cascade member \(\['pnet'\]\), but the model "
                                         r"is a single model: give \{'scope': \[...\], 'operations': \[...\]\}"):
        ignored_for_member({"pnet": {"scope": ["conv1"]}}, None, [])
