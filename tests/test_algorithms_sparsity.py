"""MagnitudeSparsity, BaseWeightSparsity and WeightSparsity on small real models (OpenVINO inference at f32)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from tests.model_builders import conv_model, reference_infer
from pot_torch import CompressedModel, IEEngine, create_pipeline
from pot_torch.algorithms.quantization.bias_correction_base import compile_f32
from pot_torch.algorithms.sparsity.magnitude_sparsity import sparsify_channels
from pot_torch.graph.editor import constant_value, find_op
from tests.test_minmax import ArrayLoader


def _two_dense(big: float, small: float) -> ov.Model:
    """x[1,4] -> MatMul 'a' (weights 1..16 * big) + bias -> MatMul 'b' (weights 1..16 * small) + bias."""
    x = ops.parameter([1, 4], np.float32, name="x")
    values = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    node = x
    for name, scale in (("a", big), ("b", small)):
        node = ops.matmul(node, ops.constant(values * scale), False, False)
        node.set_friendly_name(name)
        node = ops.add(node, ops.constant(np.full((1, 4), 0.5, np.float32)))
        node.set_friendly_name(f"{name}_bias")
    return ov.Model([ops.result(node)], [x], "two_dense")


def _sparsify(ov_model: ov.Model, params: dict, name: str = "MagnitudeSparsity", items=None) -> CompressedModel:
    items = np.ones((2, 1, 4), np.float32) if items is None else items
    engine = IEEngine({"device": "CPU"}, ArrayLoader(items))
    return create_pipeline([{"name": name, "params": params}], engine).run(CompressedModel(ov_model))


def _weights(model: CompressedModel, layer: str) -> np.ndarray:
    return constant_value(find_op(model.get_model(), layer).input_value(1))


def test_normed_threshold_ranks_each_layer_by_its_own_norm():
    # 32 weights, level 0.5 -> the 16 smallest go. Raw magnitudes: all of 'b' (x0.01) is below all of 'a' (x10).
    plain = _sparsify(_two_dense(10.0, 0.01),
                      {"sparsity_level": 0.5, "normed_threshold": False, "correct_weight_bias": False})
    assert np.count_nonzero(_weights(plain, "a")) == 16 and np.count_nonzero(_weights(plain, "b")) == 0
    # Divided by their norms both layers hold the same values 1..16 / |1..16|: the threshold is the 17th of the
    # 32 sorted values (value 9 of each layer), so 1..8 go in each layer.
    normed = _sparsify(_two_dense(10.0, 0.01), {"sparsity_level": 0.5, "correct_weight_bias": False})
    dense = CompressedModel(_two_dense(10.0, 0.01))
    kept = np.arange(1, 17).reshape(4, 4) > 8
    a, b = (np.where(kept, _weights(dense, name), 0.0) for name in ("a", "b"))
    np.testing.assert_array_equal(_weights(normed, "a"), a)
    np.testing.assert_array_equal(_weights(normed, "b"), b)
    # the inference of the sparse model: x = ones -> x @ A_sparse + 0.5 -> @ B_sparse + 0.5
    hand = (np.ones((1, 4)) @ a + 0.5) @ b + 0.5
    np.testing.assert_allclose(reference_infer(normed.get_model(), [np.ones((1, 4), np.float32)])[0], hand,
                               rtol=1e-5)


def test_channel_correction_matches_hand_computed_values():
    # one channel [1, 2, 3, 6], the 1 masked: std 1.870829 -> 2.165064, scale 0.864099; shift 3 - 2.75 * scale
    weights = np.array([[1.0, 2.0, 3.0, 6.0]], np.float32)
    result = sparsify_channels(weights, weights < 1.5, axes=(0,), correct=True, eps=1e-9)
    np.testing.assert_allclose(result, [[0.0, 2.351929, 3.216028, 5.808325]], rtol=1e-5)


def test_input_convolution_stays_dense_without_normalisation():
    model = _sparsify(conv_model(), {"sparsity_level": 0.5, "normed_threshold": False,
                                     "correct_weight_bias": False}, items=np.ones((2, 3, 16, 16), np.float32))
    dense = CompressedModel(conv_model())
    np.testing.assert_array_equal(_weights(model, "conv1"), _weights(dense, "conv1"))
    together = np.concatenate([np.abs(_weights(dense, name)).ravel() for name in ("conv2", "fc")])
    threshold = np.sort(together)[int(0.5 * together.size)]
    for name in ("conv2", "fc"):
        original = _weights(dense, name)
        np.testing.assert_array_equal(_weights(model, name), np.where(np.abs(original) < threshold, 0, original))
    zeros = sum(int(np.sum(_weights(model, name) == 0)) for name in ("conv2", "fc"))
    assert zeros == int(0.5 * together.size)


def test_ignored_scope_is_left_dense():
    model = _sparsify(_two_dense(1.0, 1.0), {"sparsity_level": 0.5, "ignored": {"scope": ["a"]}})
    np.testing.assert_array_equal(_weights(model, "a"), np.arange(1, 17, dtype=np.float32).reshape(4, 4))
    assert np.count_nonzero(_weights(model, "b")) == 8


@pytest.mark.parametrize("name", ["BaseWeightSparsity", "WeightSparsity"])
def test_bias_correction_restores_the_output_mean(name):
    rng = np.random.default_rng(0)
    items = (rng.standard_normal((16, 1, 4)) + 2.0).astype(np.float32)
    ov_model = _two_dense(0.1, 0.1)
    fp = np.concatenate([reference_infer(ov_model, [item])[0] for item in items]).mean(axis=0)

    def output_mean(model: CompressedModel) -> np.ndarray:
        return np.concatenate([reference_infer(model.get_model(), [item])[0] for item in items]).mean(axis=0)

    sparse_only = output_mean(_sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5}, items=items))
    corrected_model = _sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5}, name=name, items=items)
    assert np.abs(sparse_only - fp).max() > 0.1
    # linear layers: the correction against the dense model's means makes the output mean exact again
    np.testing.assert_allclose(output_mean(corrected_model), fp, rtol=1e-4, atol=1e-4)
    assert np.count_nonzero(_weights(corrected_model, "a")) == 8


def test_bias_shift_probes_in_pieces_of_bounded_weight_bytes(monkeypatch):
    """The removed weights are probed in pieces of at most PROBE_WEIGHT_BYTES (one model of every layer held a
    copy of all of them), with the same biases."""
    import pot_torch.algorithms.sparsity.bias_shift as bias_shift

    rng = np.random.default_rng(0)
    items = (rng.standard_normal((16, 1, 4)) + 2.0).astype(np.float32)
    whole = _sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5}, name="WeightSparsity", items=items)
    compiled = []
    monkeypatch.setattr(bias_shift, "PROBE_WEIGHT_BYTES", 1)  # every layer on its own
    monkeypatch.setattr(bias_shift, "compile_f32", lambda model: compiled.append(model) or compile_f32(model))
    pieces = _sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5}, name="WeightSparsity", items=items)
    assert len(compiled) == 2
    for bias in ("a_bias", "b_bias"):
        np.testing.assert_array_equal(constant_value(find_op(pieces.get_model(), bias).input_value(1)),
                                      constant_value(find_op(whole.get_model(), bias).input_value(1)))


def test_refusals_name_the_parameter():
    with pytest.raises(ValueError, match="sparsity_level"):
        _sparsify(_two_dense(1.0, 1.0), {})
    with pytest.raises(ValueError, match="sparsity_level"):
        _sparsify(_two_dense(1.0, 1.0), {"sparsity_level": 1.0})
    with pytest.raises(ValueError, match="fine-tuning.*torch"):
        _sparsify(_two_dense(1.0, 1.0), {"sparsity_level": 0.5, "use_layerwise_tuning": True}, "WeightSparsity")


def test_full_bias_correction_with_use_fast_bias_false():
    # BiasCorrection measures the dense model on 20% of the calibration subset (at least one sample): of 4 items,
    # item 0 alone; on it the sparse linear model's output is the dense one's again
    rng = np.random.default_rng(0)
    items = (rng.standard_normal((4, 1, 4)) + 2.0).astype(np.float32)
    dense = reference_infer(_two_dense(0.1, 0.1), [items[0]])[0]
    sparse = reference_infer(_sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5}, items=items).get_model(),
                             [items[0]])[0]
    corrected = _sparsify(_two_dense(0.1, 0.1), {"sparsity_level": 0.5, "use_fast_bias": False},
                          name="BaseWeightSparsity", items=items)
    assert np.abs(sparse - dense).max() > 0.1
    np.testing.assert_allclose(reference_infer(corrected.get_model(), [items[0]])[0], dense, rtol=1e-4, atol=1e-4)
