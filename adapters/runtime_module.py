"""``OpenVINOModule``: an ``nn.Module`` that runs an OpenVINO model, torch tensors in and out."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import openvino as ov
import torch

from pot_torch.adapters.tensors import to_numpy


class OpenVINOModule(torch.nn.Module):
    """Runs an ``openvino.Model`` on the CPU inside a torch evaluation loop.

    Keyword arguments feed inputs by name; positional arguments feed them in the order of
    ``forward_arguments`` (the torch module's ``forward()`` order, as ``quantize`` gives it) or, without it, in
    the model's input order. A single output comes back as a tensor, several as a tuple. Gradients are not
    available (inference only).

    :param model: the OpenVINO model to run.
    :param device: the OpenVINO device.
    :param config: compile properties (default: the device's defaults, as a deployed model would run).
    :param forward_arguments: ``{argument name: model input name, or None when the model has no such input}``
        in the original module's ``forward()`` order. Positional argument ``i`` feeds entry ``i``; one that maps
        to ``None`` is refused. Argument names also work as keywords.
    """

    def __init__(self, model: ov.Model, device: str = "CPU", config: Optional[Dict[str, Any]] = None,
                 forward_arguments: Optional[Mapping[str, Optional[str]]] = None) -> None:
        super().__init__()
        self._compiled = ov.Core().compile_model(model, device, config or {})
        self._request = self._compiled.create_infer_request()
        self._input_names = [port.get_any_name() for port in self._compiled.inputs]
        if forward_arguments is None:
            forward_arguments = {name: name for name in self._input_names}
        unknown = sorted({name for name in forward_arguments.values() if name is not None} - set(self._input_names))
        if unknown:
            raise ValueError(f"forward_arguments maps to {unknown}, which are not inputs of the model; its inputs "
                             f"are {self._input_names}")
        self._arguments = dict(forward_arguments)

    @property
    def compiled_model(self) -> ov.CompiledModel:
        """The compiled OpenVINO model."""
        return self._compiled

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model; returns a tensor, or a tuple of tensors for a model with several outputs."""
        if len(args) > len(self._arguments):
            raise TypeError(f"the model takes at most {len(self._arguments)} positional argument(s) "
                            f"{list(self._arguments)}, got {len(args)}; pass inputs by keyword: {self._input_names}")
        feed: Dict[str, Any] = {}
        for position, ((argument, name), value) in enumerate(zip(self._arguments.items(), args)):
            if name is None:
                raise TypeError(f"positional argument {position} is forward()'s "
                                f"'{argument}', which the converted model has no input for; its inputs are "
                                f"{self._input_names}: pass them by keyword")
            feed[name] = value
        for key, value in kwargs.items():
            name = key if key in self._input_names else self._arguments.get(key)
            if name is None:
                raise TypeError(f"unknown input name '{key}'; the model's inputs are {self._input_names}")
            if name in feed:
                raise TypeError(f"input '{name}' is given twice (by position and as '{key}')")
            feed[name] = value
        missing: List[str] = [name for name in self._input_names if name not in feed]
        if missing:
            raise TypeError(f"missing model input(s) {missing}; the model's inputs are {self._input_names}")
        results = self._request.infer({name: np.ascontiguousarray(to_numpy(value)) for name, value in feed.items()})
        outputs = tuple(torch.from_numpy(np.array(results[port])) for port in self._compiled.outputs)
        return outputs[0] if len(outputs) == 1 else outputs
