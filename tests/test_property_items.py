"""Property-based tests on data items: dict (detection-style) annotations and variable-length token inputs.

* Items ``(data, {'boxes': ..., 'labels': ...})`` (any keys, any number of boxes, with or without metadata):
  ``parse_batch`` passes each annotation on unchanged with its position, ``IEEngine`` hands the metric the
  same dicts with data set indices as sample ids, and through ``TorchDataLoader`` a ``FunctionMetric`` gets
  them as dicts of tensors (POT 2023.3's behaviour; pot_torch once flattened them).
* Token inputs of drawn lengths, in dicts whose key order is drawn: ``conversion_shapes`` (what
  ``convert_torch_model`` converts with) gives shapes that accept every item, and a real OpenVINO model with
  those shapes computes each item as numpy does.

Everything runs on tiny models: ``CI_EXAMPLES`` examples take a few seconds.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pot_torch import CompressedModel, IEEngine, Metric
from pot_torch.engines.data_items import parse_batch
from tests.model_builders import conv_model
from tests.test_ie_engine import ListLoader
from tests.test_property_models import _SETTINGS

torch = pytest.importorskip("torch")

from pot_torch.adapters import FunctionMetric, TorchDataLoader  # noqa: E402
from pot_torch.adapters.model import conversion_shapes  # noqa: E402

pytestmark = pytest.mark.torch

CI_EXAMPLES = 15
IMAGE = (3, 8, 8)
VOCABULARY, WIDTH = 30, 4
EMBEDDING = np.random.default_rng(0).standard_normal((VOCABULARY, WIDTH)).astype(np.float32)


# ------------------------------------------------------------------------------------------ dict annotations
@st.composite
def dict_annotations(draw: Callable) -> Dict[str, np.ndarray]:
    """A detection-style annotation: a few drawn keys, each an array over a drawn number of boxes."""
    boxes = draw(st.integers(0, 4))
    keys = draw(st.lists(st.sampled_from(["boxes", "labels", "difficult", "scores", "masks"]), min_size=1,
                         max_size=3, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    shapes = {"boxes": (boxes, 4), "masks": (boxes, 2, 2)}
    return {key: (rng.integers(0, 5, boxes) if key in ("labels", "difficult")
                  else rng.random(shapes.get(key, (boxes,))).astype(np.float32)) for key in keys}


@st.composite
def annotated_items(draw: Callable) -> List[tuple]:
    """1-6 items ``(image, dict annotation)``, all with or all without a metadata dict."""
    annotations = draw(st.lists(dict_annotations(), min_size=1, max_size=6))
    with_metadata = draw(st.booleans())
    images = [np.full(IMAGE, index, np.float32) for index in range(len(annotations))]
    return [(image, annotation, {"index": index}) if with_metadata else (image, annotation)
            for index, (image, annotation) in enumerate(zip(images, annotations))]


class _Recorder(Metric):
    """Records the annotation lists it is updated with (they survive ``reset``); value: boxes per sample."""

    def __init__(self) -> None:
        self.seen: List[list] = []
        super().__init__()

    @property
    def value(self) -> Dict[str, List[float]]:
        return {"keys": [float(len(annotation)) for annotation in self.seen[-1]]}

    @property
    def avg_value(self) -> Dict[str, float]:
        return {"keys": 0.0}

    def update(self, output: Any, target: Any) -> None:
        self.seen.append(target)

    def reset(self) -> None:
        pass


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return list(a) == list(b) and all(np.array_equal(np.asarray(a[key]), np.asarray(b[key])) for key in a)


@settings(max_examples=CI_EXAMPLES, **_SETTINGS)
@given(items=annotated_items())
def test_dict_annotations_reach_the_metric_unchanged(items):
    annotations, _, _ = parse_batch(items)
    assert [position for position, _ in annotations] == list(range(len(items)))
    assert all(annotation is item[1] for (_, annotation), item in zip(annotations, items))

    metric = _Recorder()
    engine = IEEngine({"device": "CPU", "eval_requests_number": 1}, ListLoader(items), metric)
    engine.set_model(CompressedModel(conv_model(size=IMAGE[-1])))
    (records, _), _ = engine.predict(metric_per_sample=True)
    assert [record["sample_id"] for record in records] == list(range(len(items)))
    assert all(_same(batch[0], item[1]) for batch, item in zip(metric.seen, items))

    received: List[Any] = []
    function = FunctionMetric(lambda preds, targets: received.extend(targets) or 0.0, name="f")
    loader = TorchDataLoader([(torch.from_numpy(item[0]), item[1]) for item in items],
                             model=conv_model(size=IMAGE[-1]))
    engine = IEEngine({"device": "CPU", "eval_requests_number": 1}, loader, function)
    engine.set_model(CompressedModel(conv_model(size=IMAGE[-1])))
    engine.predict()
    assert len(received) == len(items)
    assert all(isinstance(target, dict) and _same({k: v.numpy() for k, v in target.items()}, item[1])
               for target, item in zip(received, items))


# ---------------------------------------------------------------------------------- variable-length tokens
class _Tokens(torch.nn.Module):
    """forward(input_ids, attention_mask) of a text model; only its signature matters here."""

    def forward(self, input_ids, attention_mask):  # pragma: no cover - never traced in these tests
        return input_ids * attention_mask


@st.composite
def token_items(draw: Callable) -> List[Dict[str, np.ndarray]]:
    """1-6 tokenized samples of drawn lengths (1-12) with padding masks, keys in a drawn order."""
    lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    keys = draw(st.permutations(["input_ids", "attention_mask"]))
    items = []
    for length in lengths:
        mask = (np.arange(length) < draw(st.integers(1, length))).astype(np.int64)
        values = {"input_ids": rng.integers(0, VOCABULARY, length) * mask, "attention_mask": mask}
        items.append({key: values[key] for key in keys})
    return items


def _masked_embedding_sum(shapes: Dict[str, ov.PartialShape]) -> ov.Model:
    """input_ids, attention_mask -> sum over the sequence of embedding(input_ids) * mask (as the torch model)."""
    ids = ops.parameter(shapes["input_ids"], np.int64, name="input_ids")
    mask = ops.parameter(shapes["attention_mask"], np.int64, name="attention_mask")
    embedded = ops.gather(ops.constant(EMBEDDING), ids, ops.constant(np.int64(0)))
    weights = ops.unsqueeze(ops.convert(mask, "f32"), ops.constant(np.int64(-1)))
    summed = ops.reduce_sum(ops.multiply(embedded, weights), ops.constant(np.int64(1)), keep_dims=False)
    return ov.Model([ops.result(summed)], [ids, mask], "tokens")


@settings(max_examples=CI_EXAMPLES, **_SETTINGS)
@given(items=token_items())
def test_variable_length_tokens_get_shapes_that_take_every_item(items):
    examples = [{key: torch.from_numpy(value)[None] for key, value in item.items()} for item in items]
    shapes = conversion_shapes(_Tokens(), examples[0], dynamic_batch=True, samples=examples)
    assert list(shapes) == list(items[0])
    assert all(str(shape) == "[?,?]" for shape in shapes.values())

    model = _masked_embedding_sum(shapes)
    loader = TorchDataLoader([(item, 0) for item in items], model=model)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for index, item in enumerate(items):
        data, _ = loader[index]
        expected = (EMBEDDING[item["input_ids"]] * item["attention_mask"][:, None]).sum(0)
        batch = {name: value[None] for name, value in data.items()}  # items are samples: IEEngine batches them
        np.testing.assert_allclose(compiled(batch)[0][0], expected, rtol=1e-5, atol=1e-5)
