"""Layer patterns the bias-correction and channel-alignment algorithms look for in an ``openvino.Model``.

- A *layer with weights* is a Convolution, GroupConvolution, (Group)ConvolutionBackpropData or MatMul whose
  weight input is computed from a constant.
- Its *bias* is an ``Add`` that is the layer's only consumer and whose other input is a per-output-channel
  Constant (possibly through a Convert, Reshape, Unsqueeze or Squeeze).
- A *conv pair* (for channel alignment) is Convolution -> (bias Add) -> Convolution with nothing else reading
  the activation in between, as POT's ActivationChannelAlignment found them.

Statistics keys follow the project's convention (:func:`pot_torch.graph.node_key.output_key`): an op's friendly name for output 0,
``(friendly_name, index)`` for other outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, List, Optional, Tuple

import numpy as np
import openvino as ov

from pot_torch.graph.constants import constant_source
from pot_torch.graph.editor import replace_constant
from pot_torch.graph.node_key import output_key

CONV_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData")
#: Op types whose bias the bias-correction algorithms correct.
LAYERS_WITH_BIAS = CONV_TYPES + ("MatMul",)
#: Ops allowed between a bias Constant and its Add (they keep the values and their order).
BIAS_PASS_THROUGH = ("Convert", "Reshape", "Unsqueeze", "Squeeze")


def is_fake_quantize(node: ov.Node) -> bool:
    """Whether ``node`` is a FakeQuantize op."""
    return node.get_type_name() == "FakeQuantize"


def weight_port(layer: ov.Node) -> Optional[int]:
    """The input of ``layer`` holding constant weights, or ``None`` (not a layer with weights, or no constant).

    Convolutions take weights on input 1; a MatMul on whichever of its two inputs is constant (input 1 first).
    """
    kind = layer.get_type_name()
    ports = (1,) if kind in CONV_TYPES else (1, 0) if kind == "MatMul" else ()
    for port in ports:
        if constant_source(layer.input_value(port)) is not None:
            return port
    return None


def activation_port(layer: ov.Node) -> Optional[int]:
    """The data input of a layer with weights (``None`` when :func:`weight_port` is ``None``)."""
    port = weight_port(layer)
    if port is None:
        return None
    return 1 - port if layer.get_type_name() == "MatMul" else 0


def output_channel_axis(layer: ov.Node) -> int:
    """The channel axis of a layer's output: 1 for convolutions, the last axis for MatMul."""
    return -1 if layer.get_type_name() == "MatMul" else 1


def input_channel_axis(layer: ov.Node, port: int) -> int:
    """The axis of input ``port`` of ``layer`` the layer reduces over (its input channels).

    1 for convolutions; for MatMul the contracted axis of that input (``transpose_a``/``transpose_b`` aware).
    """
    if layer.get_type_name() != "MatMul":
        return 1
    attributes = layer.get_attributes()
    if port == 0:
        return -2 if attributes.get("transpose_a", False) else -1
    return -1 if attributes.get("transpose_b", False) else -2


def activation_source(layer: ov.Node, port: int) -> ov.Output:
    """The output feeding input ``port`` of ``layer``, looking through a FakeQuantize on that input.

    Its :func:`output_key` names the same tensor before and after quantization.
    """
    source = layer.input_value(port)
    if is_fake_quantize(source.get_node()):
        source = source.get_node().input_value(0)
    return source


def has_quantized_weights(layer: ov.Node) -> bool:
    """Whether the weights of ``layer`` go through a FakeQuantize of a constant right before the layer."""
    port = weight_port(layer)
    if port is None:
        return False
    node = layer.input_value(port).get_node()
    return is_fake_quantize(node) and constant_source(node.input_value(0)) is not None


@dataclass(frozen=True)
class BiasAdd:
    """The bias of a layer: ``add`` adds the Constant ``const`` (through pass-through ops) on input ``port``.

    :param channels: number of output channels; the bias holds one value per channel.
    :param channel_axis: the channel axis of the bias as the Add sees it (non-negative).
    """

    add: ov.Node
    port: int
    const: ov.Node
    channels: int
    channel_axis: int

    @property
    def shape(self) -> tuple:
        """Shape of the bias as the Add sees it (e.g. ``(1, C, 1, 1)``)."""
        return tuple(self.add.get_input_shape(self.port))

    def value(self) -> np.ndarray:
        """The bias as ``float32`` in :attr:`shape`."""
        return np.asarray(self.const.get_data(), dtype=np.float32).reshape(self.shape)

    def per_channel(self) -> np.ndarray:
        """The bias as a ``[C]`` vector."""
        return self.value().reshape(-1)

    def expand(self, per_channel: np.ndarray) -> np.ndarray:
        """A ``[C]`` vector in :attr:`shape`."""
        shape = [1] * len(self.shape)
        shape[self.channel_axis] = self.channels
        return np.asarray(per_channel, dtype=np.float32).reshape(shape)

    def set_value(self, value: np.ndarray) -> "BiasAdd":
        """Store ``value`` (in :attr:`shape` or ``[C]``) in the model; returns the updated ``BiasAdd``.

        The Constant is replaced by one of the same name, shape and element type.
        """
        array = np.asarray(value, dtype=np.float32).reshape(tuple(self.const.get_output_shape(0)))
        new_const = replace_constant(self.const, array)
        return BiasAdd(self.add, self.port, new_const, self.channels, self.channel_axis)


def constant_add_after(layer: ov.Node) -> Optional[Tuple[ov.Node, int, ov.Node]]:
    """``(add, constant port, constant)`` when the only consumer of the layer's output 0 is an ``Add`` of a
    constant (through ``BIAS_PASS_THROUGH`` ops, used by that Add only), whatever its shape; else ``None``."""
    targets = list(layer.output(0).get_target_inputs())
    if len(targets) != 1 or targets[0].get_node().get_type_name() != "Add":
        return None
    add = targets[0].get_node()
    port = 1 - targets[0].get_index()
    const = constant_source(add.input_value(port), BIAS_PASS_THROUGH, exclusive=True)
    return None if const is None else (add, port, const)


def find_bias_add(layer: ov.Node) -> Optional[BiasAdd]:
    """The bias ``Add`` of ``layer``, or ``None``.

    The Add must be the only consumer of the layer's output 0, and its other input a constant holding one
    value per output channel (all other axes of size 1, right-aligned against the layer's output).
    """
    candidate = constant_add_after(layer)
    if candidate is None:
        return None
    add, port, const = candidate
    out_shape = layer.get_output_partial_shape(0)
    bias_shape = add.get_input_partial_shape(port)
    if out_shape.rank.is_dynamic or bias_shape.is_dynamic:
        return None
    out_rank = out_shape.rank.get_length()
    axis = output_channel_axis(layer) % out_rank
    channels_dim = out_shape[axis]
    dims = [int(d) for d in bias_shape.to_shape()]
    if channels_dim.is_dynamic or len(dims) > out_rank or not dims:
        return None
    channels = channels_dim.get_length()
    bias_axis = axis - (out_rank - len(dims))
    if bias_axis < 0 or dims[bias_axis] != channels:
        return None
    if any(d != 1 for i, d in enumerate(dims) if i != bias_axis):
        return None
    return BiasAdd(add, port, const, channels, bias_axis)


def _conv_keeps_padding_free(conv: ov.Node) -> bool:
    """No padding, unit strides and dilations: a per-channel shift of the input is a per-channel shift of
    the output (what channel alignment needs of the consumer convolution, as in POT)."""
    attributes = conv.get_attributes()
    if attributes.get("auto_pad", "explicit") not in ("explicit", "notset", "valid"):
        return False
    return (all(p == 0 for p in attributes.get("pads_begin", [])) and
            all(p == 0 for p in attributes.get("pads_end", [])) and
            all(s == 1 for s in attributes.get("strides", [])) and
            all(d == 1 for d in attributes.get("dilations", [])))


def conv_weight_constant(conv: ov.Node) -> Optional[ov.Node]:
    """The Constant holding a Convolution's weights, directly or through a Convert (decompression) only, and
    used by nothing else. (A Reshape or Transpose in between would change which axis holds which channels.)
    """
    return constant_source(conv.input_value(1), ("Convert",), exclusive=True)


@dataclass(frozen=True)
class ConvPair:
    """Convolution ``producer`` -> (its bias Add) -> Convolution ``consumer``, by friendly names.

    :param activation_key: statistics key of the activation between them (the bias Add's output, else the
        producer's output).
    """

    producer: str
    consumer: str
    activation_key: Hashable


def find_conv_pairs(model: ov.Model) -> List[ConvPair]:
    """Conv -> (bias Add) -> Conv pairs whose activation channels can be rescaled and shifted exactly.

    Both are ``Convolution`` (group 1) with constant weights; the consumer has no padding, unit strides and
    dilations; the producer's (biased) output feeds only the consumer. In topological order of consumers.
    """
    pairs = []
    for consumer in model.get_ordered_ops():
        if consumer.get_type_name() != "Convolution" or not _conv_keeps_padding_free(consumer):
            continue
        source = consumer.input_value(0)
        if len(source.get_target_inputs()) != 1:
            continue
        producer = source.get_node()
        if producer.get_type_name() == "Add":
            candidates = [producer.input_value(i).get_node() for i in range(2)]
            producer = next((node for node in candidates if node.get_type_name() == "Convolution"
                             and (bias := find_bias_add(node)) is not None and bias.add is source.get_node()), None)
            if producer is None:
                continue
        elif producer.get_type_name() != "Convolution" or source.get_index() != 0:
            continue
        if conv_weight_constant(producer) is None or conv_weight_constant(consumer) is None:
            continue
        pairs.append(ConvPair(producer.get_friendly_name(), consumer.get_friendly_name(), output_key(source)))
    return pairs
