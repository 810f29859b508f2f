"""Model shapes real users have: dynamic batch and sequence length, inputs of several dtypes, several
outputs, models that already hold FakeQuantize, If subgraphs and FP16-compressed IR. Each is quantized, saved,
reloaded and run next to the FP32 model (f32 inference precision)."""
from __future__ import annotations

import logging

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, load_model, save_model
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges
from tests.model_builders import conv_model
from tests.test_property_models import SQNR_BOUNDS_DB, infer_all, quantize, sqnr_db

BOUND = SQNR_BOUNDS_DB["minmax_covering"]
RNG = np.random.default_rng(21)


def _weight(*shape, scale=0.3):
    return ops.constant((RNG.standard_normal(shape) * scale).astype(np.float32))


def _round_trip(model: ov.Model, inputs, folder, recipe="minmax_covering", preset="performance") -> ov.Model:
    quantized = quantize(model, inputs, preset, recipe)
    path = save_model(quantized, str(folder), model_name="int8")[0]["model"]
    return load_model({"model_name": "int8", "model": path}).get_model()


def _assert_close(model: ov.Model, reloaded: ov.Model, inputs, bound: float = BOUND) -> None:
    """Every output over all ``inputs`` (which may differ in shape) has SQNR >= ``bound``."""
    per_item = [(infer_all(model, [item]), infer_all(reloaded, [item])) for item in inputs]
    for output in range(len(per_item[0][0])):
        reference = np.concatenate([expected[output].ravel() for expected, _ in per_item])
        actual = np.concatenate([got[output].ravel() for _, got in per_item])
        assert sqnr_db(reference, actual) >= bound


def test_dynamic_batch_quantizes_and_runs_any_batch(tmp_path):
    x = ops.parameter([-1, 3, 8, 8], np.float32, name="input")
    conv = ops.convolution(x, _weight(4, 3, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1])
    model = ov.Model([ops.result(ops.relu(conv))], [x], "dynamic_batch")
    calibration = [{"input": RNG.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    reloaded = _round_trip(model, calibration, tmp_path)
    assert reloaded.inputs[0].get_partial_shape() == ov.PartialShape([-1, 3, 8, 8])
    assert len(fake_quantize_ops(reloaded)) == 2
    _assert_close(model, reloaded, [{"input": np.concatenate([c["input"] for c in calibration[:3]])}])


def test_dynamic_sequence_length_calibrates_on_mixed_lengths(tmp_path):
    x = ops.parameter([1, -1, 16], np.float32, name="tokens")
    fc = ops.add(ops.matmul(x, _weight(16, 8), False, False), _weight(8))
    model = ov.Model([ops.result(ops.gelu(fc, "erf"))], [x], "dynamic_sequence")
    calibration = [{"tokens": RNG.standard_normal((1, length, 16)).astype(np.float32)} for length in (3, 7, 5, 1)]
    reloaded = _round_trip(model, calibration, tmp_path)
    assert reloaded.inputs[0].get_partial_shape() == ov.PartialShape([1, -1, 16])
    assert len(fake_quantize_ops(reloaded)) == 2
    _assert_close(model, reloaded, calibration + [{"tokens": RNG.standard_normal((1, 11, 16)).astype(np.float32)}])


def _image_and_tokens_model() -> ov.Model:
    """Float image [1,3,8,8] and int64 token ids [1,5] -> outputs 'logits' [1,4] and 'features' [1,8]."""
    image = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    ids = ops.parameter([1, 5], np.int64, name="ids")
    conv = ops.relu(ops.convolution(image, _weight(8, 3, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1]))
    pooled = ops.reshape(ops.avg_pool(conv, [1, 1], [0, 0], [0, 0], [8, 8], True),
                         ops.constant(np.array([1, 8], np.int64)), False)
    embedded = ops.gather(_weight(20, 8, scale=1.0), ids, ops.constant(np.int64(0)))
    text = ops.reduce_mean(embedded, ops.constant(np.array([1], np.int64)), False)
    features = ops.add(pooled, text)
    features.set_friendly_name("features")
    logits = ops.matmul(features, _weight(8, 4), False, False)
    logits.set_friendly_name("logits")
    return ov.Model([ops.result(logits), ops.result(features)], [image, ids], "image_and_tokens")


def test_float_and_int64_inputs_with_two_outputs(tmp_path):
    model = _image_and_tokens_model()
    calibration = [{"image": RNG.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32),
                    "ids": RNG.integers(0, 20, (1, 5)).astype(np.int64)} for _ in range(4)]
    reloaded = _round_trip(model, calibration, tmp_path)
    assert [p.get_element_type() for p in reloaded.inputs] == [ov.Type.f32, ov.Type.i64]
    assert len(reloaded.outputs) == 2
    fq_inputs = {fq.input_value(0).get_node().get_type_name() for fq in fake_quantize_ops(reloaded)}
    assert "Parameter" in fq_inputs  # the image is quantized; the int64 ids are not (not real-valued)
    assert all(fq.input_value(0).get_element_type().is_real() for fq in fake_quantize_ops(reloaded))
    _assert_close(model, reloaded, calibration)


def test_model_that_already_holds_fake_quantize_is_not_quantized_twice(tmp_path):
    calibration = [{"input": RNG.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    once = quantize(conv_model(), calibration, "performance", "minmax_covering").get_model()
    twice = quantize(once, calibration, "mixed", "minmax_covering").get_model()
    first = {fq.get_friendly_name(): fake_quantize_ranges(fq) for fq in fake_quantize_ops(once)}
    second = {fq.get_friendly_name(): fake_quantize_ranges(fq) for fq in fake_quantize_ops(twice)}
    assert second.keys() == first.keys()  # no FakeQuantize added next to the existing ones
    for name, ranges in first.items():  # and the existing ones keep their ranges
        for a, b in zip(ranges, second[name]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(infer_all(once, calibration)[0], infer_all(twice, calibration)[0])


def _if_model() -> ov.Model:
    """input [1,8] -> fc 'outer_fc' -> If('cond') with a MatMul in each body -> output [1,4]."""
    x = ops.parameter([1, 8], np.float32, name="input")
    cond = ops.parameter([], np.bool_, name="cond")
    outer = ops.matmul(x, _weight(8, 8), False, False)
    outer.set_friendly_name("outer_fc")
    bodies = []
    for activation in (lambda v: v, ops.relu):
        body_input = ops.parameter([1, 8], np.float32)
        bodies.append((ov.Model([ops.result(activation(ops.matmul(body_input, _weight(8, 4), False, False)))],
                                [body_input]), body_input))
    branch = ops.if_op(cond)
    branch.set_friendly_name("branch")
    branch.set_then_body(bodies[0][0])
    branch.set_else_body(bodies[1][0])
    branch.set_input(outer.output(0), bodies[0][1], bodies[1][1])
    output = branch.set_output(bodies[0][0].get_results()[0], bodies[1][0].get_results()[0])
    return ov.Model([ops.result(output)], [x, cond], "if_model")


def _calibration_with_condition():
    return [{"input": RNG.standard_normal((1, 8)).astype(np.float32), "cond": np.array(i % 2 == 0)}
            for i in range(4)]


def test_if_bodies_are_left_alone_and_the_rest_is_quantized(tmp_path):
    model = _if_model()
    calibration = _calibration_with_condition()
    reloaded = _round_trip(model, calibration, tmp_path)
    assert sorted(fq.get_friendly_name() for fq in fake_quantize_ops(reloaded)) == [
        "input/fq_output_0", "outer_fc/fq_weights_1"]
    branch = next(op for op in reloaded.get_ops() if op.get_type_name() == "If")
    for index in range(2):
        body = branch.get_function(index)
        assert not [op for op in body.get_ops() if op.get_type_name() == "FakeQuantize"]
    _assert_close(model, reloaded, calibration)


def test_if_bodies_left_alone_are_reported(caplog):
    calibration = _calibration_with_condition()
    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        quantize(_if_model(), calibration, "performance", "minmax_covering")
    assert any("branch" in record.getMessage() and "If" in record.getMessage() for record in caplog.records)


def test_fp16_compressed_ir_quantizes_and_keeps_precision(tmp_path):
    ov.save_model(conv_model(), str(tmp_path / "fp16.xml"), compress_to_fp16=True)
    model = load_model({"model_name": "fp16", "model": str(tmp_path / "fp16.xml")}).get_model()
    assert any(op.get_element_type() == ov.Type.f16 for op in model.get_ops() if op.get_type_name() == "Constant")
    calibration = [{"input": RNG.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    reloaded = _round_trip(model, calibration, tmp_path / "out")
    assert len([fq for fq in fake_quantize_ops(reloaded) if "weights" in fq.get_friendly_name()]) == 3
    _assert_close(model, reloaded, calibration)


def _weight_fake_quantizes(model: ov.Model) -> list:
    from pot_torch.graph.constants import constant_source

    return [fq for fq in fake_quantize_ops(model) if constant_source(fq.input_value(0)) is not None]


@pytest.mark.parametrize("recipe", ["default", "minmax_covering", "transformer"])
def test_saved_int8_ir_with_compressed_weights_is_not_quantized_twice(tmp_path, caplog, recipe):
    """Issue #11 item 7: a saved INT8 IR stores weights as Constant(i8) -> Convert -> [Subtract] -> Multiply;
    quantizing it again must not put a new FakeQuantize after each decompression Multiply."""
    from pot_torch import compress_model_weights

    calibration = [{"input": RNG.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    first = quantize(conv_model(), calibration, "performance", recipe)
    compress_model_weights(first)
    path = save_model(first, str(tmp_path), model_name="int8")[0]["model"]
    loaded = load_model({"model_name": "int8", "model": path}).get_model()
    assert not _weight_fake_quantizes(loaded)  # the weights are stored as integers
    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        twice = quantize(loaded, calibration, "performance", recipe).get_model()
    assert len(fake_quantize_ops(twice)) == len(fake_quantize_ops(loaded))  # nothing added
    assert not _weight_fake_quantizes(twice)
    assert "3 layers already have INT8-compressed weights" in caplog.text
    assert sqnr_db(infer_all(loaded, calibration)[0], infer_all(twice, calibration)[0]) >= 40.0
