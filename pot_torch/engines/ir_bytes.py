"""An ``openvino.Model`` as bytes and back: how a distributed engine ships a model to its workers.

The IR (``.xml`` text and ``.bin`` weights, uncompressed: weights keep their precision) is what a worker
on another machine reads; a digest of both identifies the model, so an unchanged model is not sent again.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import openvino as ov


class ModelBytes(NamedTuple):
    """A model's IR as bytes and a digest identifying it."""

    xml: bytes
    weights: bytes
    digest: str


def model_to_bytes(model: ov.Model) -> ModelBytes:
    """Serialize ``model`` (weights in their own precision, no FP16 compression) to IR bytes."""
    with tempfile.TemporaryDirectory(prefix="pot_torch_ir_") as folder:
        xml_path, bin_path = Path(folder) / "model.xml", Path(folder) / "model.bin"
        ov.serialize(model, str(xml_path), str(bin_path))
        xml, weights = xml_path.read_bytes(), bin_path.read_bytes()
    digest = hashlib.sha256(xml + b"\0" + weights).hexdigest()
    return ModelBytes(xml, weights, digest)


def model_from_bytes(core: ov.Core, blob: ModelBytes) -> ov.Model:
    """Read a model written by :func:`model_to_bytes`."""
    return core.read_model(blob.xml, ov.Tensor(np.frombuffer(blob.weights, dtype=np.uint8).copy()))
