"""QuantNoiseEstimator: per-layer quantization noise against hand-computed numbers, on real OpenVINO inference."""
from __future__ import annotations

import csv

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import conv_model, reference_infer
from pot_torch import CompressedModel, DataLoader, IEEngine, create_pipeline
from pot_torch.algorithms import COMPRESSION_ALGORITHMS
from pot_torch.algorithms.quantization.qnoise_estimator import QuantNoiseEstimator, without_fake_quantize
from pot_torch.graph.editor import insert_fake_quantize

#: Two samples of the hand-computed model; its input FakeQuantize (range [0, 1], 3 levels) gives 0, 0.5 or 1.
SAMPLES = np.array([[[0.2, 0.7]], [[0.9, 0.4]]], dtype=np.float32)
QUANTIZED = np.array([[[0.0, 0.5]], [[1.0, 0.5]]], dtype=np.float32)


class ArrayLoader(DataLoader):
    """Items ``(array, 0)``."""

    def __init__(self, arrays: np.ndarray) -> None:
        super().__init__({})
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, index: int):
        return self._arrays[index], 0


def _tiny_quantized() -> CompressedModel:
    """x[1,2] -> FakeQuantize(0..1, 3 levels) -> MatMul(identity) 'dense' -> + 0 'dense_bias'."""
    x = ops.parameter([1, 2], np.float32, name="x")
    dense = ops.matmul(x, ops.constant(np.eye(2, dtype=np.float32)), False, False)
    dense.set_friendly_name("dense")
    bias = ops.add(dense, ops.constant(np.zeros((1, 2), np.float32)))
    bias.set_friendly_name("dense_bias")
    model = ov.Model([ops.result(bias)], [x], "tiny")
    insert_fake_quantize(model, x.output(0), 3, (0.0, 1.0, 0.0, 1.0))
    return CompressedModel(model)


def _hand_sqnr(noise_type: str) -> float:
    y, q = SAMPLES[:, 0], QUANTIZED[:, 0]  # [N, C]
    signal, noise = (y ** 2).mean(axis=1), ((y - q) ** 2).mean(axis=1)
    if noise_type == "sqnr":
        return float(np.mean(signal / noise))
    if noise_type == "sqnr_sample_mean":
        return float(signal.mean() / noise.mean())
    if noise_type == "sqnr_per_channel":
        return float(np.mean(y ** 2 / (y - q) ** 2))
    if noise_type == "sqnr_sample_per_channel":
        return float(np.mean((y ** 2).mean(axis=0) / ((y - q) ** 2).mean(axis=0)))
    return float(np.mean(y ** 2 / (y - q) ** 2))  # eltwise: per element, then the mean


@pytest.mark.parametrize("noise_type", ["sqnr", "sqnr_per_channel", "sqnr_sample_mean", "sqnr_sample_per_channel",
                                        "sqnr_eltwise_mean"])
def test_noise_of_each_type_matches_hand_computation(noise_type):
    # sample 1: y=[0.2,0.7], q=[0,0.5]: signal 0.265, noise 0.04; sample 2: y=[0.9,0.4], q=[1,0.5]: 0.485, 0.01
    engine = IEEngine({"device": "CPU"}, ArrayLoader(SAMPLES))
    algorithm = QuantNoiseEstimator({"type": noise_type}, engine)
    model = _tiny_quantized()
    assert algorithm.run(model) is model
    assert algorithm.noise_data["layer_name"] == ["dense"]
    assert algorithm.noise_data["noise_metric"][0] == pytest.approx(_hand_sqnr(noise_type), rel=1e-5)


def test_sqnr_value_spelled_out():
    engine = IEEngine({"device": "CPU"}, ArrayLoader(SAMPLES))
    algorithm = QuantNoiseEstimator({"type": "sqnr"}, engine)
    algorithm.run(_tiny_quantized())
    assert algorithm.noise_data["noise_metric"][0] == pytest.approx((0.265 / 0.04 + 0.485 / 0.01) / 2, rel=1e-5)


def _quantized_conv_model(samples: np.ndarray) -> CompressedModel:
    engine = IEEngine({"device": "CPU"}, ArrayLoader(samples))
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": {"target_device": "CPU"}}], engine)
    return pipeline.run(CompressedModel(conv_model()))


def _outputs(model: ov.Model, names, sample: np.ndarray) -> list:
    clone = model.clone()
    by_name = {op.get_friendly_name(): op for op in clone.get_ops()}
    added = clone.add_outputs([by_name[name].output(0) for name in names])
    values = reference_infer(clone, [sample])
    return [values[list(clone.outputs).index(output)] for output in added]


def test_full_mode_on_a_conv_model_matches_outputs_read_directly(tmp_path):
    samples = np.random.default_rng(3).random((4, 1, 3, 16, 16), dtype=np.float32)
    quantized = _quantized_conv_model(samples)
    dump = tmp_path / "noise.csv"
    engine = IEEngine({"device": "CPU"}, ArrayLoader(samples))
    algorithm = COMPRESSION_ALGORITHMS.get("QuantNoiseEstimator")(
        {"mode": "full_fq_noise", "type": "sqnr_sample_mean", "results_dump_filename": str(dump)}, engine)
    algorithm.run(quantized)
    assert algorithm.noise_data["layer_name"] == ["conv1", "conv2", "pool", "fc"]
    measured = ["conv1_bias", "conv2_bias", "pool", "fc_bias"]  # after the bias Add, where there is one
    reference = without_fake_quantize(quantized.get_model())
    ys = [_outputs(reference, measured, s) for s in samples]
    qs = [_outputs(quantized.get_model(), measured, s) for s in samples]
    # conv1 and conv2 (after their bias Add): the composite pass gives the numbers of the models run on their own.
    # Not compared: 'pool' and 'fc' after it. A Subtract reading the quantized AvgPool's output (which feeds a
    # FakeQuantize) makes the CPU plugin round that output to its INT8 grid, as a Result reading it does not, so
    # their figures differ from the separately run models' (an open problem, docs/quantization.md).
    for position in range(2):
        signal = np.mean([np.mean(y[position].astype(np.float64) ** 2) for y in ys])
        noise = np.mean([np.mean((y[position].astype(np.float64) - q[position]) ** 2) for y, q in zip(ys, qs)])
        assert algorithm.noise_data["noise_metric"][position] == pytest.approx(signal / noise, rel=1e-3)
    with open(dump, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["layer_name", "noise_metric"]
    assert [row[0] for row in rows[1:]] == ["conv1", "conv2", "pool", "fc"]
    assert [float(row[1]) for row in rows[1:]] == pytest.approx(algorithm.noise_data["noise_metric"])


def test_layerwise_mode_measures_each_group_alone():
    samples = np.random.default_rng(4).random((3, 1, 3, 16, 16), dtype=np.float32)
    quantized = _quantized_conv_model(samples)
    engine = IEEngine({"device": "CPU"}, ArrayLoader(samples))
    full = QuantNoiseEstimator({"mode": "full_fq_noise"}, engine)
    full.run(quantized)
    alone = QuantNoiseEstimator({"mode": "layerwise_fq_noise"}, engine)
    alone.run(quantized)
    assert alone.noise_data["layer_name"] == full.noise_data["layer_name"]
    # nothing is quantized before conv1: alone or not, its noise is the same
    assert alone.noise_data["noise_metric"][0] == pytest.approx(full.noise_data["noise_metric"][0], rel=1e-4)
    # conv2 alone does not carry conv1's noise: a higher signal-to-noise ratio
    assert alone.noise_data["noise_metric"][1] > full.noise_data["noise_metric"][1]


def test_refuses_a_model_without_fake_quantize_and_bad_params():
    engine = IEEngine({"device": "CPU"}, ArrayLoader(SAMPLES))
    with pytest.raises(ValueError, match="has no FakeQuantize op: run DefaultQuantization first"):
        QuantNoiseEstimator({}, engine).run(CompressedModel(conv_model()))
    with pytest.raises(ValueError, match="invalid value 'snr' for 'type'"):
        QuantNoiseEstimator({"type": "snr"}, engine)
    with pytest.raises(ValueError, match="invalid value 'all' for 'mode'"):
        QuantNoiseEstimator({"mode": "all"}, engine)
    with pytest.raises(ValueError, match="'eps'"):
        QuantNoiseEstimator({"eps": -1.0}, engine)
