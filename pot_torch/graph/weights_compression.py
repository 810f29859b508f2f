"""Storing fake-quantized weights as INT8: ``compress_model_weights``."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List

import openvino as ov
from openvino._offline_transformations import compress_quantize_weights_transformation

from pot_torch.graph.nx_model import CompressedModel
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)


def compress_model_weights(model: CompressedModel) -> None:
    """Store the weights behind FakeQuantize ops as 8-bit integers, in place, in every model of ``model``.

    Each ``Constant -> FakeQuantize`` on weights becomes ``Constant (i8/u8) -> Convert -> [Subtract (zero
    point)] -> Multiply (scale)`` (OpenVINO's ``compress_quantize_weights_transformation``); the result is
    numerically the fake-quantized weights, and saved IR files shrink about four times. The op that replaces
    a FakeQuantize keeps its friendly name; the new helper ops are named ``<that name>/<op type>`` so that
    saving gives the same files every time. FakeQuantize ops on activations are left alone. A model with no
    FakeQuantize on constants is left unchanged (a warning is logged).

    Like POT, this edits the ``openvino.Model`` objects of ``model`` in place and returns ``None``; call it on
    a ``copy.deepcopy`` to keep the original.
    """
    if not isinstance(model, CompressedModel):
        raise TypeError(f"compress_model_weights expects a CompressedModel, got {type(model).__name__}; "
                        "wrap an openvino.Model with pot_torch.CompressedModel(model)")
    for member in model.models:
        ov_model = member["model"]
        count = len(weight_fake_quantizes(ov_model))
        if count == 0:
            logger.warning("compress_model_weights: model '%s' has no FakeQuantize on constant weights; "
                           "nothing to compress (quantize the model first)", member["name"])
            continue
        _compress(ov_model)
        left = len(weight_fake_quantizes(ov_model))
        logger.info("compress_model_weights: model '%s': %d of %d weight FakeQuantize ops stored as integers",
                    member["name"], count - left, count)


def compress_weights(model: ov.Model) -> None:
    """POT's pass of the same name: ``compress_model_weights`` on one ``openvino.Model``, in place."""
    if not isinstance(model, ov.Model):
        raise TypeError(f"compress_weights expects an openvino.Model, got {type(model).__name__}; for a "
                        "CompressedModel call compress_model_weights")
    _compress(model)


def weight_fake_quantizes(model: ov.Model) -> List[ov.Node]:
    """The FakeQuantize ops of ``model`` whose data input is a constant (possibly through a Convert)."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        source = op.input_value(0).get_node()
        if source.get_type_name() == "Convert":
            source = source.input_value(0).get_node()
        if source.get_type_name() == "Constant":
            found.append(op)
    return found


def _compress(model: ov.Model) -> None:
    before = {op.get_instance_id() for op in model.get_ops()}
    old_names = {op.get_friendly_name() for op in model.get_ops()}
    compress_quantize_weights_transformation(model)
    model.validate_nodes_and_infer_types()
    _name_new_ops(model, before, old_names)


def _name_new_ops(model: ov.Model, before: set, old_names: set) -> None:
    """Give ops the transformation created with counter-based names a name derived from their consumer."""
    ordered = model.get_ordered_ops()
    position: Dict[int, int] = {op.get_instance_id(): i for i, op in enumerate(ordered)}
    taken = Counter(op.get_friendly_name() for op in ordered)
    root: Dict[int, str] = {}
    for op in reversed(ordered):
        name = op.get_friendly_name()
        if op.get_instance_id() in before or (name in old_names and taken[name] == 1):
            continue  # an original op, or the op that took over a FakeQuantize's name
        consumers = [target.get_node() for output in op.outputs() for target in output.get_target_inputs()]
        if not consumers:
            continue
        consumer = min(consumers, key=lambda node: position[node.get_instance_id()])
        base = root.get(consumer.get_instance_id(), consumer.get_friendly_name())
        root[op.get_instance_id()] = base
        name = f"{base}/{op.get_type_name()}"
        suffix = 0
        while taken[name] > 0:
            suffix += 1
            name = f"{base}/{op.get_type_name()}_{suffix}"
        taken[op.get_friendly_name()] -= 1
        taken[name] += 1
        op.set_friendly_name(name)
