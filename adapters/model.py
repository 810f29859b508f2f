"""``convert_torch_model``: a ``torch.nn.Module`` as a ``CompressedModel``, via ``openvino.convert_model``."""

from __future__ import annotations

import re
import warnings
from typing import Any, Dict, List, Optional, Sequence

import openvino as ov
import torch

from pot_torch.adapters.dataset import TorchDataLoader
from pot_torch.graph.nx_model import CompressedModel

_NO_RULE = re.compile(r"No conversion rule found for operations:\s*(.+)")
_FAILED = re.compile(r"Conversion is failed for:\s*(.+)")
_DETAIL = re.compile(r"^-- (\S+) with a message:\s*\n(.+)$", re.MULTILINE)


class ModelConversionError(RuntimeError):
    """``openvino.convert_model`` could not convert a torch module.

    :ivar failed_ops: the operations the converter named (``aten::...``), empty when tracing failed earlier.
    """

    def __init__(self, message: str, failed_ops: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failed_ops = list(failed_ops)


def convert_torch_model(
    module: torch.nn.Module,
    example_input: Any = None,
    dataset: Any = None,
    input_names: Optional[Sequence[str]] = None,
    dynamic_batch: bool = False,
    model_name: Optional[str] = None,
    **convert_kwargs: Any,
) -> CompressedModel:
    """Convert ``module`` to a ``CompressedModel`` with ``openvino.convert_model`` (TorchScript tracing).

    The module is converted in eval mode; its own training mode (of every submodule) is restored afterwards
    and its parameters are not touched.

    :param module: the torch module.
    :param example_input: the input to trace with: a tensor, a tuple of tensors (by position) or a dict (by
        ``forward`` argument name), with the batch axis.
    :param dataset: where to take the example input from when ``example_input`` is not given: a
        ``TorchDataLoader``, a torch ``Dataset`` or ``DataLoader``, or an iterable (see ``TorchDataLoader``).
    :param input_names: names for the model's inputs, in order (default: the ``forward`` argument names).
        Both the Parameter friendly names and tensor names are set.
    :param dynamic_batch: make the first axis of every input dynamic (-1); otherwise all input shapes are the
        example's.
    :param model_name: the model's name (default: the module's class name).
    :param convert_kwargs: passed on to ``openvino.convert_model`` (e.g. ``input`` to give shapes yourself).
    :raises ModelConversionError: when the module cannot be traced or converted; the message names the failing
        operations and what to do.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if example_input is None:
        if dataset is None:
            raise ValueError(
                "convert_torch_model needs an example_input (a tensor, tuple or dict of tensors with "
                "the batch axis) or a dataset to take one from"
            )
        example_input = dataset_example_input(dataset)
    if "input" not in convert_kwargs:
        convert_kwargs["input"] = _input_shapes(example_input, dynamic_batch)
    ov_model = _convert_in_eval_mode(module, example_input, convert_kwargs)
    if input_names is not None:
        set_input_names(ov_model, input_names)
    return CompressedModel(ov_model, model_name=model_name or type(module).__name__)


def dataset_example_input(dataset: Any) -> Any:
    """The first item's model input as torch tensors with a batch axis (``TorchDataLoader.example_input``)."""
    loader = dataset if isinstance(dataset, TorchDataLoader) else TorchDataLoader(dataset)
    if len(loader) == 0:
        raise ValueError("the dataset is empty; give example_input or a dataset with at least one item")
    return loader.example_input(0)


def set_input_names(ov_model: ov.Model, input_names: Sequence[str]) -> None:
    """Name the model's inputs in order: Parameter friendly names and tensor names."""
    names = [str(name) for name in input_names]
    if len(names) != len(ov_model.inputs):
        current = [port.get_node().get_friendly_name() for port in ov_model.inputs]
        raise ValueError(
            f"input_names has {len(names)} names but the model has {len(current)} inputs {current}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"input_names must be unique, got {names}")
    for port, name in zip(ov_model.inputs, names):
        port.get_node().set_friendly_name(name)
        port.get_tensor().set_names({name})


def _input_shapes(example_input: Any, dynamic_batch: bool) -> Any:
    """``convert_model``'s ``input``: the example's shapes, with a dynamic first axis if asked."""

    def shape_of(tensor: Any) -> ov.PartialShape:
        dims = list(torch.as_tensor(tensor).shape)
        if dynamic_batch and dims:
            dims[0] = -1
        return ov.PartialShape(dims)

    if isinstance(example_input, dict):
        return {str(name): shape_of(value) for name, value in example_input.items()}
    if isinstance(example_input, (list, tuple)):
        return [shape_of(value) for value in example_input]
    return [shape_of(example_input)]


def _convert_in_eval_mode(
    module: torch.nn.Module, example_input: Any, convert_kwargs: Dict[str, Any]
) -> ov.Model:
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    try:
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)  # torch.jit.trace's deprecation notice
            return ov.convert_model(module, example_input=example_input, **convert_kwargs)
    except Exception as error:  # the frontend raises several unrelated types; all are reported alike
        raise conversion_error(module, error) from error
    finally:
        for submodule, training in modes:
            submodule.training = training


def conversion_error(module: torch.nn.Module, error: Exception) -> ModelConversionError:
    """Turn a ``convert_model`` failure into an error naming the failing operations and what to do."""
    text = str(error)
    name = type(module).__name__
    failed: List[str] = []
    for pattern in (_NO_RULE, _FAILED):
        for match in pattern.finditer(text):
            failed += [op.strip() for op in match.group(1).split(",") if op.strip() not in failed]
    unsupported = [op for op in failed if not op.startswith("prim::")] or failed
    if unsupported:
        details = "".join(
            f"\n  {op}: {message.strip()}" for op, message in _DETAIL.findall(text) if op in unsupported
        )
        message = (
            f"openvino.convert_model could not convert {name}: no conversion for "
            f"{', '.join(unsupported)}.{details}\nTo fix it: rewrite the code that uses "
            f"{unsupported[0]} in forward() with operations OpenVINO converts, or move it out of the "
            "model into pre/post-processing, or map the submodule holding it to supported operations "
            "with openvino.frontend.pytorch.ModuleExtension (passed as extension=... to "
            "convert_torch_model)."
        )
    else:
        cause = error.__cause__ or error
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        message = (
            f"openvino.convert_model could not trace {name}: {reason}\n"
            "To fix it: make forward() take the example input as given (a tensor, a tuple of tensors by "
            "position or a dict by argument name, with the batch axis) and return tensors or tuples/dicts "
            "of tensors; torch.jit.trace freezes Python control flow that depends on tensor values, so "
            "express such branches with tensor operations (torch.where)."
        )
    return ModelConversionError(message, unsupported)
