"""``OpenVINOModule``: an ``nn.Module`` that runs an OpenVINO model, torch tensors in and out."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import openvino as ov
import torch

from pot_torch.adapters.tensors import to_numpy


class OpenVINOModule(torch.nn.Module):
    """Runs an ``openvino.Model`` on the CPU inside a torch evaluation loop.

    Positional arguments feed the model inputs in order, keyword arguments by input name; a single output
    comes back as a tensor, several as a tuple. Gradients are not available (inference only).

    :param model: the OpenVINO model to run.
    :param device: the OpenVINO device.
    :param config: compile properties (default: the device's defaults, as a deployed model would run).
    """

    def __init__(self, model: ov.Model, device: str = "CPU", config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self._compiled = ov.Core().compile_model(model, device, config or {})
        self._request = self._compiled.create_infer_request()
        self._input_names = [port.get_any_name() for port in self._compiled.inputs]

    @property
    def compiled_model(self) -> ov.CompiledModel:
        """The compiled OpenVINO model."""
        return self._compiled

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model; returns a tensor, or a tuple of tensors for a model with several outputs."""
        if len(args) > len(self._input_names):
            raise TypeError(f"the model takes {len(self._input_names)} input(s) {self._input_names}, "
                            f"got {len(args)} positional arguments")
        feed = {name: np.ascontiguousarray(to_numpy(value)) for name, value in zip(self._input_names, args)}
        unknown = sorted(set(kwargs) - set(self._input_names))
        if unknown:
            raise TypeError(f"unknown input name(s) {unknown}; the model's inputs are {self._input_names}")
        feed.update({name: np.ascontiguousarray(to_numpy(value)) for name, value in kwargs.items()})
        missing = [name for name in self._input_names if name not in feed]
        if missing:
            raise TypeError(f"missing model input(s) {missing}; the model's inputs are {self._input_names}")
        results = self._request.infer(feed)
        outputs = tuple(torch.from_numpy(np.array(results[port])) for port in self._compiled.outputs)
        return outputs[0] if len(outputs) == 1 else outputs
