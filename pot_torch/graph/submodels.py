"""Models made from parts of others, as POT's ``graph.model_utils`` made them: ``build_model_for_node`` (one
layer with its weights) and ``models_union`` (two models side by side)."""
from __future__ import annotations

from typing import Dict, Sequence, Union

import numpy as np
import openvino as ov
import openvino.opset13 as opset

from pot_torch.graph.editor import copy_node
from pot_torch.graph.hardware.config import check_target_device
from pot_torch.graph.layer_patterns import find_bias_add
from pot_torch.graph.nx_model import CompressedModel


def build_model_for_node(nx_model: CompressedModel, input_name: str, input_shape: Sequence[int],
                         node: Union[ov.Node, str], remove_bias: bool = False, remove_fake_quantize: bool = False,
                         target_device: str = "ANY") -> CompressedModel:
    """A one-layer model ``input -> node (with its weights) [-> bias Add] -> output``, as POT's bias correction
    built it.

    :param nx_model: the model that holds ``node``.
    :param input_name: name of the new model's input, which feeds input 0 of ``node``.
    :param input_shape: shape of that input.
    :param node: the layer (an ``openvino.Node`` of ``nx_model`` or its friendly name); its other inputs must
        be computed from constants (weights), which are copied with the ops between.
    :param remove_bias: leave out the bias ``Add`` that follows the layer (kept by default).
    :param remove_fake_quantize: copy the weights without their FakeQuantize ops.
    :param target_device: checked as ``load_model`` checks it.
    :raises KeyError: no op of ``nx_model`` has that name.
    :raises ValueError: an input of ``node`` other than input 0 depends on a model input.
    """
    check_target_device(target_device)
    if isinstance(node, str):
        from pot_torch.graph.model_utils import get_node_by_name  # model_utils imports this module

        name, node = node, get_node_by_name(nx_model, node)
        if node is None:
            raise KeyError(f"build_model_for_node: the model has no op named '{name}'")
    parameter = opset.parameter(list(input_shape), node.get_input_element_type(0), name=input_name)
    copies: Dict[int, ov.Node] = {}
    inputs = [parameter.output(0)] + [_copy_constant_path(node.input_value(port), remove_fake_quantize, copies)
                                      for port in range(1, node.get_input_size())]
    layer = copy_node(node, inputs)
    layer.set_friendly_name(node.get_friendly_name())
    output = layer.output(0)
    bias = None if remove_bias else find_bias_add(node)
    if bias is not None:
        bias_inputs = [output, _copy_constant_path(bias.add.input_value(bias.port), remove_fake_quantize, copies)]
        add = copy_node(bias.add, bias_inputs if bias.port == 1 else bias_inputs[::-1])
        add.set_friendly_name(bias.add.get_friendly_name())
        output = add.output(0)
    result = opset.result(output)
    result.set_friendly_name(f"{node.get_friendly_name()}/out")
    return CompressedModel(ov.Model([result], [parameter], f"{node.get_friendly_name()}_model"))


def _copy_constant_path(output: ov.Output, remove_fake_quantize: bool, copies: Dict[int, ov.Node]) -> ov.Output:
    """A copy of the constant sub-graph computing ``output`` (FakeQuantize ops skipped if asked)."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "FakeQuantize" and remove_fake_quantize:
        return _copy_constant_path(node.input_value(0), remove_fake_quantize, copies)
    if kind == "Parameter":
        raise ValueError(f"build_model_for_node: the layer reads model input '{node.get_friendly_name()}' on an "
                         "input other than input 0; only input 0 can come from the new model's input")
    key = node.get_instance_id()
    if key not in copies:
        if kind == "Constant":
            copy = opset.constant(np.array(node.get_data(), copy=True))
        else:
            copy = copy_node(node, [_copy_constant_path(value, remove_fake_quantize, copies)
                                    for value in node.input_values()])
        copy.set_friendly_name(node.get_friendly_name())
        copies[key] = copy
    return copies[key].output(output.get_index())


def models_union(first_model: CompressedModel, second_model: CompressedModel) -> CompressedModel:
    """Put each member of ``second_model`` beside the member of ``first_model`` at the same position: one
    ``openvino.Model`` with the inputs and outputs of both. ``first_model`` is changed and returned, as POT's
    ``models_union`` did; the two models share their ops with the union.

    :raises ValueError: the models have different numbers of members, or two members share an op name (POT's
        union needed distinct names too: rename one model's ops first).
    """
    if len(first_model.models) != len(second_model.models):
        raise ValueError(f"models_union: the models have {len(first_model.models)} and "
                         f"{len(second_model.models)} members; they need the same number")
    for union, other in zip(first_model.models, second_model.models):
        model_1, model_2 = union["model"], other["model"]
        shared = sorted({op.get_friendly_name() for op in model_1.get_ops()} &
                        {op.get_friendly_name() for op in model_2.get_ops()})
        if shared:
            raise ValueError(f"models_union: members '{union['name']}' and '{other['name']}' both have ops named "
                             f"{shared[:5]}{' ...' if len(shared) > 5 else ''}; rename one model's ops first")
        union["model"] = ov.Model(list(model_1.get_results()) + list(model_2.get_results()),
                                  list(model_1.get_parameters()) + list(model_2.get_parameters()),
                                  model_1.get_friendly_name())
    return first_model
