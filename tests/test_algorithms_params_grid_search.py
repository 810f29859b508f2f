"""ParamsGridSearchAlgorithm picks the range estimator that ignores a rare spike (real OpenVINO inference)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, DataLoader, IEEngine, Metric, create_pipeline
from pot_torch.algorithms.quantization.params_grid_search import with_overrides


class SpikyLoader(DataLoader):
    """8 samples of 64x64 standard normal values, each with one spike of 1000; annotation = the input."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.items = rng.standard_normal((8, 1, 64, 64)).astype(np.float32)
        self.items[:, 0, 5, 7] = 1000.0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index], self.items[index]


class Kept(Metric):
    """Fraction of values the model returns within 0.05 of its input (higher is better)."""

    def reset(self):
        self.hits = []

    def update(self, output, target):
        self.hits.append(float(np.mean(np.abs(output[0] - np.asarray(target)) < 0.05)))

    @property
    def value(self):
        return {"kept": [self.hits[-1]]}

    @property
    def avg_value(self):
        return {"kept": float(np.mean(self.hits))}

    def get_attributes(self):
        return {"kept": {"direction": "higher-better", "type": "kept"}}


def _identity_conv() -> ov.Model:
    x = ops.parameter([1, 1, 64, 64], np.float32, name="x")
    conv = ops.convolution(x, ops.constant(np.ones((1, 1, 1, 1), np.float32)), [1, 1], [0, 0], [0, 0], [1, 1])
    conv.set_friendly_name("conv")
    return ov.Model([ops.result(conv)], [x], "identity_conv")


def test_grid_search_chooses_the_quantile_that_skips_the_spike():
    engine = IEEngine({"device": "CPU"}, SpikyLoader(), Kept())
    pipeline = create_pipeline([{"name": "ParamsGridSearchAlgorithm", "params": {"preset": "performance"}}], engine)
    algorithm = pipeline.algorithms[0]
    quantized = pipeline.run(CompressedModel(_identity_conv()))
    # 9 estimator pairs, then use_fast_bias True/False on the best: 11 candidates
    assert len(algorithm.results) == 11
    values = {repr(overrides): value for overrides, value in algorithm.results}
    first = algorithm.results[0][1]
    # min/max: the range reaches the spike (1000), a step of ~7.9, so only inputs within ~0.05 of 0 survive:
    # P(|N(0, 1)| < 0.05) = 0.04
    assert first < 0.1
    # quantile 1e-3 of the 4096 values of a sample is ~3.1 (the spike is 1 value in 4096, above the 0.999 point):
    # a step of ~0.025, every value but the spike and the 0.2% beyond +-3.1 survives
    assert algorithm.best_params["activations.max"]["outlier_prob"] == 1e-3
    assert max(values.values()) > 0.99
    engine.set_model(quantized)
    metrics, _ = engine.predict()
    assert metrics["kept"] == pytest.approx(max(values.values()))


def test_overrides_keep_the_users_other_settings():
    config = {"activations": {"mode": "asymmetric", "range_estimator": {"preset": "quantile"}}, "preset": "mixed"}
    result = with_overrides(config, {"activations.max": {"type": "max"}, "use_fast_bias": False})
    assert result == {"activations": {"mode": "asymmetric", "range_estimator": {"preset": "quantile",
                                                                                "max": {"type": "max"}}},
                      "preset": "mixed", "use_fast_bias": False}
    assert config["activations"]["range_estimator"] == {"preset": "quantile"}  # not modified


def test_needs_a_metric():
    with pytest.raises(ValueError, match="ParamsGridSearchAlgorithm scores candidate models by a metric"):
        create_pipeline([{"name": "ParamsGridSearchAlgorithm"}], IEEngine({"device": "CPU"}, SpikyLoader())).run(
            CompressedModel(_identity_conv()))
