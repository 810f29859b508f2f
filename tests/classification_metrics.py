"""Metrics for the tests' small classifiers (``model_builders.outlier_classifier``), shared by the test modules."""
from __future__ import annotations

import numpy as np

from pot_torch import Metric


class Accuracy(Metric):
    """Top-1 accuracy of the first output's argmax against integer labels, with per-sample values.

    :param percent: report percent (so absolute and relative drops differ) rather than a fraction.
    :param nan: make every value NaN (a metric dividing by zero).
    """

    def __init__(self, percent: bool = True, nan: bool = False) -> None:
        self.scale = 100.0 if percent else 1.0
        self.nan = nan
        super().__init__()

    def reset(self):
        self.hits, self.last = [], np.zeros(0)

    def update(self, output, target):
        self.last = (np.argmax(output[0], axis=-1).reshape(-1) == np.asarray(target)).astype(float) * self.scale
        if self.nan:
            self.last = self.last * np.nan
        self.hits.extend(self.last.tolist())

    @property
    def value(self):
        return {"accuracy": list(self.last)}

    @property
    def avg_value(self):
        return {"accuracy": float(np.mean(self.hits)) if self.hits else float("nan")}

    def get_attributes(self):
        return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}
