"""``quantize``: post-training INT8 quantization in one call, at the end of a training script."""
from __future__ import annotations

import copy
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import openvino as ov
import torch

from pot_torch.adapters.dataset import TorchDataLoader
from pot_torch.adapters.metric import FunctionMetric, TorchMetric
from pot_torch.adapters.model import InputShapes, convert_torch_model, dataset_example_input, forward_inputs
from pot_torch.adapters.runtime_module import OpenVINOModule
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization, Candidate, StartingPoint
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import Pipeline
from pot_torch.utils.logger import get_logger, progress_enabled

logger = get_logger(__name__)


@dataclass
class QuantizationResult:
    """What ``quantize`` produced.

    :ivar model: the INT8 ``CompressedModel``.
    :ivar fp32_model: the floating-point ``CompressedModel`` it was made from.
    :ivar fp32_metric: the metric of the FP model on the validation data (``None`` without a metric).
    :ivar int8_metric: the metric of the INT8 model on the validation data (``None`` without a metric).
    :ivar metric_name: which metric the two values are.
    :ivar quantization_time: seconds spent quantizing (statistics, algorithms, accuracy search).
    :ivar reverted_layers: layers accuracy control left in floating point.
    :ivar forward_arguments: for a torch module, which model input each ``forward()`` argument feeds (in
        ``forward()``'s order), so that ``module`` takes positional arguments as the torch module did.
    """

    model: CompressedModel
    fp32_model: CompressedModel
    fp32_metric: Optional[float] = None
    int8_metric: Optional[float] = None
    metric_name: Optional[str] = None
    quantization_time: float = 0.0
    reverted_layers: List[str] = field(default_factory=list)
    forward_arguments: Optional[Dict[str, Optional[str]]] = None
    _module: Optional[OpenVINOModule] = field(default=None, repr=False)
    #: (validation engine, calibration engine, quantization parameters, what quantizing measured) for ``report``;
    #: None without a metric
    _report_inputs: Optional[Tuple[IEEngine, IEEngine, Dict[str, Any], StartingPoint]] = field(
        default=None, repr=False)

    @property
    def module(self) -> OpenVINOModule:
        """An ``nn.Module`` running the INT8 model in OpenVINO: torch tensors in, torch tensors out.

        Positional arguments follow the original torch module's ``forward()`` (``forward_arguments``); keyword
        arguments are model input names.
        """
        if self._module is None:
            self._module = OpenVINOModule(self.model.get_model(), forward_arguments=self.forward_arguments)
        return self._module

    def save(self, path: Union[str, pathlib.Path], compress_weights: bool = True) -> List[Dict[str, str]]:
        """Write the INT8 model as IR: ``path`` ending in ``.xml`` names the file, otherwise it is a folder
        (``<folder>/<model name>.xml``). Weights are stored as INT8 unless ``compress_weights`` is False.

        :returns: ``[{'model': xml path, 'weights': bin path}]`` as ``save_model`` gives it.
        """
        path = pathlib.Path(path)
        model = copy.deepcopy(self.model)
        if compress_weights:
            compress_model_weights(model)
        if path.suffix == ".xml":
            return save_model(model, str(path.parent), model_name=path.stem)
        return save_model(model, str(path))

    def report(self, path: Union[str, pathlib.Path], maximal_drop: Optional[float] = None,
               overwrite: bool = False) -> pathlib.Path:
        """Write the quantization report (``pot_torch.report``) to ``path`` (.html) and the same data as JSON
        beside it: per quantizer group the metric it costs, its SQNR, its share of INT8 time, and the smallest
        set of groups to keep in floating point to meet ``maximal_drop`` (default: the one given to
        ``quantize``, else 0.01). It starts from the DefaultQuantization model ``quantize`` made (and, after
        AccuracyAwareQuantization, its FP and INT8 evaluations), then evaluates per group; the cost is logged.

        :returns: the path of the HTML page.
        :raises ValueError: ``quantize`` was called without a metric.
        :raises FileExistsError: the report exists and ``overwrite`` is False.
        """
        from pot_torch.report import build_report, report_paths, write_report

        if self._report_inputs is None:
            raise ValueError("the report measures the metric per layer: call quantize(..., metric=...) with a "
                             "metric and validation data first")
        report_paths(path, overwrite)
        engine, calibration, params, start = self._report_inputs
        params = {**params, **start.int8.overrides}
        if maximal_drop is not None:
            params["maximal_drop"] = maximal_drop
        report = build_report(self.fp32_model, engine, params, calibration, start=start)
        return write_report(report, path, overwrite)[0]


MetricLike = Union[Metric, Callable[..., float], Any]


def quantize(model: Union[torch.nn.Module, ov.Model, CompressedModel], calibration_dataset: Any,
             validation_dataset: Any = None, metric: Optional[MetricLike] = None, *,
             preset: Optional[str] = None, subset_size: int = 300,
             ignored_scope: Union[str, Sequence[str], Dict[str, Any], None] = None, model_type: Optional[str] = None,
             maximal_drop: Optional[float] = None, drop_type: str = "absolute", progress: bool = False,
             seed: int = 0, example_input: Any = None, input_names: Union[str, Sequence[str], None] = None,
             input_shapes: Optional[InputShapes] = None, transform_fn: Optional[Callable[[Any], Any]] = None,
             target_fn: Optional[Callable[[Any], Any]] = None) -> QuantizationResult:
    """Quantize a trained model to INT8 with OpenVINO, from the objects a training script already has.

    :param model: a ``torch.nn.Module`` (converted with ``openvino.convert_model``, dynamic batch; see
        ``convert_torch_model`` for which other axes become dynamic), an ``openvino.Model`` or a
        ``CompressedModel``; never modified.
    :param calibration_dataset: data for the activation statistics: a torch ``Dataset``/``DataLoader``, an
        iterable with ``transform_fn``, or a POT ``DataLoader``.
    :param validation_dataset: data for the metric (default: the calibration data).
    :param metric: a torchmetrics-style object (``update``/``compute``/``reset``), a POT ``Metric`` or a
        function ``fn(preds, targets) -> float`` (higher is better).
    :param preset: ``'performance'`` or ``'mixed'``; default: the model type's (``'mixed'`` for
        ``'transformer'``), else ``'performance'``.
    :param subset_size: calibration samples used for statistics.
    :param ignored_scope: node names to leave in floating point (one name as a string, or a list), or POT's
        ``{'scope': [...], 'operations': [...]}``.
    :param model_type: ``'transformer'`` for transformer models.
    :param maximal_drop: the allowed metric drop; ``None`` runs DefaultQuantization, a number runs
        AccuracyAwareQuantization (needs ``metric``).
    :param drop_type: ``'absolute'`` or ``'relative'`` (with ``maximal_drop``).
    :param progress: show progress bars.
    :param seed: seed of every random choice, for reproducible models.
    :param example_input: the tracing input for a torch module (default: the first calibration item).
    :param input_names: names for the converted model's inputs.
    :param input_shapes: input shapes for converting a torch module, -1 for a dynamic axis: ``{input name:
        shape}`` or a list by position (e.g. ``{'input_ids': [-1, 128]}``); wins over the inferred ones.
    :param transform_fn: reads the model input from a raw data item (as ``nncf.Dataset``).
    :param target_fn: reads the annotation from a raw data item (with ``transform_fn``).
    """
    if maximal_drop is not None and metric is None:
        raise ValueError("maximal_drop needs a metric to measure the drop: pass metric=... (for example "
                         "torchmetrics.classification.MulticlassAccuracy(num_classes=10))")
    conversion = {"example_input": example_input, "input_names": input_names, "input_shapes": input_shapes}
    calibration = _as_loader(calibration_dataset, "calibration_dataset", transform_fn, target_fn)
    validation = calibration if validation_dataset is None else _as_loader(
        validation_dataset, "validation_dataset", transform_fn, target_fn)
    fp_model, forward_arguments = _as_compressed_model(model, calibration, conversion)
    calibration = _for_model(calibration, fp_model)
    validation = calibration if validation_dataset is None else _for_model(validation, fp_model)
    pot_metric = None if metric is None else _as_metric(metric)
    params: Dict[str, Any] = {"stat_subset_size": subset_size, "seed": seed, "model_type": model_type}
    if preset is not None:
        params["preset"] = preset
    if ignored_scope:
        params["ignored"] = _ignored_params(ignored_scope)
    calibration_engine = IEEngine({"device": "CPU"}, calibration)
    evaluation_engine = IEEngine({"device": "CPU"}, validation, pot_metric)
    with progress_enabled(progress):
        started = time.perf_counter()
        if maximal_drop is None:
            algorithm: Any = DefaultQuantization(params, calibration_engine)
        else:
            params.update(maximal_drop=maximal_drop, drop_type=drop_type)
            algorithm = AccuracyAwareQuantization(params, evaluation_engine, calibration_engine)
        if preset is None:
            logger.info("preset '%s' (the default%s)", algorithm.config.preset,
                        f" of model_type '{model_type}'" if model_type else "")
        pipeline = Pipeline(calibration_engine)
        pipeline.add_algo(algorithm)
        int8_model = pipeline.run(fp_model)
        elapsed = time.perf_counter() - started
        result = QuantizationResult(int8_model, fp_model, quantization_time=elapsed,
                                    reverted_layers=list(getattr(algorithm, "reverted_layers", [])),
                                    forward_arguments=forward_arguments)
        if pot_metric is not None:
            _fill_metrics(result, algorithm, Pipeline(evaluation_engine))
            start = (algorithm.starting_point if isinstance(algorithm, AccuracyAwareQuantization)
                     else StartingPoint(Candidate(int8_model, 0.0, 0.0)))
            result._report_inputs = (evaluation_engine, calibration_engine, dict(params), start)
    return result


def _as_compressed_model(model: Any, data: DataLoader, conversion: Dict[str, Any]
                         ) -> Tuple[CompressedModel, Optional[Dict[str, Optional[str]]]]:
    """The model as a ``CompressedModel``, and for a torch module which input each forward() argument feeds."""
    if not isinstance(model, torch.nn.Module):
        given = [name for name, value in conversion.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to converting a torch.nn.Module, but model is a "
                             f"{type(model).__name__}; leave them out (reshape an openvino.Model with "
                             "model.reshape(...) before quantizing)")
    if isinstance(model, CompressedModel):
        return model, None
    if isinstance(model, ov.Model):
        return CompressedModel(model), None
    if isinstance(model, torch.nn.Module):
        example_input = conversion["example_input"]
        if example_input is None:
            example_input = dataset_example_input(data)
        converted = convert_torch_model(model, example_input=example_input, dataset=data,
                                        input_names=conversion["input_names"], dynamic_batch=True,
                                        input_shapes=conversion["input_shapes"])
        return converted, forward_inputs(model, example_input, converted)
    raise TypeError(f"model must be a torch.nn.Module, an openvino.Model or a CompressedModel, "
                    f"got {type(model).__name__}")


def _as_loader(data: Any, what: str, transform_fn: Optional[Callable[[Any], Any]],
               target_fn: Optional[Callable[[Any], Any]]) -> DataLoader:
    """``data`` as a POT data loader (not yet tied to the model); an empty one is refused."""
    loader = data if isinstance(data, DataLoader) else TorchDataLoader(data, transform_fn=transform_fn,
                                                                       target_fn=target_fn)
    if len(loader) == 0:
        raise ValueError(f"{what} is empty; give at least one item (quantization statistics and metrics are "
                         "computed on the data set's items)")
    return loader


def _for_model(loader: DataLoader, model: CompressedModel) -> DataLoader:
    """A ``TorchDataLoader`` mapping its items to ``model``'s inputs; a POT data loader as it is."""
    return loader.for_model(model) if isinstance(loader, TorchDataLoader) else loader


def _ignored_params(ignored_scope: Union[str, Sequence[str], Dict[str, Any]]) -> Dict[str, Any]:
    """``quantize``'s ``ignored_scope`` as POT's ``ignored`` parameter; a string is one node name."""
    if isinstance(ignored_scope, dict):
        return dict(ignored_scope)
    return {"scope": [ignored_scope] if isinstance(ignored_scope, str) else list(ignored_scope)}


def _as_metric(metric: MetricLike) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if all(callable(getattr(metric, name, None)) for name in ("update", "compute", "reset")):
        return TorchMetric(metric)
    if callable(metric):
        return FunctionMetric(metric, name=getattr(metric, "__name__", "metric"))
    return TorchMetric(metric)  # raises the TypeError that names the missing methods


def _fill_metrics(result: QuantizationResult, algorithm: Any, evaluator: Pipeline) -> None:
    if isinstance(algorithm, AccuracyAwareQuantization):  # it measured both already
        result.metric_name = algorithm.metric_name
        result.fp32_metric, result.int8_metric = algorithm.fp_metric, algorithm.final_metric
        return
    fp_values = evaluator.evaluate(result.fp32_model)
    result.metric_name = next(iter(fp_values))
    result.fp32_metric = float(fp_values[result.metric_name])
    result.int8_metric = float(evaluator.evaluate(result.model)[result.metric_name])
