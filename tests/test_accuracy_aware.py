"""AccuracyAwareQuantization: the drop is met where default INT8 fails it, and every stopping rule holds."""
import logging
import re

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from classification_metrics import Accuracy
from model_builders import outlier_classifier
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyDropNotMetWarning
from pot_torch.algorithms.quantization.accuracy_evaluation import MetricSpec, hardest_samples
from pot_torch.algorithms.quantization.quantizer_groups import QuantizerGroup, quantizer_groups, revert_group


class ArrayLoader(DataLoader):
    def __init__(self, inputs, labels, with_annotations=True):
        super().__init__()
        self.inputs, self.labels, self.with_annotations = inputs, labels, with_annotations

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], (int(self.labels[index]) if self.with_annotations else None)


class ErrorRate(Accuracy):
    """100 - accuracy in percent: lower is better."""

    @property
    def value(self):
        return {"error": [100.0 - v for v in self.last]}

    @property
    def avg_value(self):
        return {"error": 100.0 - float(np.mean(self.hits))}

    def get_attributes(self):
        return {"error": {"direction": "higher-worse", "type": "error"}}


@pytest.fixture(scope="module")
def problem():
    return outlier_classifier()


def _run(problem, params, metric=None, with_annotations=True):
    ov_model, inputs, labels = problem
    engine = IEEngine({"device": "CPU"}, ArrayLoader(inputs, labels, with_annotations),
                      Accuracy() if metric is None else metric)
    model = CompressedModel(ov_model)
    pipeline = create_pipeline([{"name": "AccuracyAwareQuantization",
                                 "params": {"preset": "performance", "stat_subset_size": 100, **params}}], engine)
    quantized = pipeline.run(model)
    return pipeline, engine, model, quantized


def _count_fq(model):
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_model().get_ops())


def test_default_quantization_fails_the_budget_on_this_model(problem):
    ov_model, inputs, labels = problem
    engine = IEEngine({"device": "CPU"}, ArrayLoader(inputs, labels), Accuracy())
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": {"stat_subset_size": 100}}], engine)
    quantized = pipeline.run(CompressedModel(ov_model))
    assert pipeline.evaluate(CompressedModel(ov_model))["accuracy"] >= 99.0  # bf16 evaluation
    assert pipeline.evaluate(quantized)["accuracy"] < 95.0


def test_drop_is_met_by_reverting_layers(problem):
    pipeline, engine, model, quantized = _run(problem, {"maximal_drop": 2.0})
    algorithm = pipeline.algorithms[0]
    assert pipeline.evaluate(model)["accuracy"] - pipeline.evaluate(quantized)["accuracy"] <= 2.0
    assert algorithm.reverted_layers == ["fc1"]  # the most harmful layer only
    assert _count_fq(quantized) == 2  # fc2 stays quantized: its input and weights
    assert algorithm.final_drop <= 2.0


def test_relative_drop_allows_more_than_absolute(problem):
    # absolute 40 points allows the default INT8 model; relative 0.01 of 100 allows only 1 point
    pipeline, _, _, quantized = _run(problem, {"maximal_drop": 99.0, "drop_type": "absolute"})
    assert pipeline.algorithms[0].reverted_layers == []
    pipeline, _, _, _ = _run(problem, {"maximal_drop": 0.01, "drop_type": "relative"})
    assert pipeline.algorithms[0].final_drop <= 1.0 and pipeline.algorithms[0].reverted_layers


def test_higher_worse_metric(problem):
    pipeline, _, model, quantized = _run(problem, {"maximal_drop": 1.0}, metric=ErrorRate())
    assert pipeline.evaluate(quantized)["error"] - pipeline.evaluate(model)["error"] <= 1.0
    assert "fc1" in pipeline.algorithms[0].reverted_layers


def test_unreachable_target_warns_and_returns_best_model(problem):
    with pytest.warns(AccuracyDropNotMetWarning, match="could not achieve the required accuracy drop"):
        pipeline, _, _, quantized = _run(problem, {"maximal_drop": 1.0,
                                                   "metrics": [{"name": "accuracy", "baseline_value": 200.0}]})
    algorithm = pipeline.algorithms[0]
    assert algorithm.final_drop == pytest.approx(100.0, abs=1.0)  # best achievable: the FP accuracy


def test_max_iter_num_stops_the_loop(problem):
    with pytest.warns(AccuracyDropNotMetWarning):
        pipeline, _, _, _ = _run(problem, {"maximal_drop": 1.0, "max_iter_num": 1,
                                           "metrics": [{"name": "accuracy", "baseline_value": 200.0}]})
    assert len(pipeline.algorithms[0].reverted_layers) <= 2  # one group: a MatMul (and what it shares)


def test_input_model_is_untouched(problem, tmp_path):
    ov_model = problem[0]
    ov.save_model(ov_model, tmp_path / "before.xml", compress_to_fp16=False)
    _run(problem, {"maximal_drop": 1.0})
    ov.save_model(ov_model, tmp_path / "after.xml", compress_to_fp16=False)
    assert (tmp_path / "before.xml").read_bytes() == (tmp_path / "after.xml").read_bytes()
    assert (tmp_path / "before.bin").read_bytes() == (tmp_path / "after.bin").read_bytes()


def test_missing_metric_is_a_clear_error(problem):
    ov_model, inputs, labels = problem
    engine = IEEngine({"device": "CPU"}, ArrayLoader(inputs, labels))
    pipeline = create_pipeline([{"name": "AccuracyAwareQuantization", "params": {}}], engine)
    with pytest.raises(ValueError, match="AccuracyAwareQuantization needs a metric"):
        pipeline.run(CompressedModel(ov_model))


def test_missing_annotations_is_a_clear_error(problem):
    with pytest.raises(ValueError, match="needs annotations to compute the metric"):
        _run(problem, {}, with_annotations=False)


def test_unknown_parameter_is_refused(problem):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['maximal_dorp'\]"):
        _run(problem, {"maximal_dorp": 0.01})


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_each_step_and_the_result_are_logged(problem):
    logger = logging.getLogger("pot_torch.algorithms.quantization.accuracy_aware")
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        _run(problem, {"maximal_drop": 2.0})
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    text = "\n".join(records.messages)
    assert "Default INT8 model: accuracy = " in text
    assert re.search(r"Ranking 2 quantizer groups on \d+ samples", text)
    assert re.search(r"Step 1/2: reverted \[fc1\] to floating point: accuracy = [\d.]+, drop [\d.e-]+", text)
    assert "1 layer(s) left in floating point (fc1)" in text


def test_ranking_subset_holds_only_samples_int8_got_worse():
    spec = MetricSpec("accuracy", higher_better=True)
    fp = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    int8 = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    assert hardest_samples(spec, fp, int8, [10, 11, 12, 13, 14], count=4) == [11, 13]
    assert hardest_samples(spec, fp, int8, [10, 11, 12, 13, 14], count=1) == [11]
    # no sample worse: fall back to the `count` largest differences
    assert hardest_samples(spec, fp, fp, [10, 11, 12, 13, 14], count=2) == [10, 11]
    # lower is better: a larger error is worse
    error = MetricSpec("error", higher_better=False)
    assert hardest_samples(error, np.array([0.0, 0.0]), np.array([0.0, 1.0]), [0, 1], count=2) == [1]


def _fq(node, levels=256):
    low, high = ops.constant(np.float32(-1.0)), ops.constant(np.float32(1.0))
    return ops.fake_quantize(node, low, high, low, high, levels)


def test_a_quantizer_above_a_max_pool_is_grouped_with_the_layer_below_it():
    x = ops.parameter([1, 4, 8, 8], np.float32, name="input")
    act = _fq(x)
    act.set_friendly_name("act_fq")
    pool = ops.max_pool(act, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2])
    pool.set_friendly_name("pool")
    weights = _fq(ops.constant(np.ones((4, 4, 1, 1), np.float32)))
    weights.set_friendly_name("weight_fq")
    conv = ops.convolution(pool.output(0), weights, [1, 1], [0, 0], [0, 0], [1, 1])
    conv.set_friendly_name("conv")
    model = ov.Model([ops.result(conv)], [x], "pool_conv")
    assert quantizer_groups(model) == [QuantizerGroup(("act_fq",), ("pool",)),
                                       QuantizerGroup(("weight_fq",), ("conv",))]
    groups = quantizer_groups(model, agnostic=("MaxPool",))
    assert groups == [QuantizerGroup(("act_fq", "weight_fq"), ("conv",))]
    revert_group(model, groups[0])
    assert not [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert ov.Core().compile_model(model, "CPU")(np.ones((1, 4, 8, 8), np.float32))[0].shape == (1, 4, 4, 4)


def test_non_finite_metric_is_a_clear_error(problem):
    with pytest.raises(ValueError, match=r"metric 'accuracy' is nan over 240 samples \(NaN or infinite\)"):
        _run(problem, {}, metric=Accuracy(nan=True))


def test_reverting_a_saturation_fixed_layer_restores_its_weights():
    """The first convolution's weights are halved under saturation_fix; reverting it must undo that exactly."""
    from model_builders import conv_model, reference_infer
    from pot_torch.algorithms.quantization.quantizer_groups import quantizer_groups, revert_group

    ov_model = conv_model(seed=5)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32)
    engine = IEEngine({"device": "CPU"}, ArrayLoader(images, np.zeros(8)))
    quantized = create_pipeline([{"name": "MinMaxQuantization", "params": {"saturation_fix": "all"}}],
                                engine).run(CompressedModel(ov_model)).get_model()
    for group in quantizer_groups(quantized):
        revert_group(quantized, group)
    assert not [op for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize"]
    np.testing.assert_allclose(reference_infer(quantized, [images[0]])[0], reference_infer(ov_model, [images[0]])[0],
                               rtol=1e-5, atol=1e-6)


def test_tune_hyperparams_tries_a_grid_before_reverting(problem, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="pot_torch"):
        pipeline, _, _, _ = _run(problem, {"maximal_drop": 2.0, "tune_hyperparams": True})
    tried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Hyperparameters")]
    assert len(tried) == 7  # (performance, mixed) x (default, quantile) x (first_layer, no), minus the default
    assert any("'quantile'" in line and "'mixed'" in line for line in tried)
    assert pipeline.algorithms[0].final_drop <= 2.0


class ListAverage(Accuracy):
    """avg_value {name: [value]}: a list where accuracy control needs one number (issue #11)."""

    @property
    def avg_value(self):
        return {"accuracy": [float(np.mean(self.hits))]}


def test_metric_value_that_is_not_a_number_is_named(problem):
    with pytest.raises(TypeError, match=r"metric 'accuracy' is \[[\d.]+\] over 240 samples; accuracy control needs "
                                        r"one number: ListAverage.avg_value must return \{'accuracy': value\}"):
        _run(problem, {"maximal_drop": 1.0}, metric=ListAverage())


def test_tune_hyperparams_keeps_the_users_range_estimator_entries():
    from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization

    user = {"max": {"aggregator": "median"}}
    algorithm = AccuracyAwareQuantization({"tune_hyperparams": True, "range_estimator": user}, None)
    alternatives = [overrides for _, overrides in algorithm._alternatives()]
    assert len(alternatives) == 7  # the user's own setting (default preset, first_layer) is not repeated
    assert all(overrides["range_estimator"]["max"] == user["max"] for overrides in alternatives)
    assert {overrides["range_estimator"]["preset"] for overrides in alternatives} == {"default", "quantile"}


@pytest.fixture(scope="module")
def digits_cnn():
    """Issue #12's training post-step: a 3-conv BatchNorm CNN trained 6 epochs on scikit-learn's digits; its
    calibration data (300 training images) and validation data (597 held out)."""
    import torch
    from digits_cnn import trained_digits_cnn

    module, train, validation = trained_digits_cnn()
    return module, torch.utils.data.Subset(train, range(300)), validation


def _quantize_digits(digits_cnn, maximal_drop):
    from torchmetrics.classification import MulticlassAccuracy

    from pot_torch.adapters import quantize

    module, calibration, validation = digits_cnn
    return quantize(module, calibration, validation, metric=MulticlassAccuracy(num_classes=10, average="micro"),
                    maximal_drop=maximal_drop)


def test_digits_cnn_meets_the_budget_reverting_at_most_two_layers(digits_cnn):
    """Issue #12's post-step case: NNCF's accuracy control meets 0.01 reverting the first two convolutions."""
    result = _quantize_digits(digits_cnn, maximal_drop=0.01)
    assert result.fp32_metric > 0.85  # the model learned
    assert result.fp32_metric - result.int8_metric <= 0.01  # bf16 evaluation, the 597 held-out images
    assert len(result.reverted_layers) <= 2


@pytest.mark.slow  # about 5 s on 2 idle cores, 10 s or more on a loaded machine
@pytest.mark.filterwarnings("error::pot_torch.algorithms.quantization.accuracy_aware.AccuracyDropNotMetWarning")
def test_a_zero_drop_budget_is_met_on_the_digits_cnn(digits_cnn):
    """maximal_drop 0 is always reachable, since reverting every group gives back the floating-point model: a
    reverted layer's bias is its own again (issue #12: FastBiasCorrection's shifts stayed, and with every
    group reverted the model was still 6 points below the floating-point one)."""
    result = _quantize_digits(digits_cnn, maximal_drop=0.0)
    assert result.fp32_metric > 0.85  # the model learned (bf16 evaluation)
    assert result.int8_metric >= result.fp32_metric


def _conv_with_bias(bias_value, quantized=True):
    """input -> [FQ] -> conv (weights [FQ]) -> bias Add: a one-layer model as DefaultQuantization leaves it."""
    x = ops.parameter([1, 2, 4, 4], np.float32, name="input")
    source, weights = x, ops.constant(np.ones((3, 2, 1, 1), np.float32))
    if quantized:
        source, weights = _fq(x), _fq(weights)
        source.set_friendly_name("input/fq_output_0")
        weights.set_friendly_name("conv/fq_weights_1")
    conv = ops.convolution(source, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    conv.set_friendly_name("conv")
    add = ops.add(conv, ops.constant(np.full((1, 3, 1, 1), bias_value, np.float32)))
    return CompressedModel(ov.Model([ops.result(add)], [x], "conv_bias"))


def test_a_reverted_layer_gets_its_bias_from_before_bias_correction():
    from pot_torch.algorithms.quantization.layer_revert import biases_before_correction, reverted

    corrected, uncorrected = _conv_with_bias(0.75), _conv_with_bias(0.5)
    biases = biases_before_correction(corrected, uncorrected)
    assert list(biases) == [(None, "conv")] and np.array_equal(biases[(None, "conv")], [0.5, 0.5, 0.5])
    assert biases_before_correction(corrected, _conv_with_bias(0.75)) == {}  # an uncorrected bias is not listed
    group = quantizer_groups(corrected.get_model())[0]
    result = reverted(corrected, [(None, group)], biases)
    assert _count_fq(result) == 0 and _count_fq(corrected) == 2  # a copy; the input model keeps its quantizers
    x = np.ones((1, 2, 4, 4), np.float32)
    output = ov.Core().compile_model(result.get_model(), "CPU")(x)[0]
    np.testing.assert_array_equal(output, np.full((1, 3, 4, 4), 2.5))  # 1 * 2 inputs + the bias 0.5
    with pytest.raises(ValueError, match="other FakeQuantize ops than the quantized model"):
        biases_before_correction(corrected, _conv_with_bias(0.5, quantized=False))
