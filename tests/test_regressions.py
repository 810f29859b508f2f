"""Shrunk counterexamples from the property tests (tests/test_property_models.py), kept as ordinary tests.

Open bugs are ``xfail(strict=True)`` with the reason starting "bug:" so that the fix turns them into failures
to be un-marked.
"""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

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


@pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
    "bug (OpenVINO CPU plugin, reproduced without pot_torch): rank-4 activation MatMul -> Multiply by a "
    "[1,C,1,1] constant (batch norm) -> FakeQuantize does not compile ('any_of(scale.size(), OC, 1U)'); "
    "pot_torch returns such a model without saying it cannot run on CPU"))
def test_batch_norm_after_activation_matmul_compiles():
    model = _attention_scores_model(_batch_norm_then_linear)
    quantized = quantize(model, _calibration(), "performance", "minmax_covering").get_model()
    CORE.compile_model(quantized, "CPU")
