"""Padding-aware statistics cost no more than they need: an abs_max next to a masked min (and max) over the same
axes is derived from them, ``|max(max, -min)|``, with no masked ``|x|`` copy of the activation; the token mask is
built once per statistics model; for one sample the real rows of an activation are gathered once for all its
statistics instead of one masked full-size copy each. The values are those over the real tokens, bit for bit."""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import BatchSampler, CompressedModel
from pot_torch.engines import IEEngine
from pot_torch.statistics.padding import real_tokens
from pot_torch.statistics.reducers import make_reducer
from pot_torch.statistics.stats_outputs import add_stats_outputs
from tests.test_minmax import ArrayLoader
from tests.test_padding_statistics import HIDDEN, PADDED, encoder, padded, sentences

KINDS = ("min", "max", "abs_max")


def _layout(kinds: tuple = KINDS) -> Dict[str, Dict[str, Any]]:
    return {"ln": {f"{kind}_{granularity}": real_tokens(make_reducer(kind, granularity == "channel", -1, inplace=True),
                                                        "attention_mask")
                   for kind in kinds for granularity in ("tensor", "channel")}}


def _static_encoder(batch: int = 1) -> ov.Model:
    model = encoder(batch=batch)
    model.reshape({"hidden": [batch, PADDED, HIDDEN], "attention_mask": [batch, PADDED]})
    return model


def _full_size(op: ov.Node, batch: int) -> bool:
    return list(op.get_output_partial_shape(0)) == [batch, PADDED, HIDDEN]


@pytest.mark.parametrize("batch", [1, 2])
def test_no_masked_abs_copy_for_an_abs_max_next_to_a_min(batch: int) -> None:
    model = add_stats_outputs(_static_encoder(batch), _layout(), stack=True).model
    full_size = [op.get_type_name() for op in model.get_ops() if "/real_token" in op.get_friendly_name()
                 and _full_size(op, batch)]
    if batch == 1:  # the real rows, once: [1, count, HIDDEN]
        assert not full_size
        assert [op.get_type_name() for op in model.get_ops()].count("Gather") == 1
    else:
        assert full_size.count("Select") == 4  # min, max: tensor, channel
    assert "Abs" not in full_size
    alone = add_stats_outputs(_static_encoder(batch), _layout(("abs_max",)), stack=True).model
    assert [op.get_type_name() for op in alone.get_ops()].count("Abs") == 2  # the general path


def _items(batch: int) -> List[Dict[str, np.ndarray]]:
    items = [padded(x) for x in sentences()]
    items[1]["hidden"][0, 0] = -0.0
    items[2]["attention_mask"][:] = 0  # no real token: measured over all positions
    if batch > 1:
        items = [{name: np.concatenate([item[name] for item in items[start:start + batch]])
                  for name in items[0]} for start in range(0, len(items), batch)]
    return items


def _expected(items: List[Dict[str, np.ndarray]], kind: str, per_channel: bool) -> np.ndarray:
    """The statistic over each sample's real tokens (``ln`` is ``hidden`` plus a constant)."""
    model = encoder()
    bias = next(op for op in model.get_ops() if op.get_friendly_name() == "ln").input_value(1).get_node().get_data()
    values = []
    for item in items:
        for sample, mask in zip(item["hidden"], item["attention_mask"]):
            ln = (sample + bias[0])[mask != 0] if mask.any() else sample + bias[0]
            ln = np.abs(ln) if kind == "abs_max" else ln
            values.append((np.min if kind == "min" else np.max)(ln, axis=0 if per_channel else None))
    return np.asarray(values, dtype=np.float32)


@pytest.mark.parametrize("batch", [1, 2])
def test_masked_min_max_abs_max_equal_those_over_real_tokens(batch: int) -> None:
    items = _items(batch)
    engine = IEEngine({"device": "CPU", "inference_precision": "f32"}, ArrayLoader(items))
    engine.set_model(CompressedModel(_static_encoder(batch)))
    measured = engine.predict(stats_layout=_layout(), sampler=BatchSampler(engine.data_loader, batch_size=1))[1]
    for kind in KINDS:
        for granularity in ("tensor", "channel"):
            name = f"{kind}_{granularity}"
            value = np.concatenate(measured["ln"][name])
            assert value.tobytes() == _expected(items, kind, granularity == "channel").tobytes(), name


@pytest.mark.parametrize("batch", [1, 2])
def test_the_token_mask_is_built_once_per_statistics_model(batch: int) -> None:
    layout = {**_layout(), "fc1/bias": dict(_layout()["ln"])}
    model = add_stats_outputs(_static_encoder(batch), layout, stack=True).model
    types = [op.get_type_name() for op in model.get_ops()]
    assert types.count("NotEqual") == 1 and types.count("ReduceLogicalOr") == 1
    if batch == 1:  # the real positions, once; each activation's rows gathered once
        assert types.count("NonZero") == 1 and types.count("Gather") == 2 and types.count("Unsqueeze") == 1
    else:
        assert types.count("Unsqueeze") == 2  # the model's own and the mask's for rank 3


def test_the_real_rows_of_an_f16_activation_are_converted_once() -> None:
    x = ops.parameter([1, PADDED, HIDDEN], np.float16, name="hidden")
    mask = ops.parameter([1, PADDED], np.int64, name="attention_mask")
    relu = ops.relu(x)
    relu.set_friendly_name("relu")
    model = ov.Model([ops.result(relu)], [x, mask], "f16")
    layout = {"relu": {kind: real_tokens(make_reducer(kind, True, -1, inplace=True), "attention_mask")
                       for kind in ("min", "max", "mean")}}
    types = [op.get_type_name() for op in add_stats_outputs(model, layout, stack=True).model.get_ops()]
    assert types.count("Gather") == 1 and types.count("Convert") == 1
