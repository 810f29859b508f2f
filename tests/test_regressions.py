"""Shrunk counterexamples from the property tests (tests/test_property_models.py), kept as ordinary tests.

Open bugs are ``xfail(strict=True)`` with the reason starting "bug:" so that the fix turns them into failures
to be un-marked.
"""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.algorithms.quantization.cpu_workarounds import drop_uncompilable_fake_quantize, fq_sites_at_risk
from pot_torch.graph.editor import fake_quantize_ops
from tests.test_property_models import CORE, infer_all, quantize, sqnr_db

RNG = np.random.default_rng(5)


def _attention_scores_model(then) -> ov.Model:
    """input [1,2,3,4] -> query = x @ W -> scores = query @ x^T [1,2,3,3] -> ``then(scores)``."""
    x = ops.parameter([1, 2, 3, 4], np.float32, name="input")
    query = ops.matmul(x, ops.constant(RNG.standard_normal((4, 4)).astype(np.float32) * 0.5), False, False)
    query.set_friendly_name("query")
    scores = ops.matmul(query, x, False, True)
    scores.set_friendly_name("scores")
    return ov.Model([ops.result(then(scores))], [x], "attention_scores")


def _depthwise(value):
    weights = ops.constant(RNG.standard_normal((2, 1, 1, 3, 3)).astype(np.float32) * 0.3)
    node = ops.group_convolution(value, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    node.set_friendly_name("depthwise")
    return node


def _batch_norm_then_linear(value):
    constant = lambda v: ops.constant(np.array(v, np.float32))  # noqa: E731
    norm = ops.batch_norm_inference(value, constant([1.2, 0.8]), constant([0.1, -0.1]), constant([0.0, 0.2]),
                                    constant([1.0, 1.5]), 1e-5)
    return ops.matmul(norm, ops.constant(RNG.standard_normal((3, 3)).astype(np.float32) * 0.5), False, False)


def _calibration():
    return [{"input": RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)} for _ in range(4)]


def test_depthwise_conv_after_activation_matmul_compiles():
    """Found by the property test: a per-channel (axis 1) activation FakeQuantize on a depthwise conv's input,
    after a rank-4 activation MatMul, was fused by the CPU plugin into the MatMul (whose channel axis is the
    last one) and compile_model failed ("Check 'any_of(scale.size(), OC, 1U)' failed"). Fixed by quantizing
    depthwise inputs per tensor (cpu.json); the model must compile and stay close to FP32."""
    model = _attention_scores_model(_depthwise)
    calibration = _calibration()
    quantized = quantize(model, calibration, "performance", "minmax_covering").get_model()
    assert all(fq.input(1).get_partial_shape().rank.get_length() == 0
               for fq in fake_quantize_ops(quantized) if fq.get_friendly_name().endswith("fq_output_0"))
    CORE.compile_model(quantized, "CPU")
    assert sqnr_db(infer_all(model, calibration)[0], infer_all(quantized, calibration)[0]) >= 20.0


def test_batch_norm_after_activation_matmul_compiles(caplog):
    """Found by the property test: rank-4 activation MatMul -> Multiply by a [1,C,1,1] constant (batch norm)
    -> FakeQuantize does not compile on the OpenVINO CPU plugin ('any_of(scale.size(), OC, 1U)'; a plugin bug,
    reproduced without pot_torch). MinMaxQuantization now leaves that FakeQuantize out, with a warning naming
    it, and the model compiles and stays close to FP32."""
    model = _attention_scores_model(_batch_norm_then_linear)
    calibration = _calibration()
    norm = next(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "BatchNormInference")
    with caplog.at_level("WARNING", logger="pot_torch"):
        quantized = quantize(model, calibration, "performance", "minmax_covering").get_model()
    names = [fq.get_friendly_name() for fq in fake_quantize_ops(quantized)]
    assert f"{norm}/fq_output_0" not in names and "scores/fq_output_0" not in names
    assert "query/fq_output_0" in names and "MatMul_" in " ".join(names)  # the rest stays quantized
    assert f"left in floating point: {norm}/fq_output_0" in caplog.text
    CORE.compile_model(quantized, "CPU")
    assert sqnr_db(infer_all(model, calibration)[0], infer_all(quantized, calibration)[0]) >= 20.0


def _scaled_activation_matmul(scale: np.ndarray) -> ov.Model:
    """input [1,2,3,4] -> x @ x^T [1,2,3,3] -> * scale -> FakeQuantize -> @ W (no pot_torch involved)."""
    x = ops.parameter([1, 2, 3, 4], np.float32, name="input")
    scores = ops.multiply(ops.matmul(x, x, False, True), ops.constant(scale.astype(np.float32)))
    limit = ops.constant(np.float32(4.0))
    fq = ops.fake_quantize(scores, ops.negative(limit), limit, ops.negative(limit), limit, 256)
    fq.set_friendly_name("scaled/fq")
    weight = ops.constant(RNG.standard_normal((3, 3)).astype(np.float32))
    return ov.Model([ops.result(ops.matmul(fq, weight, False, False))], [x], "scaled_scores")


@pytest.mark.parametrize("scale, at_risk, dropped", [
    (np.array([1.2, 0.8]).reshape(1, 2, 1, 1), True, True),  # per channel on axis 1: the plugin bug
    (np.full((1, 2, 1, 1), 1.3), True, False),  # same shape, equal values: compiles, so nothing is dropped
    (np.array([1.2, 0.8, 1.0]), False, False),  # last axis: not the pattern, never compiled for the check
])
def test_cpu_workaround_drops_only_fake_quantize_that_does_not_compile(scale, at_risk, dropped):
    model = _scaled_activation_matmul(scale)
    assert [fq.get_friendly_name() for fq in fq_sites_at_risk(model)] == (["scaled/fq"] if at_risk else [])
    assert drop_uncompilable_fake_quantize(model, "GPU") == []  # other devices: untouched
    assert drop_uncompilable_fake_quantize(model, "CPU") == (["scaled/fq"] if dropped else [])
    assert len(fake_quantize_ops(model)) == (0 if dropped else 1)
    CORE.compile_model(model, "CPU")
