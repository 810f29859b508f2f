"""``QuantizationResult.report`` after ``pot_torch.adapters.quantize``."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pot_torch.adapters import quantize  # noqa: E402

pytestmark = pytest.mark.torch


def _outlier_mlp():
    """A torch MLP whose last input feature is a ~1000x outlier, with labels = its own predictions."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    with torch.no_grad():
        net[0].weight[:, -1] = 1e-5
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((200, 16)).astype(np.float32)
    inputs[:, -1] *= 1000.0
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        labels = net(x).argmax(dim=1)
    return net, torch.utils.data.TensorDataset(x, labels)


def accuracy(preds, targets):
    return float((preds.argmax(dim=1) == targets).float().mean())


def test_report_after_quantize(tmp_path):
    net, data = _outlier_mlp()
    result = quantize(net, data, data, metric=accuracy)
    path = result.report(tmp_path / "report.html", maximal_drop=0.05)
    assert path == tmp_path / "report.html" and "<svg" in path.read_text(encoding="utf-8")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fp_metric"] == pytest.approx(result.fp32_metric)
    assert report["int8_metric"] == pytest.approx(result.int8_metric)  # the same DefaultQuantization model
    assert report["maximal_drop"] == 0.05 and len(report["groups"]) == 2
    assert report["groups"][0]["outlier_ratio"] > 100
    with pytest.raises(FileExistsError):
        result.report(tmp_path / "report.html")


def test_report_needs_a_metric(tmp_path):
    net, data = _outlier_mlp()
    result = quantize(net, data)
    with pytest.raises(ValueError, match="metric"):
        result.report(tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_report_starts_from_the_model_quantize_made(tmp_path, monkeypatch):
    from pot_torch.algorithms.quantization.default import DefaultQuantization

    net, data = _outlier_mlp()
    result = quantize(net, data, data, metric=accuracy)
    runs = []
    original = DefaultQuantization.run
    monkeypatch.setattr(DefaultQuantization, "run", lambda self, *a, **k: runs.append(1) or original(self, *a, **k))
    result.report(tmp_path / "report.html", maximal_drop=0.05)
    assert not runs  # neither DefaultQuantization again nor its bias-free twin (bias correction recorded them)
