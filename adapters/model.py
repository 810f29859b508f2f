"""``convert_torch_model``: a ``torch.nn.Module`` as a ``CompressedModel``, via ``openvino.convert_model``."""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import openvino as ov
import torch

from pot_torch.adapters.dataset import TorchDataLoader
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

#: Input shapes as ``convert_torch_model`` and ``quantize`` take them: ``{input name: shape}`` or a list by
#: position; a shape is a list of axis sizes with -1 (or None) for a dynamic axis, or an ``ov.PartialShape``.
InputShapes = Union[Dict[str, Any], Sequence[Any]]

#: How many data set items ``convert_torch_model`` compares to find axes whose size varies.
SHAPE_SAMPLE_ITEMS = 8

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
    input_names: Union[str, Sequence[str], None] = None,
    dynamic_batch: bool = False,
    model_name: Optional[str] = None,
    input_shapes: Optional[InputShapes] = None,
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
    :param input_names: names for the model's inputs, in order (default: the ``forward`` argument names, or
        the example dict's keys). Both the Parameter friendly names and tensor names are set.
    :param dynamic_batch: make the first axis of every input dynamic (-1).
    :param model_name: the model's name (default: the module's class name).
    :param input_shapes: the input shapes to convert with, -1 (or None) for a dynamic axis: a dict by input
        name (the example dict's keys or ``forward``'s argument names) or a list by position, for some or all
        inputs. They win over everything inferred below.
    :param convert_kwargs: passed on to ``openvino.convert_model`` (its ``input``, if given, is used as it is).
    :raises ModelConversionError: when the module cannot be traced or converted; the message names the failing
        operations and what to do.

    Without ``input_shapes``, an input keeps the example's shape except: the batch axis with
    ``dynamic_batch``; the length axis of integer inputs of shape [batch, length] (token ids, attention masks:
    text comes in different lengths); and any axis whose size differs across the first
    ``SHAPE_SAMPLE_ITEMS`` items of ``dataset``. Each axis made dynamic this way is logged (INFO) with the
    reason.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if "input" in convert_kwargs and input_shapes is not None:
        raise TypeError("give the input shapes once: input_shapes=... or convert_model's input=..., not both")
    if example_input is None:
        if dataset is None:
            raise ValueError(
                "convert_torch_model needs an example_input (a tensor, tuple or dict of tensors with "
                "the batch axis) or a dataset to take one from"
            )
        example_input = dataset_example_input(dataset)
    if "input" not in convert_kwargs:
        samples = _dataset_samples(dataset) if dataset is not None else []
        convert_kwargs["input"] = conversion_shapes(module, example_input, dynamic_batch, input_shapes, samples)
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


def _dataset_samples(dataset: Any) -> List[Any]:
    """The model inputs of the first ``SHAPE_SAMPLE_ITEMS`` items of ``dataset`` (``example_input`` form)."""
    loader = dataset if isinstance(dataset, TorchDataLoader) else TorchDataLoader(dataset)
    return [loader.example_input(index) for index in range(min(len(loader), SHAPE_SAMPLE_ITEMS))]


def set_input_names(ov_model: ov.Model, input_names: Union[str, Sequence[str]]) -> None:
    """Name the model's inputs in order: Parameter friendly names and tensor names (a string names one)."""
    names = [input_names] if isinstance(input_names, str) else [str(name) for name in input_names]
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


def forward_argument_names(module: torch.nn.Module) -> List[str]:
    """The names ``module.forward`` takes by position, in order (up to ``*args`` or keyword-only ones)."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # a forward without a readable signature
        return []
    names = []
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    return names


def example_entries(module: torch.nn.Module, example_input: Any) -> List[Tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of each model input the example gives, in the order the converted model has them.

    Dict examples give their keys (``convert_model`` keeps the dict's order); tensors and tuples are named by
    ``forward``'s arguments at their positions.
    """
    if isinstance(example_input, dict):
        return [(str(name), torch.as_tensor(value)) for name, value in example_input.items()]
    values = list(example_input) if isinstance(example_input, (list, tuple)) else [example_input]
    arguments = forward_argument_names(module)
    return [(arguments[i] if i < len(arguments) else f"input {i}", torch.as_tensor(value))
            for i, value in enumerate(values)]


def conversion_shapes(module: torch.nn.Module, example_input: Any, dynamic_batch: bool,
                      input_shapes: Optional[InputShapes] = None, samples: Sequence[Any] = ()) -> Any:
    """``convert_model``'s ``input``: each input's shape, decided as ``convert_torch_model`` documents."""
    entries = example_entries(module, example_input)
    given = _given_shapes(input_shapes, [name for name, _ in entries])
    sample_entries = [example_entries(module, sample) for sample in samples]
    shapes = []
    for position, (name, tensor) in enumerate(entries):
        if name in given:
            shapes.append(given[name])
            continue
        dims = list(tensor.shape)
        reasons: Dict[int, str] = {}
        if dynamic_batch and dims:
            reasons[0] = "batch axis"
        if len(dims) == 2 and not (tensor.is_floating_point() or tensor.is_complex()):
            reasons.setdefault(1, "length axis of an integer [batch, length] input, as token ids and masks are")
        for axis in range(len(dims)):
            sizes = {tuple(sample[position][1].shape)[axis] for sample in sample_entries
                     if position < len(sample) and sample[position][1].dim() == len(dims)}
            if len(sizes | {dims[axis]}) > 1:
                reasons.setdefault(axis, f"sizes {sorted(sizes | {dims[axis]})} in the first {len(samples)} items")
        for axis, reason in sorted(reasons.items()):
            dims[axis] = -1
            if reason != "batch axis":
                logger.info("input '%s': axis %d is dynamic (%s); give input_shapes=... to choose yourself",
                            name, axis, reason)
        shapes.append(ov.PartialShape(dims))
    if isinstance(example_input, dict):
        return {name: shape for (name, _), shape in zip(entries, shapes)}
    return shapes


def _given_shapes(input_shapes: Optional[InputShapes], names: List[str]) -> Dict[str, ov.PartialShape]:
    """``input_shapes`` as ``{input name: PartialShape}``; unknown names and bad shapes are refused."""
    if input_shapes is None:
        return {}
    if isinstance(input_shapes, dict):
        unknown = [name for name in input_shapes if str(name) not in names]
        if unknown:
            raise ValueError(f"input_shapes names {unknown}, which are not inputs of the example; its inputs "
                             f"are {names}")
        items = [(str(name), shape) for name, shape in input_shapes.items()]
    elif isinstance(input_shapes, (list, tuple)) and all(_is_shape(shape) for shape in input_shapes):
        if len(input_shapes) > len(names):
            raise ValueError(f"input_shapes gives {len(input_shapes)} shapes but the example has "
                             f"{len(names)} inputs {names}")
        items = list(zip(names, input_shapes))
    else:
        raise TypeError(f"input_shapes must be a dict {{input name: shape}} or a list of shapes, with -1 for a "
                        f"dynamic axis (e.g. {{'{names[0] if names else 'input_ids'}': [-1, -1]}}), "
                        f"got {input_shapes!r}")
    for name, shape in items:
        if not _is_shape(shape):
            raise TypeError(f"input_shapes['{name}'] must be a list of axis sizes with -1 for a dynamic axis "
                            f"(e.g. [-1, 128]), got {shape!r}")
    return {name: ov.PartialShape([-1 if dim is None else int(dim) for dim in shape])
            if not isinstance(shape, ov.PartialShape) else shape for name, shape in items}


def _is_shape(shape: Any) -> bool:
    if isinstance(shape, ov.PartialShape):
        return True
    return isinstance(shape, (list, tuple, torch.Size)) and all(
        dim is None or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= -1) for dim in shape)


def forward_inputs(module: torch.nn.Module, example_input: Any, model: Union[ov.Model, CompressedModel]
                   ) -> Dict[str, Optional[str]]:
    """Which model input each ``forward`` argument feeds, in ``forward``'s order (``None``: not an input).

    For ``OpenVINOModule``'s positional arguments: the converted model's inputs follow the example, and a
    dict's key order need not be ``forward``'s order (a tuple's is). With a dict example and a ``forward``
    without named arguments the result is empty: positional arguments would be ambiguous.
    """
    if isinstance(model, CompressedModel):
        model = model.get_model()
    names = [port.get_any_name() for port in model.inputs]
    by_entry = {name: names[i] for i, (name, _) in enumerate(example_entries(module, example_input))
                if i < len(names)}
    if not isinstance(example_input, dict):
        return by_entry
    return {argument: by_entry.get(argument) for argument in forward_argument_names(module)}


def _convert_in_eval_mode(
    module: torch.nn.Module, example_input: Any, convert_kwargs: Dict[str, Any]
) -> ov.Model:
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    # ovc's convert_model sets the root logger to ERROR and restores it only when it succeeds: after a failed
    # conversion every warning of the process (pot_torch's included) would go unseen
    root_level = logging.root.level
    try:
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)  # torch.jit.trace's deprecation notice
            return ov.convert_model(module, example_input=example_input, **convert_kwargs)
    except Exception as error:  # the frontend raises several unrelated types; all are reported alike
        raise conversion_error(module, error) from error
    finally:
        logging.root.setLevel(root_level)
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
