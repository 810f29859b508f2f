"""Determinism: the same model, data and seed give byte-identical .xml and .bin, across runs and across
``stat_requests_number`` (synchronous, 2 requests, the device's optimal number)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pot_torch import CompressedModel, IEEngine, compress_model_weights, create_pipeline, save_model
from tests.model_builders import conv_model
from tests.test_property_models import DictLoader


def _data(count: int = 12):
    rng = np.random.default_rng(11)
    return [{"input": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(count)]


def _quantized_files(folder: Path, requests, algorithm: str = "DefaultQuantization", shuffle: bool = True) -> dict:
    """Quantize a fresh conv model with a fresh engine and save it (weights compressed); file hashes."""
    engine = IEEngine({"device": "CPU", "stat_requests_number": requests}, DictLoader(_data()))
    params = {"preset": "mixed", "stat_subset_size": 8, "shuffle_data": shuffle, "seed": 3}
    model = create_pipeline([{"name": algorithm, "params": params}], engine).run(CompressedModel(conv_model()))
    compress_model_weights(model)
    paths = save_model(model, str(folder), model_name="int8")[0]
    return {key: hashlib.sha256(Path(path).read_bytes()).hexdigest() for key, path in paths.items()}


@pytest.mark.parametrize("algorithm", ["DefaultQuantization", "MinMaxQuantization"])
def test_two_runs_give_byte_identical_ir(tmp_path, algorithm):
    first = _quantized_files(tmp_path / "a", 1, algorithm)
    second = _quantized_files(tmp_path / "b", 1, algorithm)
    assert first == second


def test_stat_requests_number_does_not_change_the_ir(tmp_path):
    files = [_quantized_files(tmp_path / str(requests), requests) for requests in (1, 2, 0)]
    assert files[0] == files[1] == files[2]


def test_seed_changes_the_calibration_subset(tmp_path):
    """The check above would pass for a model that ignores its data; a different subset changes the bytes."""
    shuffled = _quantized_files(tmp_path / "a", 1, shuffle=True)
    first_items = _quantized_files(tmp_path / "b", 1, shuffle=False)
    assert shuffled["weights"] != first_items["weights"] or shuffled["model"] != first_items["model"]
