"""Padding-aware statistics (``padding_aware_statistics``, statistics/padding.py): statistics of a padded
transformer input equal those of its real tokens alone; a model without a mask input warns and keeps plain ones."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import CompressedModel, create_pipeline
from pot_torch.algorithms.quantization import smooth_alpha
from pot_torch.engines import IEEngine
from pot_torch.graph.editor import fake_quantize_ops, fake_quantize_ranges, find_op
from pot_torch.graph.layer_patterns import find_bias_add
from pot_torch.statistics.collector import StatisticsRequest, collect_statistics
from pot_torch.statistics.spec import layout_specs
from pot_torch.statistics.padding import report_mask_input
from pot_torch.statistics.reducers import make_reducer
from tests.test_minmax import ArrayLoader  # items (data, None); here data is a dict by input name

HIDDEN, PADDED, LENGTHS = 8, 8, (5, 3, 8, 6, 2, 7)


def encoder(mask: bool = True, batch: int = 1) -> ov.Model:
    """hidden [1, ?, C] (+ attention_mask [1, ?]) -> ln (Add) -> fc1 (MatMul + bias) -> relu -> fc2 (MatMul +
    bias) -> output masked by attention_mask: the shape of a BERT layer's feed-forward part."""
    rng = np.random.default_rng(3)
    hidden = ops.parameter([batch, -1, HIDDEN], np.float32, name="hidden")
    ln = ops.add(hidden, ops.constant(rng.standard_normal((1, 1, HIDDEN)).astype(np.float32)))
    ln.set_friendly_name("ln")
    fc1 = ops.matmul(ln, ops.constant(rng.standard_normal((HIDDEN, 2 * HIDDEN)).astype(np.float32) * 0.3), False, False)
    fc1.set_friendly_name("fc1")
    fc1_bias = ops.add(fc1, ops.constant(rng.standard_normal((1, 1, 2 * HIDDEN)).astype(np.float32)))
    fc1_bias.set_friendly_name("fc1/bias")
    relu = ops.relu(fc1_bias)
    relu.set_friendly_name("relu")
    fc2_weight = rng.standard_normal((2 * HIDDEN, HIDDEN)).astype(np.float32) * 0.3
    fc2 = ops.matmul(relu, ops.constant(fc2_weight), False, False)
    fc2.set_friendly_name("fc2")
    out = ops.add(fc2, ops.constant(rng.standard_normal((1, 1, HIDDEN)).astype(np.float32)))
    out.set_friendly_name("fc2/bias")
    parameters = [hidden]
    if mask:
        attention_mask = ops.parameter([batch, -1], np.int64, name="attention_mask")
        keep = ops.unsqueeze(ops.convert(attention_mask, np.float32), ops.constant(np.array([2], np.int64)))
        out = ops.multiply(out, keep)
        parameters.append(attention_mask)
    return ov.Model([ops.result(out)], parameters, "encoder")


def sentences() -> List[np.ndarray]:
    """The real tokens of each calibration sentence, ``[1, length, C]``."""
    rng = np.random.default_rng(5)
    return [rng.standard_normal((1, length, HIDDEN)).astype(np.float32) for length in LENGTHS]


def padded(real: np.ndarray, with_mask: bool = True) -> Dict[str, np.ndarray]:
    """``real`` padded to :data:`PADDED` positions with large values (what the statistics must not see)."""
    tokens = np.full((1, PADDED, HIDDEN), 40.0, np.float32)
    tokens[:, :real.shape[1]] = real
    item = {"hidden": tokens}
    if with_mask:
        item["attention_mask"] = (np.arange(PADDED) < real.shape[1]).astype(np.int64)[np.newaxis]
    return item


def unpadded(real: np.ndarray, with_mask: bool = True) -> Dict[str, np.ndarray]:
    item = {"hidden": real}
    if with_mask:
        item["attention_mask"] = np.ones((1, real.shape[1]), np.int64)
    return item


def _layout() -> Dict[str, Dict[str, object]]:
    reducers = {f"{kind}_{granularity}": make_reducer(kind, granularity == "channel", channel_axis=-1, inplace=True)
                for kind in ("min", "max", "abs_max", "mean") for granularity in ("tensor", "channel")}
    reducers["quantile"] = make_reducer("quantile", False, quantile=0.9)  # numpy: the sequence axis is dynamic
    reducers["numpy_max"] = make_reducer("max", True, channel_axis=-1, inplace=False)
    reducers["rows"] = smooth_alpha.ActivationRows(-1, rows=4)
    return {"ln": reducers, "fc1/bias": dict(reducers)}


def _collect(items: List[Dict[str, np.ndarray]], real_tokens: bool, model: Optional[ov.Model] = None) -> Dict:
    engine = IEEngine({"device": "CPU"}, ArrayLoader(items))
    request = StatisticsRequest(layout_specs(_layout()), list(range(len(items))), 1, real_tokens=real_tokens)
    return collect_statistics(engine, CompressedModel(model or encoder()), [request])[0]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic_seq", "static_seq"])
def test_statistics_of_padded_sentences_equal_those_of_their_real_tokens(static):
    """Static shapes: the in-graph values go into the engine's stacked output; dynamic ones have their own."""
    real = sentences()
    model = encoder()
    if static:
        model.reshape({"hidden": [1, PADDED, HIDDEN], "attention_mask": [1, PADDED]})
    measured = _collect([padded(x) for x in real], real_tokens=True, model=model)
    expected = _collect([unpadded(x) for x in real], real_tokens=False)
    plain = _collect([padded(x) for x in real], real_tokens=False)
    for key, stats in expected.items():
        for name, values in stats.items():
            np.testing.assert_allclose(np.concatenate(measured[key][name]), np.concatenate(values), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name} of {key}")
    assert not np.allclose(np.concatenate(plain["ln"]["max_tensor"]), np.concatenate(expected["ln"]["max_tensor"]))


def test_masked_reductions_stay_per_sample_in_batches_of_several_sentences():
    real = sentences()[:4]
    engine = IEEngine({"device": "CPU"}, ArrayLoader([padded(x) for x in real]))
    layout = {"ln": {kind: make_reducer(kind, True, channel_axis=-1, inplace=True)
                     for kind in ("min", "max", "abs_max", "mean")}}
    measured = collect_statistics(engine, CompressedModel(encoder(batch=-1)),
                                  [StatisticsRequest(layout_specs(layout), list(range(4)), 2, real_tokens=True)])[0]
    expected = _collect([unpadded(x) for x in real], real_tokens=False, model=encoder(batch=-1))
    for kind in ("min", "max", "abs_max", "mean"):
        np.testing.assert_allclose(np.concatenate(measured["ln"][kind]),
                                   np.concatenate(expected["ln"][f"{kind}_channel"]), rtol=1e-5, atol=1e-6)


def test_a_sample_without_real_tokens_is_measured_over_all_its_positions():
    """A calibration item whose mask is all zero (an empty sentence) has no real token: its min/max reductions
    gave +-inf and its mean NaN, which a mean-of-maxima range estimator turned into an infinite range. It is
    measured over all its positions instead, as plain statistics would."""
    real = sentences()[:3]
    empty = padded(real[0])
    empty["attention_mask"][:] = 0
    items = [padded(x) for x in real] + [empty]
    measured = _collect(items, real_tokens=True)
    plain = _collect(items, real_tokens=False)
    for name, values in measured["ln"].items():
        if name != "rows":
            assert np.all(np.isfinite(np.concatenate([np.ravel(v) for v in values]))), name
    for name in ("min_channel", "max_channel", "abs_max_tensor", "mean_channel"):
        np.testing.assert_allclose(measured["ln"][name][-1], plain["ln"][name][-1], rtol=1e-5, atol=1e-6)


def _quantize(items: List[Dict[str, np.ndarray]], model: ov.Model, **params) -> ov.Model:
    engine = IEEngine({"device": "CPU"}, ArrayLoader(items))
    pipeline = create_pipeline([{"name": "DefaultQuantization", "params": {
        "target_device": "CPU", "model_type": "transformer", "stat_subset_size": len(items), **params}}], engine)
    return pipeline.run(CompressedModel(model)).get_model()


def _ranges_and_biases(model: ov.Model) -> Dict[str, np.ndarray]:
    found = {fq.get_friendly_name(): np.concatenate([np.ravel(r) for r in fake_quantize_ranges(fq)])
             for fq in fake_quantize_ops(model)}
    for name in ("fc1", "fc2"):
        found[f"{name} bias"] = find_bias_add(find_op(model, name)).per_channel()
    return found


def test_transformer_calibrated_on_padded_sentences_quantizes_as_on_their_real_tokens():
    """The transformer default: SmoothQuant scales, ranges and bias corrections equal to the unpadded run's."""
    real = sentences()
    from_padded = _ranges_and_biases(_quantize([padded(x) for x in real], encoder()))
    from_real = _ranges_and_biases(_quantize([unpadded(x) for x in real], encoder()))
    assert from_padded.keys() == from_real.keys() and len(from_padded) > 2
    for name, values in from_real.items():
        np.testing.assert_allclose(from_padded[name], values, rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_users_false_keeps_the_padding_in_the_statistics():
    real = sentences()
    items = [padded(x) for x in real]
    off = _ranges_and_biases(_quantize(items, encoder(), padding_aware_statistics=False))
    on = _ranges_and_biases(_quantize(items, encoder()))
    assert any(not np.allclose(off[name], on[name]) for name in on)


def test_a_model_without_a_mask_input_warns_and_keeps_plain_statistics(caplog):
    report_mask_input.cache_clear()
    real = sentences()
    items = [padded(x, with_mask=False) for x in real]
    with caplog.at_level(logging.WARNING):
        measured = _collect(items, real_tokens=True, model=encoder(mask=False))
    assert any("padding-aware statistics cannot apply to model 'encoder'" in r.getMessage() for r in caplog.records)
    plain = _collect(items, real_tokens=False, model=encoder(mask=False))
    for key, stats in plain.items():
        for name, values in stats.items():
            np.testing.assert_array_equal(np.concatenate(measured[key][name]), np.concatenate(values))


def test_an_input_named_like_a_mask_is_not_guessed_at(caplog):
    """PyTorch's key_padding_mask is non-zero on the padded positions: taken as a real-token mask (the first
    version took "the only rank-2 input whose name contains 'mask'") the statistics would have covered the padding
    only. Only attention_mask is used; the warning names the other input."""
    report_mask_input.cache_clear()
    model = encoder()
    mask = next(p for p in model.get_parameters() if p.get_friendly_name() == "attention_mask")
    mask.set_friendly_name("key_padding_mask")
    mask.output(0).get_tensor().set_names({"key_padding_mask"})
    items = [{"hidden": item["hidden"], "key_padding_mask": 1 - item["attention_mask"]}
             for item in (padded(x) for x in sentences())]
    with caplog.at_level(logging.WARNING):
        measured = _collect(items, real_tokens=True, model=model)
    assert any("key_padding_mask look like masks" in r.getMessage() for r in caplog.records)
    plain = _collect(items, real_tokens=False, model=model)
    for key, stats in plain.items():
        for name, values in stats.items():
            np.testing.assert_array_equal(np.concatenate(measured[key][name]), np.concatenate(values))


def test_the_mask_input_is_named_in_the_log(caplog):
    report_mask_input.cache_clear()  # said once per model and process
    with caplog.at_level(logging.INFO):
        _collect([padded(x) for x in sentences()[:2]], real_tokens=True)
    assert any("input 'attention_mask'" in r.getMessage() for r in caplog.records)


def test_activations_not_shaped_batch_seq_keep_their_statistics_over_all_positions(caplog):
    """A [seq, C] activation (axis 0 is not the batch) cannot be masked: a warning names it."""
    model = encoder()
    ln = find_op(model, "ln")
    squeezed = ops.squeeze(ln.output(0), ops.constant(np.array([0], np.int64)))
    squeezed.set_friendly_name("tokens_first")
    model.add_results([ops.result(squeezed)])
    engine = IEEngine({"device": "CPU"}, ArrayLoader([padded(x) for x in sentences()[:2]]))
    layout = {"tokens_first": {"max": make_reducer("max", False, inplace=True)}}
    with caplog.at_level(logging.WARNING):
        measured = collect_statistics(engine, CompressedModel(model),
                                      [StatisticsRequest(layout_specs(layout), [0, 1], 1, real_tokens=True)])[0]
    assert any("tokens_first" in r.getMessage() and "over all positions" in r.getMessage() for r in caplog.records)
    assert np.all(np.concatenate(measured["tokens_first"]["max"]) >= 40.0)  # the padding is in


def test_samples_without_padding_are_measured_by_plain_reductions(caplog):
    """A dynamic-shape model fed unpadded sentences (every mask all ones, as minilm_dynamic's calibration) gets the
    plain statistics, bit for bit, without building the masked reductions; one padded sentence brings them back."""
    real = sentences()
    with caplog.at_level(logging.INFO):
        skipped = _collect([unpadded(x) for x in real], real_tokens=True)
    assert "all real tokens" in caplog.text
    plain = _collect([unpadded(x) for x in real], real_tokens=False)
    for key, stats in plain.items():
        for name, values in stats.items():
            np.testing.assert_array_equal(np.concatenate(skipped[key][name]), np.concatenate(values), err_msg=name)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        mixed = _collect([unpadded(x) for x in real[1:]] + [padded(real[0])], real_tokens=True)
    assert "all real tokens" not in caplog.text
    expected = _collect([unpadded(x) for x in real[1:] + real[:1]], real_tokens=False)
    np.testing.assert_allclose(np.concatenate(mixed["ln"]["max_tensor"]), np.concatenate(expected["ln"]["max_tensor"]),
                               rtol=1e-5)
