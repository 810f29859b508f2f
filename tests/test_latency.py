"""pot_torch.utils.latency: interleaved latency rounds on real compiled models (shapes and options, no timing
bars: speed targets live in benchmarks/)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.utils.latency import compile_on_cpu, example_inputs, measure_latency, median_ms, paired_speedup


def _matmul_model(size: int = 16) -> ov.Model:
    x = ops.parameter([1, size], np.float32, name="x")
    weights = ops.constant(np.eye(size, dtype=np.float32))
    return ov.Model([ops.result(ops.matmul(x, weights, False, False))], [x], "matmul")


def test_rounds_per_model_with_options():
    feeds = {0: np.ones((1, 16), np.float32)}
    rounds = measure_latency({"a": _matmul_model()}, None, rounds=3, iterations=2, warmup=0, threads=1,
                             precisions={"a": "f32"})
    assert list(rounds) == ["a"] and len(rounds["a"]) == 3 and all(ms > 0 for ms in rounds["a"])
    throughput = measure_latency({"a": _matmul_model(), "a2": _matmul_model()}, feeds, rounds=2, iterations=4,
                                 hint="THROUGHPUT")
    assert set(throughput) == {"a", "a2"} and all(len(v) == 2 for v in throughput.values())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="measure_latency needs at least one model"):
        measure_latency({})
    with pytest.raises(ValueError, match="hint must be one of LATENCY, THROUGHPUT, got 'FAST'"):
        measure_latency({"a": _matmul_model()}, hint="FAST")


def test_compile_on_cpu_sets_the_requested_properties():
    compiled = compile_on_cpu(_matmul_model(), "f32", "THROUGHPUT", threads=1)
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    feed = example_inputs(_matmul_model())
    np.testing.assert_allclose(compiled(feed)[0], feed[0], rtol=1e-6)


def test_median_and_paired_speedup():
    rounds = {"fast": [1.0, 2.0, 1.5], "slow": [2.0, 3.0, 4.5]}
    assert median_ms(rounds["fast"]) == 1.5
    assert paired_speedup(rounds, "fast", "slow") == 2.0  # ratios 2.0, 1.5, 3.0
