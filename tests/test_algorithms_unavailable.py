"""OverflowCorrection and AccuracyAwareGNA (GNA only) import by POT's names and are refused when created."""
from __future__ import annotations

import numpy as np
import pytest

import pot_torch
from pot_torch import DataLoader, IEEngine, create_pipeline


class OneItem(DataLoader):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        return np.zeros((1, 2), np.float32), None


@pytest.mark.parametrize("name, instead", [("OverflowCorrection", "DefaultQuantization"),
                                           ("AccuracyAwareGNA", "AccuracyAwareQuantization")])
def test_gna_only_algorithms_are_refused_with_the_reason(name, instead):
    engine = IEEngine({"device": "CPU"}, OneItem())
    with pytest.raises(ValueError, match=rf"{name} is not available in pot_torch: .*GNA.*removed.*{instead}"):
        create_pipeline([{"name": name}], engine)
    with pytest.raises(ValueError, match=name):
        getattr(pot_torch, name)({}, engine)
