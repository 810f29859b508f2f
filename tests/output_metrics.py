"""A metric of how close a model's output is to the annotation, shared by the search algorithms' tests."""
from __future__ import annotations

import numpy as np

from pot_torch import Metric


class Closeness(Metric):
    """Minus the mean absolute difference between the first output and the annotation (higher is better)."""

    def reset(self):
        self.errors = []

    def update(self, output, target):
        self.errors.append(float(np.mean(np.abs(output[0] - np.asarray(target, np.float32)))))

    @property
    def value(self):
        return {"closeness": [-self.errors[-1]]}

    @property
    def avg_value(self):
        return {"closeness": -float(np.mean(self.errors))}

    def get_attributes(self):
        return {"closeness": {"direction": "higher-better", "type": "closeness"}}
