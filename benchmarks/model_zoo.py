"""Benchmark model zoo built locally (no downloads), each as an ``openvino.Model`` with data generators.

Models:

- ``resnet18``, ``mobilenet_v3_small``: torchvision architectures with seeded random weights (``weights=None``),
  BatchNorm statistics re-estimated on synthetic images so activations have realistic scales, and
  1x3x224x224 input. Untrained, so quality is measured as output cosine similarity to FP32.
- ``small_cnn``: ``pot_torch_showcase.synthetic.small_cnn(32)`` trained here (~1 minute on 2 cores) on its
  synthetic 32x32 images of 10 classes of coloured shapes and patterns; quality is top-1 accuracy on a
  held-out synthetic set.
- ``bert_tiny``: a BERT-style encoder (token ids [1,128] -> embeddings + 4 post-LN encoder layers, hidden 256,
  4 heads, FFN 1024 -> [CLS] pooler -> 2 classes), seeded random weights; quality is output cosine similarity.
- ``bert_base`` (not in the default set, ``--models bert_base``): the same encoder at BERT-base size (12
  layers, hidden 768, 12 heads, FFN 3072; 92 M parameters, a 367 MB FP32 .bin), for time and memory at scale.

Everything is deterministic: same seed, same weights, same data. The trained ``small_cnn`` weights are cached
under ``$POT_TORCH_BENCH_CACHE`` (default ``benchmarks/.cache``) so later runs skip training.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import openvino as ov

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
CACHE_DIR = Path(os.environ.get("POT_TORCH_BENCH_CACHE", Path(__file__).resolve().parent / ".cache"))


@dataclass
class ZooModel:
    """A benchmark model and its data.

    :param name: zoo key.
    :param model: the FP32 ``openvino.Model`` (static shapes, batch 1).
    :param input_name: the name of the model's single input.
    :param calibration: ``calibration(n)`` returns ``n`` input arrays (batch 1) for calibration.
    :param evaluation: ``evaluation(n)`` returns ``n`` ``(input, label)`` pairs; ``label`` is ``None`` for
        untrained models, whose quality is measured as cosine similarity of outputs to the FP32 model.
    :param metric: ``'accuracy'`` or ``'cosine'``.
    :param eval_samples: how many evaluation items the benchmarks use unless told otherwise (2,000 for the
        accuracy model, so one image is 0.05 points and a 0.2-point bar can be read; 200 elsewhere).
    """

    name: str
    model: ov.Model
    input_name: str
    calibration: Callable[[int], List[np.ndarray]]
    evaluation: Callable[[int], List[Tuple[np.ndarray, Optional[int]]]]
    metric: str
    eval_samples: int = 200


def mean_cosine(outputs: np.ndarray, references: np.ndarray) -> float:
    """Mean over rows of the cosine similarity of ``outputs`` [n, d] to ``references`` [n, d]."""
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(references, axis=1) + 1e-12
    return float(np.mean(np.sum(outputs * references, axis=1) / norms))


# ----------------------------------------------------------------------------------------------- synthetic data
def smooth_images(n: int, size: int, seed: int) -> List[np.ndarray]:
    """``n`` ImageNet-normalised [1,3,size,size] images of smooth random blobs and edges (natural-image-like)."""
    rng = np.random.default_rng(seed)
    images = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for _ in range(n):
        img = np.zeros((3, size, size), dtype=np.float32)
        img += rng.uniform(0.2, 0.8, size=(3, 1, 1)).astype(np.float32)
        for _ in range(rng.integers(3, 8)):
            cy, cx = rng.uniform(0, 1, size=2)
            radius = rng.uniform(0.05, 0.4)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
            img += blob[None] * rng.uniform(-0.6, 0.6, size=(3, 1, 1)).astype(np.float32)
        freq = rng.uniform(2, 20)
        angle = rng.uniform(0, math.pi)
        img += 0.1 * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi)[None]
        img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)
        img = np.clip(img, 0, 1)[None]
        images.append(((img - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32))
    return images


def token_batches(n: int, seq_len: int, vocab: int, seed: int) -> List[np.ndarray]:
    """``n`` [1,seq_len] int64 token-id sequences: [CLS]=1 then Zipf-distributed ids (text-like frequencies)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = np.minimum(rng.zipf(1.3, size=seq_len), vocab - 1).astype(np.int64)
        ids = np.maximum(ids, 2)
        ids[0] = 1
        out.append(ids[None])
    return out


# ----------------------------------------------------------------------------------------------------- models
def convert_module(module, example) -> ov.Model:
    """Convert an eval-mode torch module to an ``openvino.Model`` with a static input shape."""
    import torch

    module.eval()
    with torch.no_grad():
        model = ov.convert_model(module, example_input=example, input=[tuple(example.shape)])
    return model


def recalibrate_batchnorm(module, images: List[np.ndarray], batch: int = 16) -> None:
    """Set every BatchNorm's running statistics to the data's (cumulative average over ``images``).

    Random-weight networks with identity BatchNorm statistics let activations shrink or grow layer after
    layer (mobilenet_v3_small's fall to ~1e-4 by the last blocks), which makes quantization ranges unrealistic.
    Re-estimating the statistics gives unit-scale activations like a trained network's.
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average
    module.train()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            module(torch.from_numpy(np.concatenate(images[start:start + batch])))
    module.eval()


def _untrained_zoo_model(name: str, model: ov.Model, calib, evaluate) -> ZooModel:
    return ZooModel(name, model, model.inputs[0].get_any_name(), calib,
                    lambda n: [(x, None) for x in evaluate(n)], "cosine")


def build_resnet18(seed: int = 0) -> ZooModel:
    """torchvision resnet18, random weights from ``seed``, input [1,3,224,224]."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    module = torchvision.models.resnet18(weights=None)
    recalibrate_batchnorm(module, smooth_images(64, 224, seed=300))
    model = convert_module(module, torch.zeros(1, 3, 224, 224))
    return _untrained_zoo_model("resnet18", model, CALIBRATION["resnet18"], lambda n: smooth_images(n, 224, seed=200))


def build_mobilenet_v3_small(seed: int = 0) -> ZooModel:
    """torchvision mobilenet_v3_small, random weights from ``seed``, input [1,3,224,224]."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    module = torchvision.models.mobilenet_v3_small(weights=None)
    recalibrate_batchnorm(module, smooth_images(64, 224, seed=301))
    model = convert_module(module, torch.zeros(1, 3, 224, 224))
    return _untrained_zoo_model("mobilenet_v3_small", model, CALIBRATION["mobilenet_v3_small"],
                                lambda n: smooth_images(n, 224, seed=201))


def train_small_cnn(seed: int = 0, steps: int = 600, batch: int = 64):
    """Train ``pot_torch_showcase.synthetic.small_cnn(32)`` on synthetic shapes (about a minute on 2 cores); returns it.

    The weights are cached in ``CACHE_DIR`` keyed by seed and steps.
    """
    import torch
    from pot_torch_showcase.synthetic import shapes_dataset, small_cnn, train_classifier

    cache = CACHE_DIR / f"small_cnn_seed{seed}_steps{steps}.pt"
    torch.manual_seed(seed)
    module = small_cnn(32)
    if cache.exists():
        module.load_state_dict(torch.load(cache, weights_only=True))
        return module.eval()
    train_classifier(module, shapes_dataset(steps * batch // 4, seed=seed + 1), steps, batch, seed)  # 4 epochs
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(module.state_dict(), tmp)
    os.replace(tmp, cache)
    return module


def build_small_cnn(seed: int = 0) -> ZooModel:
    """The trained small CNN, input [1,3,32,32]; quality = top-1 accuracy on held-out synthetic shapes."""
    import torch

    model = convert_module(train_small_cnn(seed), torch.zeros(1, 3, 32, 32))
    return ZooModel("small_cnn", model, model.inputs[0].get_any_name(),
                    lambda n: _small_cnn_calibration(n, seed), lambda n: _small_cnn_evaluation(n, seed), "accuracy",
                    eval_samples=2000)


def _bert_module(vocab: int, seq_len: int, hidden: int, layers: int, heads: int, ffn: int):
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
            self.out = nn.Linear(hidden, hidden)
            self.heads, self.head_dim = heads, hidden // heads

        def _split(self, x):
            b, s, _ = x.shape
            return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x):
            q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
            b, _, s, _ = ctx.shape
            return self.out(ctx.transpose(1, 2).reshape(b, s, hidden))

    class EncoderLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = SelfAttention()
            self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.intermediate, self.output = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)

        def forward(self, x):
            x = self.norm1(x + self.attention(x))
            return self.norm2(x + self.output(nn.functional.gelu(self.intermediate(x))))

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab, hidden)
            self.positions = nn.Parameter(torch.randn(1, seq_len, hidden) * 0.02)
            self.norm = nn.LayerNorm(hidden)
            self.layers = nn.ModuleList(EncoderLayer() for _ in range(layers))
            self.pooler = nn.Linear(hidden, hidden)
            self.classifier = nn.Linear(hidden, 2)

        def forward(self, input_ids):
            x = self.norm(self.tokens(input_ids) + self.positions)
            for layer in self.layers:
                x = layer(x)
            return self.classifier(torch.tanh(self.pooler(x[:, 0])))

    return Encoder()


def build_bert_tiny(seed: int = 0, vocab: int = 8000, seq_len: int = 128, hidden: int = 256, layers: int = 4,
                    heads: int = 4, ffn: int = 1024, name: str = "bert_tiny") -> ZooModel:
    """A BERT-style encoder with random weights from ``seed``; input ``input_ids`` [1,seq_len] int64."""
    import torch

    torch.manual_seed(seed)
    module = _bert_module(vocab, seq_len, hidden, layers, heads, ffn)
    model = convert_module(module, torch.ones(1, seq_len, dtype=torch.int64))
    calibration = lambda n: token_batches(n, seq_len, vocab, seed=102)  # noqa: E731
    return _untrained_zoo_model(name, model, calibration, lambda n: token_batches(n, seq_len, vocab, seed=202))


def build_bert_base(seed: int = 0) -> ZooModel:
    """The BERT-style encoder at BERT-base size (12 layers, hidden 768, 12 heads, FFN 3072)."""
    return build_bert_tiny(seed, hidden=768, layers=12, heads=12, ffn=3072, name="bert_base")


def _small_cnn_calibration(n: int, seed: int = 0) -> List[np.ndarray]:
    from pot_torch_showcase.synthetic import shape_images

    images, _ = shape_images(n, seed=seed + 1000)
    return [img[None] for img in images]


def _small_cnn_evaluation(n: int, seed: int = 0) -> List[Tuple[np.ndarray, Optional[int]]]:
    from pot_torch_showcase.synthetic import shape_images

    images, labels = shape_images(n, seed=seed + 2000)
    return [(img[None], int(label)) for img, label in zip(images, labels)]


CALIBRATION: Dict[str, Callable[[int], List[np.ndarray]]] = {
    "resnet18": lambda n: smooth_images(n, 224, seed=100),
    "mobilenet_v3_small": lambda n: smooth_images(n, 224, seed=101),
    "small_cnn": _small_cnn_calibration,
    "bert_tiny": lambda n: token_batches(n, 128, 8000, seed=102),
    "bert_base": lambda n: token_batches(n, 128, 8000, seed=102),
}
"""Torch-free calibration data by zoo name: ``CALIBRATION[name](n)`` gives ``n`` batch-1 inputs."""

ZOO: Dict[str, Callable[[], ZooModel]] = {
    "resnet18": build_resnet18,
    "mobilenet_v3_small": build_mobilenet_v3_small,
    "small_cnn": build_small_cnn,
    "bert_tiny": build_bert_tiny,
    "bert_base": build_bert_base,
}
#: The zoo models a benchmark runs unless told otherwise (``bert_base`` takes minutes, so it is opt-in).
DEFAULT_MODELS = ("resnet18", "mobilenet_v3_small", "small_cnn", "bert_tiny")
#: Zoo models quantized with the transformer model type.
TRANSFORMERS = ("bert_tiny", "bert_base")


def build(name: str) -> ZooModel:
    """Build zoo model ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    if name not in ZOO:
        raise KeyError(f"Unknown zoo model '{name}'. Valid names: {', '.join(ZOO)}.")
    return ZOO[name]()
