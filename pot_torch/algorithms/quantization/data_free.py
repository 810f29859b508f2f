"""``DataFreeQuantization``: DefaultQuantization on synthetic images, for a model with no calibration data.

As POT's data-free mode: ``subset_size`` (300) synthetic images are generated for the model's image input
(:mod:`~pot_torch.algorithms.quantization.synthetic_images`: colourized fractals, pixel values 0..255), and
``DefaultQuantization`` runs on them through an ``IEEngine`` of its own (the device and precision settings of
the pipeline's ``IEEngine`` when it has one, else the CPU). The input's shape comes from the model, or from the
``shape`` parameter when the model's is dynamic; its layout from ``layout``, the model's layout, or where the
1- or 3-sized channel axis is.

Synthetic images suit models that take images with their preprocessing inside (as Model Optimizer converted
them); for other inputs, or to use real images, quantize with ``DefaultQuantization`` and a data loader.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import openvino as ov
import openvino.opset13 as ops

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.params import ALGORITHM_PARAMS, Param, declare_params, resolve_params, sub_params
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.algorithms.quantization.synthetic_images import SyntheticImageLoader
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.image_folder import image_layout
from pot_torch.statistics.collector import Statistics, StatisticsRequest
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

NAME = "DataFreeQuantization"
LAYOUTS = ("NCHW", "NHWC", "CHW", "HWC")
#: POT's on-disk cache of the generated images; pot_torch generates them in memory on every run.
_DISK_CACHE_KEYS = ("data_source", "generate_data")


def _shape(value: Any) -> Optional[str]:
    if isinstance(value, (list, tuple)) and len(value) in (3, 4) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
        return None
    return "expected the image input's shape as 3 or 4 positive integers, e.g. [1, 3, 224, 224]"


def _subset_size(value: Any) -> Optional[str]:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "expected a positive integer, the number of synthetic images (e.g. 300)"


declare_params(NAME, {**ALGORITHM_PARAMS["DefaultQuantization"],
                      "shape": Param(None, check=_shape),
                      "layout": Param(None, choices=(None,) + LAYOUTS),
                      "data_type": Param("image", choices=("image",)),
                      "subset_size": Param(300, check=_subset_size)})


def _input_name(port: ov.Output) -> str:
    return port.get_any_name() if port.get_names() else port.get_node().get_friendly_name()


def image_input_shape(model: ov.Model, shape: Optional[Sequence[int]]) -> List[int]:
    """The shape of the single image input of ``model`` the synthetic images are made for.

    :raises ValueError: the model has several inputs; its input shape is dynamic beyond the batch axis and
        ``shape`` is not given; ``shape`` does not fit the input.
    """
    if len(model.inputs) != 1:
        names = [_input_name(port) for port in model.inputs]
        raise ValueError(f"{NAME} generates images for a model with one image input; this model has "
                         f"{len(names)} inputs {names}: quantize it with DefaultQuantization and a DataLoader")
    port = model.inputs[0]
    partial, name = port.get_partial_shape(), _input_name(port)
    if shape is not None:
        if not partial.compatible(ov.PartialShape(list(shape))):
            raise ValueError(f"'shape' {list(shape)} does not fit model input '{name}' of shape {partial}; give "
                             "a shape of the same rank whose static dimensions match")
        return list(shape)
    if partial.rank.is_dynamic or any(dim.is_dynamic for dim in list(partial)[1:]):
        raise ValueError(f"model input '{name}' has the dynamic shape {partial}; {NAME} needs the image size: "
                         f"give it as the 'shape' parameter, e.g. {{'shape': [1, 3, 224, 224]}} (or reshape the "
                         "model to a static shape with model.reshape before quantizing)")
    return [dim.get_length() if dim.is_static else 1 for dim in partial]


def image_input_layout(model: ov.Model, shape: Sequence[int], layout: Optional[str]) -> str:
    """``layout`` if given, else the model input's layout or the one its channel axis (1 or 3) implies."""
    name = _input_name(model.inputs[0])
    if len(shape) not in (3, 4):
        raise ValueError(f"model input '{name}' has the shape {list(shape)}; {NAME} generates images for inputs "
                         "[N, C, H, W], [N, H, W, C] or without the batch axis: quantize other models with "
                         "DefaultQuantization and a DataLoader")
    if layout is None:
        probe = ops.parameter(list(shape), ov.Type.f32, name=name)
        probe.set_layout(ov.layout_helpers.get_layout(model.inputs[0]))
        try:
            layout = image_layout(probe.output(0))
        except ValueError as error:
            raise ValueError(f"{error}; or give {NAME} the 'layout' parameter, one of {LAYOUTS}") from error
    if len(layout) != len(shape):
        raise ValueError(f"layout '{layout}' has {len(layout)} axes but the shape {list(shape)} of model input "
                         f"'{name}' has {len(shape)}; give a 'layout' among {LAYOUTS} of that rank")
    channels = shape[layout.index("C")]
    if channels not in (1, 3):
        raise ValueError(f"model input '{name}' with shape {list(shape)} and layout {layout} has {channels} "
                         "channels; synthetic images have 1 (grey) or 3 (BGR): set 'layout' if the channel "
                         "axis is elsewhere, or quantize with DefaultQuantization and a DataLoader")
    return layout


@COMPRESSION_ALGORITHMS.register(NAME)
class DataFreeQuantization(Algorithm):
    """DefaultQuantization on synthetic images generated for the model's image input.

    Parameters: those of ``DefaultQuantization`` (``stat_subset_size`` and ``shuffle_data`` pick among the
    generated images; ``seed`` also seeds the generation), plus POT's data-free ones: ``shape`` (None: the
    model's), ``layout`` (None: the model's or guessed), ``data_type`` (``'image'``, the only one POT had) and
    ``subset_size`` (300 images). The pipeline's engine needs no data loader.
    """

    change_original_model = True

    def __init__(self, config: Any, engine: Any) -> None:
        given = dict(config or {})
        cached = [key for key in _DISK_CACHE_KEYS if key in given]
        if cached:
            raise ValueError(f"{NAME} does not take {cached}: POT stored the generated images in a folder, "
                             "pot_torch generates them in memory on every run (the same images for the same "
                             "'seed'). Remove the parameter(s); to quantize on a folder of images, use "
                             "DefaultQuantization with an image-folder data loader (pot-torch quantize --data DIR)")
        super().__init__(resolve_params(NAME, given), engine)

    def statistics_requests(self, model: Any) -> List[StatisticsRequest]:
        """None: ``run`` generates its data and collects its statistics itself."""
        return []

    def run(self, model: CompressedModel, statistics: Optional[List[Statistics]] = None) -> CompressedModel:
        """Quantize ``model`` (edited in place) on synthetic images and return it; ``statistics`` is not used."""
        if model.is_cascade:
            raise ValueError(f"{NAME} quantizes one model; this is a cascade of {model.member_names}: quantize "
                             "each member on its own or use DefaultQuantization with the cascade's data loader")
        ov_model = model.get_model()
        shape = image_input_shape(ov_model, self.config.shape)
        layout = image_input_layout(ov_model, shape, self.config.layout)
        loader = SyntheticImageLoader(shape, layout, int(self.config.subset_size), int(self.config.seed))
        logger.info("%s: %d synthetic images of shape %s (%s)", NAME, len(loader), shape, layout)
        quantizer = DefaultQuantization(sub_params(self.config, "DefaultQuantization"), self._engine_for(loader))
        return quantizer.run(model)

    def _engine_for(self, loader: SyntheticImageLoader) -> IEEngine:
        if getattr(self.engine, "data_loader", None) is not None:
            logger.warning("%s calibrates on synthetic images, not on the engine's data loader; to calibrate on "
                           "that data, use DefaultQuantization", NAME)
        config = dict(self.engine.config) if isinstance(self.engine, IEEngine) else {"device": "CPU"}
        return IEEngine(config, loader)
