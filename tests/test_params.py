"""Algorithm parameters: POT defaults, validation errors naming valid values, calibration subsets."""
import pytest

from pot_torch.algorithms.params import ALGORITHM_PARAMS, calibration_indices, resolve_params, sub_params


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
    ({"ignored": {"scope": "conv1"}}, "'scope' must be a list of node names"),
    ({"ignored": {"operations": [{"name": "Add"}]}}, "'operations' must be a list of dicts"),
    ({"model_type": "cnn"}, "valid values: None, 'transformer'"),
    ({"use_layerwise_tuning": True}, "for 'use_layerwise_tuning'; valid values: False"),
    ({"smooth_quant_alpha": 1.5}, "invalid value 1.5 for 'smooth_quant_alpha': expected a number in [0, 1], "
                                  "or None or a negative number to turn SmoothQuant off"),
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


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1, None, -1])
def test_smooth_quant_alpha_accepts_numbers_up_to_one_and_off_values(alpha):
    for algorithm in ("SmoothQuant", "DefaultQuantization", "AccuracyAwareQuantization"):
        assert resolve_params(algorithm, {"smooth_quant_alpha": alpha}).smooth_quant_alpha == alpha
    assert resolve_params("SmoothQuant", {}).smooth_quant_alpha == 0.95
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
