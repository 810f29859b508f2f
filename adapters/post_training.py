"""``quantize``: post-training INT8 quantization in one call, at the end of a training script."""
from __future__ import annotations

import copy
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import openvino as ov
import torch

from pot_torch.adapters.dataset import TorchDataLoader
from pot_torch.adapters.metric import FunctionMetric, TorchMetric
from pot_torch.adapters.model import convert_torch_model
from pot_torch.adapters.runtime_module import OpenVINOModule
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.api.data_loader import DataLoader
from pot_torch.api.metric import Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import Pipeline
from pot_torch.utils.logger import progress_enabled


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
    """

    model: CompressedModel
    fp32_model: CompressedModel
    fp32_metric: Optional[float] = None
    int8_metric: Optional[float] = None
    metric_name: Optional[str] = None
    quantization_time: float = 0.0
    reverted_layers: List[str] = field(default_factory=list)
    _module: Optional[OpenVINOModule] = field(default=None, repr=False)

    @property
    def module(self) -> OpenVINOModule:
        """An ``nn.Module`` running the INT8 model in OpenVINO: torch tensors in, torch tensors out."""
        if self._module is None:
            self._module = OpenVINOModule(self.model.get_model())
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


MetricLike = Union[Metric, Callable[..., float], Any]


def quantize(model: Union[torch.nn.Module, ov.Model, CompressedModel], calibration_dataset: Any,
             validation_dataset: Any = None, metric: Optional[MetricLike] = None, *,
             preset: str = "performance", subset_size: int = 300,
             ignored_scope: Union[Sequence[str], Dict[str, Any], None] = None, model_type: Optional[str] = None,
             maximal_drop: Optional[float] = None, drop_type: str = "absolute", progress: bool = False,
             seed: int = 0, example_input: Any = None, input_names: Optional[Sequence[str]] = None,
             transform_fn: Optional[Callable[[Any], Any]] = None, target_fn: Optional[Callable[[Any], Any]] = None,
             ) -> QuantizationResult:
    """Quantize a trained model to INT8 with OpenVINO, from the objects a training script already has.

    :param model: a ``torch.nn.Module`` (converted with ``openvino.convert_model``, dynamic batch), an
        ``openvino.Model`` or a ``CompressedModel``; never modified.
    :param calibration_dataset: data for the activation statistics: a torch ``Dataset``/``DataLoader``, an
        iterable with ``transform_fn``, or a POT ``DataLoader``.
    :param validation_dataset: data for the metric (default: the calibration data).
    :param metric: a torchmetrics-style object (``update``/``compute``/``reset``), a POT ``Metric`` or a
        function ``fn(preds, targets) -> float`` (higher is better).
    :param preset: ``'performance'`` or ``'mixed'``.
    :param subset_size: calibration samples used for statistics.
    :param ignored_scope: node names to leave in floating point, or POT's ``{'scope': [...], 'operations':
        [...]}``.
    :param model_type: ``'transformer'`` for transformer models.
    :param maximal_drop: the allowed metric drop; ``None`` runs DefaultQuantization, a number runs
        AccuracyAwareQuantization (needs ``metric``).
    :param drop_type: ``'absolute'`` or ``'relative'`` (with ``maximal_drop``).
    :param progress: show progress bars.
    :param seed: seed of every random choice, for reproducible models.
    :param example_input: the tracing input for a torch module (default: the first calibration item).
    :param input_names: names for the converted model's inputs.
    :param transform_fn: reads the model input from a raw data item (as ``nncf.Dataset``).
    :param target_fn: reads the annotation from a raw data item (with ``transform_fn``).
    """
    if maximal_drop is not None and metric is None:
        raise ValueError("maximal_drop needs a metric to measure the drop: pass metric=... (for example "
                         "torchmetrics.classification.MulticlassAccuracy(num_classes=10))")
    fp_model = _as_compressed_model(model, calibration_dataset, example_input, input_names, transform_fn)
    calibration = _as_loader(calibration_dataset, fp_model, transform_fn, target_fn)
    validation = calibration if validation_dataset is None else _as_loader(validation_dataset, fp_model,
                                                                           transform_fn, target_fn)
    pot_metric = None if metric is None else _as_metric(metric)
    params: Dict[str, Any] = {"preset": preset, "stat_subset_size": subset_size, "seed": seed,
                              "model_type": model_type}
    if ignored_scope:
        params["ignored"] = dict(ignored_scope) if isinstance(ignored_scope, dict) else {"scope": list(ignored_scope)}
    calibration_engine = IEEngine({"device": "CPU"}, calibration)
    evaluation_engine = IEEngine({"device": "CPU"}, validation, pot_metric)
    with progress_enabled(progress):
        started = time.perf_counter()
        if maximal_drop is None:
            algorithm: Any = DefaultQuantization(params, calibration_engine)
        else:
            params.update(maximal_drop=maximal_drop, drop_type=drop_type)
            algorithm = AccuracyAwareQuantization(params, evaluation_engine, calibration_engine)
        pipeline = Pipeline(calibration_engine)
        pipeline.add_algo(algorithm)
        int8_model = pipeline.run(fp_model)
        elapsed = time.perf_counter() - started
        result = QuantizationResult(int8_model, fp_model, quantization_time=elapsed,
                                    reverted_layers=list(getattr(algorithm, "reverted_layers", [])))
        if pot_metric is not None:
            _fill_metrics(result, algorithm, Pipeline(evaluation_engine))
    return result


def _as_compressed_model(model: Any, data: Any, example_input: Any, input_names: Optional[Sequence[str]],
                         transform_fn: Optional[Callable[[Any], Any]]) -> CompressedModel:
    if isinstance(model, CompressedModel):
        return model
    if isinstance(model, ov.Model):
        return CompressedModel(model)
    if isinstance(model, torch.nn.Module):
        if example_input is None and transform_fn is not None:
            example_input = TorchDataLoader(data, transform_fn=transform_fn).example_input()
        return convert_torch_model(model, example_input=example_input, dataset=data, input_names=input_names,
                                   dynamic_batch=True)
    raise TypeError(f"model must be a torch.nn.Module, an openvino.Model or a CompressedModel, "
                    f"got {type(model).__name__}")


def _as_loader(data: Any, model: CompressedModel, transform_fn: Optional[Callable[[Any], Any]],
               target_fn: Optional[Callable[[Any], Any]]) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    return TorchDataLoader(data, model=model, transform_fn=transform_fn, target_fn=target_fn)


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
