"""TunableQuantization: MinMaxQuantization by default, a per-FakeQuantize choice applied exactly (f32 inference)."""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from model_builders import reference_infer
from pot_torch import CompressedModel, DataLoader, IEEngine, TunableQuantization
from pot_torch.graph.editor import fake_quantize_ops

X = np.array([[1.0, -1.0, 0.0, 1.0]], np.float32)  # on the 8-bit activation grid (steps of 1/127)
W = np.array([[0.7, 1.4], [-0.33, 0.45], [0.1, -0.95], [0.14, 0.31]], np.float32)


class OneItem(DataLoader):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        return X, None


def _matmul() -> CompressedModel:
    x = ops.parameter([1, 4], np.float32, name="x")
    mm = ops.matmul(x, ops.constant(W), False, False)
    mm.set_friendly_name("mm")
    return CompressedModel(ov.Model([ops.result(mm)], [x], "matmul"))


def _algorithm(**params) -> TunableQuantization:
    return TunableQuantization({"preset": "performance", **params}, IEEngine({"device": "CPU"}, OneItem()))


def _weight_fq_name(algorithm: TunableQuantization, model: CompressedModel) -> str:
    return next(name for name, _, options in algorithm.get_parameter_meta(model) if "weights" in name)


def test_without_params_it_is_minmax_quantization():
    algorithm = _algorithm()
    quantized = algorithm.run(_matmul())
    assert sorted(fq.get_attributes()["levels"] for fq in fake_quantize_ops(quantized.get_model())) == [255, 256]


def test_four_bit_weights_for_one_fake_quantize():
    model = _matmul()
    algorithm = _algorithm()
    algorithm.params = {_weight_fq_name(algorithm, model): {"bits": 4}}
    quantized = algorithm.run(model)
    levels = {fq.get_friendly_name(): fq.get_attributes()["levels"] for fq in fake_quantize_ops(quantized.get_model())}
    assert sorted(levels.values()) == [15, 256]
    # 4-bit symmetric weights per output channel: 15 levels on [-max, max], steps 0.7/7 = 0.1 and 1.4/7 = 0.2
    hand = np.array([[0.7, 1.4], [-0.3, 0.4], [0.1, -1.0], [0.1, 0.4]])
    np.testing.assert_allclose(reference_infer(quantized.get_model(), [X])[0], X @ hand, atol=1e-5)


def test_parameter_meta_offers_the_quantile_choices_and_unknown_names_are_refused():
    model = _matmul()
    algorithm = _algorithm(outlier_prob_choices=[1e-3])
    meta = dict((name, options) for name, _, options in algorithm.get_parameter_meta(model))
    weight_options = meta[_weight_fq_name(algorithm, model)]
    probabilities = {side.get("outlier_prob") for option in weight_options
                     for side in option["range_estimator"].values()}
    assert 1e-3 in probabilities and None in probabilities
    algorithm.params = {"mm/no_such_fq": {"bits": 4}}
    with pytest.raises(ValueError, match="no_such_fq"):
        algorithm.run(model)
