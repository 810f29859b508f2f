"""RangeOptimization: the scipy search finds a hand-computed best range; given ranges are set; refusals."""
from __future__ import annotations

import sys

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import reference_infer
from output_metrics import Closeness
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges, insert_fake_quantize
from pot_torch.graph.norm_input_guard import guard_normalization_inputs


class ConstantLoader(DataLoader):
    """``count`` items, every value ``value``; the annotation is the value too."""

    def __init__(self, value: float, count: int = 4) -> None:
        super().__init__()
        self.value, self.count = value, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return np.full((1, 4), self.value, np.float32), self.value


def _relu_fq(levels: int, high: float) -> CompressedModel:
    """x -> ReLU 'relu' -> FakeQuantize 'fq' (levels, [0, high]) -> output."""
    x = ops.parameter([1, 4], np.float32, name="x")
    relu = ops.relu(x)
    relu.set_friendly_name("relu")
    model = ov.Model([ops.result(relu)], [x], "relu_fq")
    insert_fake_quantize(model, relu.output(0), levels, (0.0, high, 0.0, high), name="fq")
    return CompressedModel(model)


def _optimize(model: CompressedModel, value: float, **params) -> CompressedModel:
    engine = IEEngine({"device": "CPU"}, ConstantLoader(value), Closeness())
    return create_pipeline([{"name": "RangeOptimization", "params": params}], engine).run(model)


def _fq_range(model: CompressedModel) -> tuple:
    low, high, out_low, out_high = fake_quantize_ranges(fake_quantize_ops(model.get_model())[0])
    assert low == out_low and high == out_high
    return float(low), float(high)


def test_scipy_search_finds_the_range_that_puts_the_data_on_the_grid():
    # 3 levels on [0, h]: the grid is {0, h/2, h}, so the value 3 is exact for h = 6 (error |h - 6| / 2 near it).
    # The start 6.1 (error 0.05) may move within [0.92 * 6.1, 1.02 * 6.1] = [5.612, 6.222], which holds 6.
    quantized = _optimize(_relu_fq(3, 6.1), 3.0, maxiter=3)
    low, high = _fq_range(quantized)
    assert low == 0.0  # after a ReLU only the upper end is searched
    assert abs(high - 6.0) < 0.02
    out = reference_infer(quantized.get_model(), [np.full((1, 4), 3.0, np.float32)])[0]
    assert np.abs(out - 3.0).max() < 0.01 < 0.05


def test_search_is_deterministic_and_stays_in_the_box():
    first = _optimize(_relu_fq(3, 6.1), 3.0, maxiter=2, upper_boxsize=0.01, lower_boxsize=0.01)
    second = _optimize(_relu_fq(3, 6.1), 3.0, maxiter=2, upper_boxsize=0.01, lower_boxsize=0.01)
    assert _fq_range(first) == _fq_range(second)
    assert 0.99 * 6.1 - 1e-6 <= _fq_range(first)[1] <= 6.1  # 6 is outside the box: the low end is best


def test_activation_ranges_to_set_are_set_as_given():
    quantized = _optimize(_relu_fq(5, 6.1), 3.3, activation_ranges_to_set=[{"relu": [0.0, 4.0]}])
    assert _fq_range(quantized) == (0.0, 4.0)
    # grid {0, 1, 2, 3, 4}: 3.3 -> 3 and 5 -> 4 (clipped)
    out = reference_infer(quantized.get_model(), [np.array([[3.3, 5.0, -1.0, 0.4]], np.float32)])[0]
    np.testing.assert_allclose(out, [[3.0, 4.0, 0.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("params", [{"activation_ranges_to_set": [{"relu": [0.0, 4.1]}]}, {"maxiter": 1}])
def test_best_ranges_hold_the_ranges_as_found_or_given(params):
    """The ranges are set as found or given (4.1 is not a float32 value, and neither are the search's candidates), and
    ``best_ranges`` holds them as they were, the values the FakeQuantize holds to float32 rounding."""
    engine = IEEngine({"device": "CPU"}, ConstantLoader(3.3), Closeness())
    algorithm = create_pipeline([{"name": "RangeOptimization", "params": params}], engine)
    model = algorithm.run(_relu_fq(5, 6.1))
    ranges = algorithm.algorithms[0].best_ranges
    assert list(ranges) == ["fq"] and ranges["fq"] == pytest.approx(_fq_range(model), rel=1e-6)
    if "activation_ranges_to_set" in params:
        assert ranges == {"fq": (0.0, 4.1)}


def test_other_backends_and_missing_scipy_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="opt_backend 'nevergrad'.*'scipy'"):
        _optimize(_relu_fq(3, 6.1), 3.0, opt_backend="nevergrad")
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        _optimize(_relu_fq(3, 6.1), 3.0, maxiter=1)


def test_quantization_noise_needs_no_metric_and_finds_the_same_range():
    # x -> ReLU -> FakeQuantize (3 levels, [0, 6.1]) -> MatMul (identity): the MatMul's output noise for the
    # input 3 is (3 - round-to-grid(3))^2, zero at h = 6
    model = _relu_fq(3, 6.1)
    ov_model = model.get_model()
    fq = fake_quantize_ops(ov_model)[0]
    matmul = ops.matmul(fq.output(0), ops.constant(np.eye(4, dtype=np.float32)), False, False)
    matmul.set_friendly_name("identity")
    ov_model.get_results()[0].input(0).replace_source_output(matmul.output(0))
    engine = IEEngine({"device": "CPU"}, ConstantLoader(3.0))
    quantized = create_pipeline([{"name": "RangeOptimization", "params": {
        "error_function": "quantization_noise", "maxiter": 2}}], engine).run(CompressedModel(ov_model))
    assert abs(_fq_range(quantized)[1] - 6.0) < 0.02


class SmallRowsLoader(DataLoader):
    """4 items of rows of std 0.01 (the layer norm's eps 1e-5 is then large next to an INT8 step); the annotation is
    the layer norm of the item's ReLU, as numpy computes it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        item = (np.random.default_rng(index).standard_normal((1, 4, 16)) * 0.01).astype(np.float32)
        rectified = np.maximum(item, 0.0).astype(np.float64)
        centred = rectified - rectified.mean(-1, keepdims=True)
        return item, (centred / np.sqrt(np.mean(np.square(centred), -1, keepdims=True) + 1e-5)).astype(np.float32)


def _relu_fq_layer_norm(high: float) -> CompressedModel:
    """x [1, 4, 16] -> ReLU 'relu' -> FakeQuantize 'fq' (256 levels, [0, high]) -> MVN (eps 1e-5, inside the root),
    the MVN's input guarded as MinMaxQuantization leaves it on the CPU (bug 7, ``graph.norm_input_guard``)."""
    x = ops.parameter([1, 4, 16], np.float32, name="x")
    relu = ops.relu(x)
    relu.set_friendly_name("relu")
    norm = ops.mvn(relu, ops.constant(np.array([-1], np.int64)), True, 1e-5, "inside_sqrt")
    model = ov.Model([ops.result(norm)], [x], "relu_fq_layer_norm")
    insert_fake_quantize(model, relu.output(0), 256, (0.0, high, 0.0, high), name="fq")
    assert guard_normalization_inputs(model) == [norm.get_friendly_name()]
    return CompressedModel(model)


@pytest.mark.parametrize("params", [{"activation_ranges_to_set": [{"fq": [0.0, 0.05]}]}, {"maxiter": 1}])
def test_layer_norm_after_new_ranges_stays_close_to_numpy(params):
    """Bug 7 (docs/cpu-plugin-bugs.md): the CPU plugin loses the eps of an MVN reading an INT8 value whose zero is level
    0, as after a ReLU, where RangeOptimization searches the upper end only (``[0, high]``), or sets a given range as
    given. Until session 11 MinMaxQuantization moved such ranges by one level and RangeOptimization had to move them
    again; the guard in front of the MVN does not depend on the ranges, so the ranges are set as found or given and
    the INT8 layer norm stays close to numpy's."""
    engine = IEEngine({"device": "CPU"}, SmallRowsLoader(), Closeness())
    quantized = create_pipeline([{"name": "RangeOptimization", "params": params}], engine).run(
        _relu_fq_layer_norm(0.05))
    assert _fq_range(quantized)[0] == 0.0
    compiled = ov.Core().compile_model(quantized.get_model(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    loader = SmallRowsLoader()
    errors = [np.abs(compiled(item)[0] - expected).max() for item, expected in map(loader.__getitem__, range(4))]
    assert max(errors) < 0.1
