"""The contracts of POT 2023.3's API samples, each on a small model built here and real OpenVINO inference.

POT shipped five samples under ``openvino/tools/pot/api/samples``: classification, segmentation, object
detection, 3D segmentation and face detection (MTCNN, a cascade of three models). Each wrote its own
``DataLoader``, ``Metric`` and sometimes ``Engine`` in a particular shape: the item layout ``__getitem__``
returns, what ``Metric.update`` receives, which engine hooks are overridden. These tests rebuild each shape on
a tiny model (no data sets, no downloads) and check that pot_torch honours it through quantization and
evaluation, so a sample copied out of POT keeps working.
"""
from __future__ import annotations

import copy

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch import (CompressedModel, DataLoader, IEEngine, Metric, compress_model_weights, create_pipeline,
                       load_model, save_model)
from pot_torch.engines.utils import append_stats, process_accumulated_stats
from pot_torch.graph.model_utils import add_outputs
from pot_torch.samplers.batch_sampler import BatchSampler
from tests.test_regressions import KeptOutputs


# ------------------------------------------------------------------------------------------- model helpers
def _named(node: ov.Node, name: str) -> ov.Node:
    node.set_friendly_name(name)
    return node


def _conv(x: ov.Node, weights: np.ndarray, name: str, stride: int = 1, bias: np.ndarray | None = None) -> ov.Node:
    pad = weights.shape[-1] // 2
    dims = weights.ndim - 2
    conv = _named(ops.convolution(x, ops.constant(weights.astype(np.float32)), [stride] * dims, [pad] * dims,
                                  [pad] * dims, [1] * dims), name)
    if bias is None:
        return conv
    shape = [1, weights.shape[0]] + [1] * dims
    return _named(ops.add(conv, ops.constant(bias.reshape(shape).astype(np.float32))), f"{name}_bias")


def _scores(logits: ov.Node, name: str) -> ov.Node:
    """Softmax over axis 1, its output carrying the tensor name ``name`` (as a converted model's would)."""
    scores = _named(ops.softmax(logits, 1), name)
    scores.output(0).get_tensor().set_names({name})
    return scores


def _nhwc_input(name: str, shape) -> tuple:
    """A ``[1, H, W, C]`` input (images as cv2 reads them, stacked) and its NCHW view."""
    x = ops.parameter([1, *shape], np.float32, name=name)
    return x, _named(ops.transpose(x, ops.constant(np.array([0, 3, 1, 2]))), f"{name}_nchw")


def _quantize(engine, algorithm: str, model, **params):
    """POT's samples' steps 5-7: pipeline, run, compress weights; returns (pipeline, compressed model)."""
    pipeline = create_pipeline([{"name": algorithm, "params": {"target_device": "ANY", **params}}], engine)
    compressed = pipeline.run(model)
    compress_model_weights(compressed)
    return pipeline, compressed


def _fake_quantize_count(model):
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


class PreparedItems(DataLoader):
    """The samples' loaders' common shape: ``__len__`` and ``__getitem__`` (``IndexError`` past the end) over
    ``self.items``, which each subclass fills in ``__init__`` (the samples read files there or per item)."""

    items: list = []

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError
        return self.items[index]

    def __len__(self):
        return len(self.items)


# ========================================================================================== classification
# POT's classification sample: ``ImageNetDataLoader`` items ``(image HWC, label or None)`` (None when no
# annotation file is given); ``Accuracy`` defines only ``avg_value`` and checks ``len(output) > 1``; plain
# ``IEEngine`` with ``stat_requests_number`` / ``eval_requests_number`` 4; ``save_model`` to ``optimized``.
def _patch_classifier(seed: int = 0) -> ov.Model:
    """``[1, 16, 16, 3]`` images -> 4 class scores: which quadrant holds the bright patch."""
    rng = np.random.default_rng(seed)
    x, nchw = _nhwc_input("image", (16, 16, 3))
    features = _named(ops.relu(_conv(nchw, np.full((4, 3, 3, 3), 1 / 27) + rng.normal(0, 0.01, (4, 3, 3, 3)),
                                     "conv1", bias=np.zeros(4))), "relu1")
    quadrants = _named(ops.avg_pool(features, [8, 8], [0, 0], [0, 0], [8, 8], True), "pool")  # [1, 4, 2, 2]
    flat = _named(ops.reshape(quadrants, ops.constant(np.array([1, 16])), False), "flatten")
    picker = np.zeros((16, 4), np.float32)
    for quadrant in range(4):
        picker[quadrant::4, quadrant] = 10.0 / 4  # the 4 channels of one quadrant vote for its class
    logits = _named(ops.matmul(flat, ops.constant(picker), False, False), "fc")
    return ov.Model([ops.result(logits)], [x], "patch_classifier")


class PatchImages(PreparedItems):
    """Items ``(image HWC, label)``, or ``(image, None)`` when ``config.has_labels`` is false."""

    def __init__(self, config):
        super().__init__(config)
        rng = np.random.default_rng(3)
        labels = rng.integers(0, 4, 24)
        images = rng.uniform(0, 0.2, (24, 16, 16, 3)).astype(np.float32)
        for image, label in zip(images, labels):
            row, col = divmod(int(label), 2)
            image[row * 8 + 2:row * 8 + 6, col * 8 + 2:col * 8 + 6] = 1.0
        self.items = [(image, int(label) if self.config.has_labels else None) for image, label in zip(images, labels)]


class TopOneAccuracy(Metric):
    def __init__(self):
        super().__init__()
        self._name = "accuracy@top1"
        self._matches = []

    @property
    def avg_value(self):
        return {self._name: float(np.ravel(self._matches).mean()) if self._matches else 0.0}

    def update(self, output, target):
        if len(output) > 1:
            raise ValueError("one output expected")
        if isinstance(target, dict):
            target = list(target.values())
        self._matches.append([float(label == np.argmax(scores)) for scores, label in zip(output[0], target)])

    def reset(self):
        self._matches = []

    def get_attributes(self):
        return {self._name: {"direction": "higher-better", "type": "accuracy"}}


def test_classification_sample_contract(tmp_path):
    ov.save_model(_patch_classifier(), tmp_path / "model.xml", compress_to_fp16=False)
    model = load_model({"model_name": "sample_model", "model": str(tmp_path / "model.xml"),
                        "weights": str(tmp_path / "model.bin")})
    config = {"device": "CPU", "stat_requests_number": 4, "eval_requests_number": 4}
    unlabelled = IEEngine(config, PatchImages({"has_labels": False}), TopOneAccuracy())
    _, compressed = _quantize(unlabelled, "DefaultQuantization", model, preset="performance", stat_subset_size=300)
    paths = save_model(compressed, str(tmp_path / "optimized"))

    labelled = create_pipeline([{"name": "DefaultQuantization", "params": {}}],
                               IEEngine(config, PatchImages({"has_labels": True}), TopOneAccuracy()))
    assert labelled.evaluate(model) == {"accuracy@top1": 1.0}
    assert labelled.evaluate(load_model({"model_name": "int8", "model": paths[0]["model"]})) == {"accuracy@top1": 1.0}
    assert _fake_quantize_count(ov.Core().read_model(paths[0]["model"])) >= 2


# ============================================================================================ segmentation
# POT's segmentation sample: ``VOCSegmentationLoader`` items ``(image HWC, mask HxW int16)``; ``MeanIOU`` sets
# its own fields before ``super().__init__()`` (which calls ``reset``), reads ``output[0]`` (a class map the
# model computes itself) and ``target[0]``, and accumulates a confusion matrix; plain ``IEEngine``.
def _threshold_segmenter() -> ov.Model:
    """``[1, 12, 12, 3]`` -> class map ``[1, 12, 12]`` (int32): 1 where the pixel is bright, else 0."""
    x, nchw = _nhwc_input("image", (12, 12, 3))
    hidden = _named(ops.relu(_conv(nchw, np.full((2, 3, 1, 1), 1 / 3), "conv1", bias=np.array([0.0, -0.5]))),
                    "relu1")
    logits = _conv(hidden, np.array([[-1.0, 0.0], [0.0, 8.0]]).reshape(2, 2, 1, 1), "classifier",
                   bias=np.array([0.5, 0.0]))
    labels = ops.topk(logits, ops.constant(np.array(1)), 1, "max", "none", "i32").output(1)
    class_map = _named(ops.squeeze(labels, ops.constant(np.array([1]))), "class_map")
    return ov.Model([ops.result(class_map)], [x], "segmenter")


class MaskLoader(PreparedItems):
    def __init__(self, config):
        super().__init__(config)
        rng = np.random.default_rng(5)
        images = rng.uniform(0, 0.3, (10, 12, 12, 3)).astype(np.float32)
        masks = np.zeros((10, 12, 12), np.int16)
        for image, mask in zip(images, masks):
            y0, x0 = rng.integers(0, 6, 2)
            image[y0:y0 + 5, x0:x0 + 5] = rng.uniform(0.8, 1.0, (5, 5, 3))
            mask[y0:y0 + 5, x0:x0 + 5] = 1
        self.items = list(zip(images, masks))


class MeanIOU(Metric):
    def __init__(self, num_classes):
        self._classes_num = num_classes  # set before super().__init__(), which calls reset()
        super().__init__()
        self._name = "mean_iou"

    @property
    def avg_value(self):
        cm = self._total_cm
        union = cm.sum(axis=0) + cm.sum(axis=1) - np.diagonal(cm)
        return {self._name: float(np.nanmean(np.where(union > 0, np.diagonal(cm) / np.maximum(union, 1), np.nan)))}

    def update(self, output, target):
        y_pred, y_true = output[0].flatten().astype(np.int64), target[0].flatten().astype(np.int64)
        matrix = np.bincount(self._classes_num * y_true + y_pred, minlength=self._classes_num ** 2)
        self._total_cm += matrix.reshape(self._classes_num, self._classes_num)

    def reset(self):
        self._total_cm = np.zeros((self._classes_num, self._classes_num))

    def get_attributes(self):
        return {self._name: {"direction": "higher-better", "type": "mean_iou"}}


def test_segmentation_sample_contract():
    model = CompressedModel(_threshold_segmenter())
    engine = IEEngine({"device": "CPU", "stat_requests_number": 4, "eval_requests_number": 4}, MaskLoader({}),
                      MeanIOU(num_classes=2))
    pipeline, compressed = _quantize(engine, "DefaultQuantization", model, preset="performance", stat_subset_size=300)
    assert pipeline.evaluate(model) == {"mean_iou": 1.0}
    assert pipeline.evaluate(compressed)["mean_iou"] == pytest.approx(1.0, abs=0.02)
    assert _fake_quantize_count(compressed.get_model()) >= 2


# ======================================================================================== object detection
# POT's object detection sample: ``COCOLoader`` items ``(image, [annotation dict, (height, width)])`` with
# ``{'boxes', 'labels', 'iscrowd', 'x_mins', ...}``; a MAP metric that also defines ``value`` (one value per
# image, which AccuracyAwareQuantization ranks samples by) and reads DetectionOutput rows ``[image_id, label,
# score, x0, y0, x1, y1]`` (normalized, ended by a -1 row) from ``output``; AccuracyAwareQuantization, preset
# mixed, ``maximal_drop`` 0.004; plain ``IEEngine``.
DETECTION_SIZE = 24


def _bright_square_detector() -> ov.Model:
    """``[1, 24, 24, 3]`` -> ``[1, 1, 2, 7]``: one detection (label 1) around the bright square, then -1."""
    x, nchw = _nhwc_input("image", (DETECTION_SIZE, DETECTION_SIZE, 3))
    brightness = _named(ops.relu(_conv(nchw, np.full((1, 3, 1, 1), 1 / 3), "brightness")), "relu1")
    pixels = DETECTION_SIZE * DETECTION_SIZE
    flat = _named(ops.reshape(brightness, ops.constant(np.array([1, pixels])), False), "flatten")
    weights = _named(ops.softmax(_named(ops.multiply(flat, ops.constant(np.float32(12.0))), "sharpen"), 1),
                     "attention")
    grid = (np.stack(np.meshgrid(np.arange(DETECTION_SIZE), np.arange(DETECTION_SIZE)), -1).reshape(pixels, 2)
            + 0.5) / DETECTION_SIZE  # (x, y) of each pixel centre, normalized
    centre = _named(ops.matmul(weights, ops.constant(grid.astype(np.float32)), False, False), "centre")
    inside = _named(ops.sigmoid(_named(ops.add(_named(ops.multiply(flat, ops.constant(np.float32(20.0))), "gain"),
                                               ops.constant(np.float32(-10.0))), "shift")), "inside")
    area = _named(ops.reduce_mean(inside, ops.constant(np.array([1])), True), "area")
    half = _named(ops.multiply(ops.sqrt(area), ops.constant(np.float32(0.5))), "half_side")
    corners = _named(ops.concat([ops.subtract(centre, half), ops.add(centre, half)], 1), "corners")
    head = ops.constant(np.array([[0.0, 1.0, 1.0]], np.float32))
    row = _named(ops.concat([head, corners], 1), "detection")
    rows = ops.concat([row, ops.constant(np.array([[-1, 0, 0, 0, 0, 0, 0]], np.float32))], 0)
    out = _named(ops.reshape(rows, ops.constant(np.array([1, 1, 2, 7])), False), "detection_out")
    return ov.Model([ops.result(out)], [x], "detector")


class SquaresCOCO(PreparedItems):
    def __init__(self, config):
        super().__init__(config)
        rng = np.random.default_rng(7)
        self.items = []
        for _ in range(12):
            image = rng.uniform(0, 0.1, (DETECTION_SIZE, DETECTION_SIZE, 3)).astype(np.float32)
            side = int(rng.integers(6, 10))
            x0, y0 = (int(v) for v in rng.integers(0, DETECTION_SIZE - side, 2))
            image[y0:y0 + side, x0:x0 + side] = 1.0
            box = np.array([[x0, y0, x0 + side, y0 + side]], np.float32)
            annotation = {"boxes": box, "labels": np.array([1]), "iscrowd": np.array([0]),
                          "x_maxs": box[:, 2], "x_mins": box[:, 0], "y_maxs": box[:, 3], "y_mins": box[:, 1]}
            self.items.append((image, [annotation, (DETECTION_SIZE, DETECTION_SIZE)]))


class MeanAP(Metric):
    """A single-class AP over IoU thresholds 0.5..0.95, per image and over the data set."""

    def __init__(self):
        super().__init__()
        self._name = "MAP"
        self._thresholds = np.linspace(0.5, 0.95, 10)

    @property
    def value(self):
        return {self._name: [self._per_image[-1]]}

    @property
    def avg_value(self):
        return {self._name: float(np.mean(self._per_image))}

    def update(self, output, target):
        annotation, (height, width) = target[0]
        rows = np.asarray(output[0]).reshape(-1, 7)
        rows = rows[:np.argmax(rows[:, 0] == -1)] if (rows[:, 0] == -1).any() else rows
        boxes = rows[:, 3:] * np.array([width, height, width, height])
        hits = [np.mean([any(_iou(box, truth) >= t for box in boxes) for t in self._thresholds])
                for truth in annotation["boxes"]]
        self._per_image.append(float(np.mean(hits)))

    def reset(self):
        self._per_image = []

    def get_attributes(self):
        return {self._name: {"direction": "higher-better", "type": "MAP"}}


def test_object_detection_sample_contract():
    model = CompressedModel(_bright_square_detector())
    engine = IEEngine({"device": "CPU"}, SquaresCOCO({"images_path": "unused"}), MeanAP())
    pipeline, compressed = _quantize(engine, "AccuracyAwareQuantization", model, preset="mixed",
                                     stat_subset_size=300, maximal_drop=0.004)
    fp_map, int8_map = pipeline.evaluate(model)["MAP"], pipeline.evaluate(compressed)["MAP"]
    assert fp_map > 0.8
    assert int8_map >= fp_map - 0.004 - 1e-9  # the accuracy-aware contract: the drop stays within maximal_drop
    assert _fake_quantize_count(compressed.get_model()) >= 1
    engine.set_model(compressed)
    (per_sample, average), _ = engine.predict(metric_per_sample=True)  # the per-image ``value`` AA ranks by
    assert [entry["sample_id"] for entry in per_sample] == list(range(12))
    assert average["MAP"] == pytest.approx(np.mean([entry["result"] for entry in per_sample]))


# =========================================================================================== 3D segmentation
# POT's 3D segmentation sample: ``BRATSDataLoader`` items ``(image [C, D, H, W], mask, metadata)`` with
# ``{'image_shape', 'bbox'}`` metadata; an ``IEEngine`` subclass whose static ``postprocess_output(outputs,
# metadata)`` turns the per-channel probabilities back into a label volume of the original shape; ``DiceIndex``
# requires exactly one output and one target per update.
VOLUME, CROP = (8, 8, 8), (6, 6, 6)


def _volume_segmenter() -> ov.Model:
    """``[1, 2, 6, 6, 6]`` -> probabilities ``[1, 3, 6, 6, 6]`` of three nested tumour regions."""
    x = ops.parameter([1, 2, *CROP], np.float32, name="volume")
    hidden = _named(ops.relu(_conv(x, np.full((1, 2, 1, 1, 1), 0.5), "conv1")), "relu1")
    logits = _conv(hidden, np.full((3, 1, 1, 1, 1), 12.0), "heads", bias=np.array([-3.0, -6.0, -9.0]))
    return ov.Model([ops.result(_named(ops.sigmoid(logits), "probabilities"))], [x], "volume_segmenter")


class VolumeLoader(PreparedItems):
    def __init__(self, config):
        super().__init__(config)
        rng = np.random.default_rng(11)
        self.items = []
        for _ in range(6):
            intensity = np.zeros(VOLUME, np.float32)
            z, y, x = rng.integers(1, 3, 3)
            for margin, level in ((0, 0.35), (1, 0.65), (2, 0.95)):  # nested regions, as tumour labels are
                intensity[z + margin:z + 5 - margin, y + margin:y + 5 - margin, x + margin:x + 5 - margin] = level
            mask = np.digitize(intensity, [0.25, 0.5, 0.75]).astype(np.int8)
            low = np.array([1, 1, 1])
            image = np.stack([intensity, intensity])[:, 1:7, 1:7, 1:7]  # the crop around the brain
            meta = {"image_shape": (2, *VOLUME), "bbox": np.stack([low, low + np.array(CROP)])}
            self.items.append((image, mask, meta))


class VolumeSegmentationEngine(IEEngine):
    @staticmethod
    def postprocess_output(outputs, metadata):
        volumes = []
        for output, meta in zip(outputs.values(), metadata):
            low, high = meta["bbox"]
            labels = np.zeros(meta["image_shape"][-3:], np.int8)
            regions = output[0] > 0.5
            for label, region in enumerate(regions, start=1):  # nested: later regions overwrite
                labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]][region] = label
            volumes.append(labels)
        return np.stack(volumes, axis=0)


class DiceIndex(Metric):
    def __init__(self, num_classes):
        self._classes_num = num_classes
        super().__init__()
        self._name = "dice_index"

    @property
    def avg_value(self):
        return {self._name: float(np.mean(self._overall))}

    def update(self, output, target):
        if len(output) != 1 or len(target) != 1:
            raise ValueError("one output and one target expected")
        prediction, truth = output[0], target[0]
        scores = []
        for label in range(1, self._classes_num):
            total = (truth == label).sum() + (prediction == label).sum()
            if total:
                scores.append(2.0 * np.logical_and(truth == label, prediction == label).sum() / total)
        self._overall.append(np.mean(scores))

    def reset(self):
        self._overall = []

    def get_attributes(self):
        return {self._name: {"direction": "higher-better", "type": "dice_index"}}


def test_3d_segmentation_sample_contract():
    model = CompressedModel(_volume_segmenter())
    engine = VolumeSegmentationEngine({"device": "CPU", "stat_requests_number": 4, "eval_requests_number": 4},
                                      VolumeLoader({}), DiceIndex(num_classes=4))
    pipeline, compressed = _quantize(engine, "DefaultQuantization", model, preset="performance", stat_subset_size=200)
    assert pipeline.evaluate(model) == {"dice_index": 1.0}
    assert pipeline.evaluate(compressed)["dice_index"] == pytest.approx(1.0, abs=0.05)
    assert _fake_quantize_count(compressed.get_model()) >= 2


def test_strided_items_as_the_3d_samples_crops_give_the_models_outputs():
    """Crops are views with strides; OpenVINO's async requests read a strided shared input from a temporary copy
    that can be freed before the request runs (wrong, run-dependent outputs) unless the engine passes
    contiguous arrays it keeps alive."""

    class Crops(DataLoader):
        def __init__(self, config):
            super().__init__(config)
            self.volumes = np.random.default_rng(0).standard_normal((48, 2, 8, 8, 8)).astype(np.float32)

        def __len__(self):
            return len(self.volumes)

        def __getitem__(self, index):
            return self.volumes[index][:, 1:7, 1:7, 1:7], 0  # a strided view, as a crop is

    loader, metric = Crops({}), KeptOutputs()
    engine = IEEngine({"device": "CPU", "eval_requests_number": 2, "inference_precision": "f32"}, loader, metric)
    engine.set_model(CompressedModel(_volume_segmenter()))
    engine.predict()
    reference = ov.Core().compile_model(_volume_segmenter(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = [reference(np.ascontiguousarray(loader[i][0])[None])[0] for i in range(len(loader))]
    assert len(metric.outputs) == len(loader)
    wrong = [i for i, (got, want) in enumerate(zip(metric.outputs, expected)) if not np.allclose(got, want, atol=1e-6)]
    assert wrong == []


# ==================================================================================== face detection (MTCNN)
# POT's face_detection sample: a cascade ``pnet -> rnet -> onet`` loaded with ``load_model({'cascade': [...]})``;
# an ``IEEngine`` subclass that overrides ``set_model`` and ``predict``, runs pnet over an image pyramid, crops
# the proposals for rnet and onet, stops when a stage keeps no box, collects statistics with ``add_outputs``
# + ``append_stats`` + ``process_accumulated_stats`` on every inference, and feeds ``[boxes]`` and the
# annotation dicts ``{'bboxes', 'difficult'}`` to a recall metric; step 8 is ``compressed_model.save(dir)``.
# Here a "face" is a bright square on a dark image and each stage scores brightness.
PNET_BOX = 16  # the side of the square a pnet cell proposes around its centre, in pixels of the scaled image


def _brightness_stage(member: str, crop: int, seed: int) -> ov.Model:
    """``[N, 3, crop, crop]`` -> ``prob1`` ``[N, 2]`` (class 1: bright crop) and ``regions`` ``[N, 4]``."""
    rng = np.random.default_rng(seed)
    x = ops.parameter([-1, 3, crop, crop], np.float32, name=f"{member}/input")
    features = _named(ops.relu(_conv(x, np.full((4, 3, 3, 3), 1 / 27), f"{member}/conv1", stride=2)),
                      f"{member}/relu1")
    pooled = _named(ops.reduce_mean(features, ops.constant(np.array([2, 3])), False), f"{member}/pool")
    logits = _named(ops.matmul(pooled, ops.constant(np.tile([[-6.0, 6.0]], (4, 1)).astype(np.float32) / 4),
                               False, False), f"{member}/fc_prob")
    logits = _named(ops.add(logits, ops.constant(np.array([[1.5, -1.5]], np.float32))), f"{member}/fc_prob_bias")
    regions = _named(ops.matmul(pooled, ops.constant(rng.standard_normal((4, 4)).astype(np.float32) * 0.01),
                                False, False), f"{member}/fc_regions")
    prob = _scores(logits, f"{member}/prob1")
    return ov.Model([ops.result(prob), ops.result(regions)], [x], member)


def _pnet() -> ov.Model:
    """``[1, 3, H, W]`` (any H, W) -> ``prob1`` ``[1, 2, H/4, W/4]`` and ``regions`` ``[1, 4, H/4, W/4]``."""
    x = ops.parameter([1, 3, -1, -1], np.float32, name="pnet/input")
    local = _named(ops.relu(_conv(x, np.full((2, 3, 3, 3), 1 / 27), "pnet/conv1", stride=2)), "pnet/relu1")
    logits = _conv(local, np.array([[-6.0, -6.0], [6.0, 6.0]]).reshape(2, 2, 1, 1) / 2, "pnet/conv_prob",
                   stride=2, bias=np.array([1.5, -1.5]))
    regions = _conv(local, np.full((4, 2, 1, 1), 0.01), "pnet/conv_regions", stride=2)
    return ov.Model([ops.result(_scores(logits, "pnet/prob1")), ops.result(regions)], [x], "pnet")


def _face_images(count: int, size: int = 48, seed: int = 0):
    """Dark RGB images ``[size, size, 3]`` with one bright square each, and WIDER FACE-like annotations."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for _ in range(count):
        image = rng.uniform(0.0, 0.15, (size, size, 3)).astype(np.float32)
        side = int(rng.integers(12, 20))
        x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
        image[y0:y0 + side, x0:x0 + side] = rng.uniform(0.8, 1.0, (side, side, 3))
        images.append(image)
        annotations.append({"bboxes": [[x0, y0, x0 + side, y0 + side]], "difficult": []})
    return images, annotations


class FaceLoader(PreparedItems):
    """POT's WiderFaceLoader shape: ``(image HWC, {'bboxes': [[x0, y0, x1, y1]], 'difficult': [...]})``."""

    def __init__(self, config):
        super().__init__(config)
        self.items = list(zip(*_face_images(self.config.count)))


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class Recall(Metric):
    """POT's sample Recall shape: only ``avg_value``; ``update([boxes], [annotation dict])``."""

    def __init__(self):
        super().__init__()
        self._name = "recall"

    @property
    def avg_value(self):
        return {self._name: self._found / max(self._faces, 1)}

    def update(self, output, target):
        for boxes, annotation in zip(output, target):
            self._faces += len(annotation["bboxes"])
            self._found += sum(any(_iou(box, face) > 0.3 for box in boxes) for face in annotation["bboxes"])

    def reset(self):
        self._faces, self._found = 0, 0

    def get_attributes(self):
        return {self._name: {"direction": "higher-better", "type": "recall"}}


def _crops(image, boxes, side):
    """Nearest-neighbour crops ``[N, 3, side, side]`` of ``image`` (HWC) at ``boxes``."""
    crops = []
    for x0, y0, x1, y1 in boxes:
        rows = np.clip(np.linspace(y0, y1 - 1, side).round().astype(int), 0, image.shape[0] - 1)
        cols = np.clip(np.linspace(x0, x1 - 1, side).round().astype(int), 0, image.shape[1] - 1)
        crops.append(image[rows][:, cols].transpose(2, 0, 1))
    return np.stack(crops).astype(np.float32)


class CascadeDetectionEngine(IEEngine):
    """The MTCNN sample's engine shape: three stages per image, early exit, statistics on every inference.

    Engine config keys of its own, as POT's sample had: ``outputs`` (the probability output name of each
    stage) and ``thresholds`` (the score a box needs to go on to the next stage).
    """

    STAGES = ("pnet", "rnet", "onet")

    def set_model(self, model):
        self._cascade = model

    def predict(self, stats_layout=None, sampler=None, stat_aliases=None, metric_per_sample=False,
                print_progress=False):
        if sampler is None:
            sampler = BatchSampler(self.data_loader)
        members = copy.deepcopy(self._cascade).models
        layouts = {member["name"]: {} for member in members}
        for node_key, stats in (stats_layout or {}).items():
            owner = next(m["name"] for m in members if any(
                op.get_friendly_name() == node_key for op in m["model"].get_ops()))
            layouts[owner][node_key] = stats
        add_outputs(members, {member["model"].get_friendly_name(): list(layouts[member["name"]])
                              for member in members})
        precision = {"INFERENCE_PRECISION_HINT": "f32"}
        self._stage_models = {m["name"]: self._ie.compile_model(m["model"], "CPU", precision) for m in members}
        self._accumulated = {key: {stat: [] for stat in stats} for key, stats in (stats_layout or {}).items()}
        self._layouts = layouts
        if self._metric is not None:
            self._metric.reset()
        for batch in sampler:
            annotations, images, _ = self._process_batch(batch)
            for (sample_id, annotation), image in zip(annotations, images):
                boxes = self._detect(image, sample_id)
                if self._metric is not None:
                    self._metric.update([boxes], [annotation])
        stats = process_accumulated_stats(self._accumulated) if stats_layout else None
        metrics = self._metric.avg_value if self._metric is not None else None
        return metrics, stats

    def _infer(self, stage, data, sample_id):
        result = self._stage_models[stage](data)
        append_stats(self._accumulated, self._layouts[stage], result, sample_id)
        probability = next(value for output, value in result.items()
                           if self.config["outputs"]["probabilities"][self.STAGES.index(stage)] in output.get_names())
        return probability

    def _detect(self, image, sample_id):
        boxes, scores = [], []
        for scale in (1.0, 0.5):  # the image pyramid
            step = int(round(1 / scale))
            scaled = image[::step, ::step].transpose(2, 0, 1)[None]
            probability = self._infer("pnet", scaled, sample_id)[0, 1]
            for row, col in zip(*np.nonzero(probability > self.config["thresholds"][0])):
                x0, y0 = (col * 4 + 2 - PNET_BOX // 2) * step, (row * 4 + 2 - PNET_BOX // 2) * step
                boxes.append([x0, y0, x0 + PNET_BOX * step, y0 + PNET_BOX * step])
                scores.append(probability[row, col])
        boxes = [boxes[i] for i in np.argsort(scores)[::-1][:6]]
        for stage, side, threshold in zip(("rnet", "onet"), (12, 16), self.config["thresholds"][1:]):
            if not boxes:
                break
            score = self._infer(stage, _crops(image, boxes, side), sample_id)[:, 1]
            boxes = [box for box, value in zip(boxes, score) if value > threshold]
        return boxes


@pytest.fixture(scope="module")
def mtcnn_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtcnn")
    cascade = []
    for name, model in (("pnet", _pnet()), ("rnet", _brightness_stage("rnet", 12, 1)),
                        ("onet", _brightness_stage("onet", 16, 2))):
        ov.save_model(model, folder / f"{name}.xml", compress_to_fp16=False)
        cascade.append({"name": name, "model": str(folder / f"{name}.xml"), "weights": str(folder / f"{name}.bin")})
    return folder, {"model_name": "mtcnn", "cascade": cascade}


def _mtcnn_engine(thresholds):
    config = {"device": "CPU", "outputs": {"probabilities": ["pnet/prob1", "rnet/prob1", "onet/prob1"]},
              "thresholds": thresholds}
    return CascadeDetectionEngine(config=config, data_loader=FaceLoader({"count": 6}), metric=Recall())


def test_face_detection_cascade_quantizes_all_three_members_and_saves_one_ir_each(mtcnn_files, tmp_path):
    _, model_config = mtcnn_files
    model = load_model(model_config)
    engine = _mtcnn_engine([0.6, 0.6, 0.6])
    pipeline = create_pipeline([{"name": "DefaultQuantization",
                                 "params": {"target_device": "ANY", "preset": "performance",
                                            "stat_subset_size": 300}}], engine)
    fp_recall = pipeline.evaluate(model)["recall"]
    compressed = pipeline.run(model)
    compress_model_weights(compressed)
    paths = compressed.save(str(tmp_path / "optimized"))

    assert fp_recall == 1.0  # every bright square is found by the FP cascade
    assert pipeline.evaluate(compressed)["recall"] == 1.0
    assert [entry["name"] for entry in paths] == ["pnet", "rnet", "onet"]
    for entry in paths:
        saved = ov.Core().read_model(entry["model"])
        assert _fake_quantize_count(saved) > 0, entry["name"]


def test_a_cascade_member_no_data_reaches_is_named_with_what_to_do(mtcnn_files):
    """rnet keeps no box (threshold above any score), so onet never runs while statistics are collected."""
    _, model_config = mtcnn_files
    algorithm = {"name": "DefaultQuantization", "params": {"target_device": "ANY", "stat_subset_size": 300}}
    pipeline = create_pipeline([algorithm], _mtcnn_engine([0.6, 1.01, 0.6]))
    with pytest.raises(ValueError) as error:
        pipeline.run(load_model(model_config))
    message = str(error.value)
    assert "produced no values during calibration" in message
    assert "'onet'" in message and "skip_model" in message
    assert "collected:" not in message  # the statistic was asked for and is empty: not "missing"

    algorithm["params"]["ignored"] = {"onet": {"skip_model": True}}
    quantized = create_pipeline([algorithm], _mtcnn_engine([0.6, 1.01, 0.6])).run(load_model(model_config))
    counts = {member["name"]: _fake_quantize_count(member["model"]) for member in quantized.models}
    assert counts["onet"] == 0 and counts["pnet"] > 0 and counts["rnet"] > 0
