"""Padding-aware statistics: measure a transformer's activations on its real tokens only.

A static-shape encoder (e.g. ``[1, 128]`` token inputs) is calibrated on sentences padded to the full length, so
most positions of a calibration sample can be padding. Attention masks the padded keys and a mean-pooled
embedding ignores the padded positions, but every activation statistic (ranges, SmoothQuant's channel maxima,
bias-correction means) would still see them. With ``padding_aware_statistics`` (the ``transformer`` model type's
default) the statistics of an activation shaped ``[batch, seq, ...]`` are taken over the positions where the
model's mask input (``attention_mask``) is non-zero (all of a sample's positions when none is): min, max,
abs_max and mean reduce in-graph over the real tokens only (:func:`masked_reduce_output`; per sample, static
shapes), other statistics (quantiles, numpy reducers, activation rows) run in numpy on the real-token rows
(:func:`real_rows`). For a static batch of one sample (a ``[1, seq]`` mask) the real rows of an activation are
gathered once (``Gather`` at the mask's non-zero positions) and all its statistics read that compact copy; for a
batch the padded positions of each statistic's copy of the activation are set to a neutral value (NaN for
numpy).

``collect_statistics`` wraps every statistic function of a request with ``real_tokens`` set
(:func:`real_tokens`) and says once per model which input is the mask, or warns that there is none (plain
statistics then). An activation whose shape does not start with the mask's ``[batch, seq]`` (rank below 3,
another axis 0 or 1) keeps its statistics over all positions, with a warning naming it; model inputs are kept
as fed.
"""
from __future__ import annotations

import functools
from typing import Any, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from pot_torch.graph.node_key import node_key_label
from pot_torch.statistics.graph_reduce import as_f32, named, output_label, reduce_output
from pot_torch.statistics.online import ONLINE_ATTRIBUTE
from pot_torch.statistics.reducers import per_batch_value
from pot_torch.statistics.stats_outputs import extreme_partners_of, is_inplace_reducer
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["MASK_INPUT", "MASKED_KINDS", "find_mask_input", "RealTokens", "real_token_mask", "real_token_rows",
           "masked_reduce_output",
           "RealTokenStatistic", "RealTokenReduction", "RealTokenRows", "real_tokens",
           "real_rows", "report_mask_input", "other_mask_inputs", "every_token_real"]

#: The model input taken as the padding mask (by tensor or friendly name): Hugging Face's convention, non-zero on
#: real tokens. Other inputs named like masks are not guessed at: PyTorch's ``key_padding_mask`` is non-zero on the
#: padded positions, the opposite.
MASK_INPUT = "attention_mask"


def _input_names(parameter: ov.Node) -> set:
    return {parameter.get_friendly_name(), *parameter.output(0).get_names()}


def find_mask_input(model: ov.Model) -> Optional[ov.Node]:
    """The rank-2 Parameter of ``model`` named :data:`MASK_INPUT` (``[batch, seq]``, non-zero on real tokens), or
    ``None``."""
    return next((p for p in model.get_parameters() if p.get_output_partial_shape(0).rank.is_static
                 and p.get_output_partial_shape(0).rank.get_length() == 2 and MASK_INPUT in _input_names(p)), None)


def other_mask_inputs(model: ov.Model) -> List[str]:
    """Names of the inputs of ``model`` other than :data:`MASK_INPUT` that look like masks (``'mask'`` in a
    name): not used, since what their non-zero values mean is unknown."""
    return sorted(p.get_friendly_name() for p in model.get_parameters()
                  if MASK_INPUT not in _input_names(p) and any("mask" in n.lower() for n in _input_names(p)))


def _same_dimension(first: ov.Dimension, second: ov.Dimension) -> bool:
    """Static and equal, or both dynamic (a dynamic sequence axis is taken to be the mask's)."""
    if first.is_static and second.is_static:
        return first.get_length() == second.get_length()
    return first.is_dynamic and second.is_dynamic


def _cached(source: ov.Output, name: str) -> Optional[ov.Output]:
    """The op named ``name`` reading ``source`` (built before for another statistic), or ``None``."""
    return next((target.get_node().output(0) for target in source.get_target_inputs()
                 if target.get_node().get_friendly_name() == name), None)


def _real(mask: ov.Output) -> ov.Output:
    """``mask != 0`` (``[batch, seq]``, built once); a sample whose mask is all zero (no real token) counts all its
    positions, as plain statistics do."""
    name = f"{mask.get_node().get_friendly_name()}/real_tokens"
    nonzero = _cached(mask, f"{name}/nonzero")
    real = None if nonzero is None else _cached(nonzero, name)
    if real is None:
        nonzero = named(ops.not_equal(mask, ops.constant(np.array(0, mask.get_element_type().to_dtype()))),
                        f"{name}/nonzero")
        empty = ops.logical_not(ops.reduce_logical_or(nonzero, ops.constant(np.array([1], np.int64)), True))
        real = named(ops.logical_or(nonzero, empty), name)
    return real


def _broadcast_mask(real: ov.Output, rank: int) -> ov.Output:
    """``real`` (``[batch, seq]``) shaped ``[batch, seq, 1, ...]`` to broadcast over an activation of ``rank``
    (built once per rank)."""
    name = f"{real.get_node().get_friendly_name()}_rank{rank}"
    shaped = _cached(real, name)
    if shaped is None:
        shaped = named(ops.unsqueeze(real, ops.constant(np.arange(2, rank, dtype=np.int64))), name)
    return shaped


def _positions(real: ov.Output) -> ov.Output:
    """The sequence indices of the real tokens of a one-sample ``real`` (``[1, seq]``), ``[count]`` (built once)."""
    name = f"{real.get_node().get_friendly_name()}/positions"
    flat = _cached(real, f"{name}/flat")
    if flat is not None:
        return _cached(_cached(flat, f"{name}/found"), name)  # type: ignore[arg-type]
    one_axis = named(ops.constant(np.array([-1], np.int64)), f"{name}/one_axis")
    flat = named(ops.reshape(real, one_axis, special_zero=False), f"{name}/flat")
    found = named(ops.non_zero(flat, "i64"), f"{name}/found")  # [1, count]
    return named(ops.reshape(found, one_axis, special_zero=False), name)


class RealTokens(NamedTuple):
    """Where the real tokens of a ``[batch, seq, ...]`` activation are, in the statistics model being built: one of
    the two is set.

    :param mask: for a batch, ``mask != 0`` shaped ``[batch, seq, 1, ...]`` to broadcast over the activation (each
        statistic masks the whole activation).
    :param positions: for a static batch of one sample, the sequence indices of its real tokens (``[count]``): its
        real rows are gathered once (:func:`real_token_rows`) and every statistic reads that compact copy.
    """

    mask: Optional[ov.Output]
    positions: Optional[ov.Output]


def real_token_mask(output: ov.Output, mask: ov.Output) -> Optional[RealTokens]:
    """Where the real tokens (``mask != 0``, ``mask``: ``[batch, seq]``) of ``output`` (``[batch, seq, ...]``) are;
    ``None`` when ``output`` is not shaped so (rank below 3, axis 0 or 1 not the mask's) or is a model input."""
    shape, mask_shape = output.get_partial_shape(), mask.get_partial_shape()
    if (output.get_node().get_type_name() == "Parameter" or shape.rank.is_dynamic or shape.rank.get_length() < 3
            or not all(_same_dimension(shape[axis], mask_shape[axis]) for axis in (0, 1))):
        return None
    real = _real(mask)
    if shape[0].is_static and shape[0].get_length() == 1:
        return RealTokens(None, _positions(real))
    return RealTokens(_broadcast_mask(real, shape.rank.get_length()), None)


def real_token_rows(output: ov.Output, positions: ov.Output) -> ov.Output:
    """The rows of a one-sample ``output`` (``[1, seq, ...]``) at the real-token ``positions``, ``[1, count, ...]`` in
    ``f32``: gathered once per output, for all its statistics."""
    name = f"{output_label(output)}/real_token_rows"
    rows = _cached(output, name)
    if rows is None:
        sequence_axis = named(ops.constant(np.array(1, np.int64)), f"{name}/sequence_axis")
        rows = named(ops.gather(output, positions, sequence_axis), name)
    converted = _cached(rows, f"{name}/to_f32")  # an f16 activation's: converted once too
    return converted if converted is not None else as_f32(rows, name)


def _where(real: ov.Output, value: ov.Output, fill: float, name: str) -> ov.Output:
    return named(ops.select(real, value, ops.constant(np.array(fill, np.float32))), name)


def masked_reduce_output(output: ov.Output, real: RealTokens, kind: str, axes: Sequence[int],
                         name: str) -> ov.Output:
    """``graph_reduce.reduce_output`` of ``output`` over its real tokens only (``real``: :func:`real_token_mask`):
    the reduction of its real rows for one sample (:func:`real_token_rows`); for a batch, padded positions are set
    to the reduction's neutral value (``+inf`` for min, ``-inf`` for max, 0 for abs_max) or, for the mean, left
    out of the sum and of the count. ``axes`` must include axis 1 (the sequence)."""
    if real.positions is not None:
        return reduce_output(real_token_rows(output, real.positions), kind, axes, name)
    value = as_f32(output, name)
    if kind == "mean":
        # mean(masked x) / mean(mask), both over ``axes``: the mask's size-1 axes leave its mean the real share of
        # the sequence, so the ratio is the sum over real positions divided by their element count
        total = reduce_output(_where(real.mask, value, 0.0, f"{name}/real"), "mean", axes, f"{name}/sum")
        share = reduce_output(named(ops.convert(real.mask, ov.Type.f32), f"{name}/mask_f32"), "mean", axes,
                              f"{name}/real_share")
        return named(ops.divide(total, share), name)
    fill = {"min": np.inf, "max": -np.inf, "abs_max": 0.0}[kind]
    return reduce_output(_where(real.mask, value, fill, f"{name}/real"), kind, axes, name)


class RealTokenStatistic:
    """A statistic function ``fn`` of a layout, measured on the real tokens of its activation only (built by
    :func:`real_tokens`). The engine treats it as an in-graph statistic (``inplace``) built by
    :meth:`graph_reduce_in`, which needs the statistics model to find the mask input. An activation that is not
    ``[batch, seq, ...]`` is measured as ``fn`` alone would measure it, with a warning naming it.

    :param fn: the statistic function (a reducer, or any function of the batch output).
    :param mask_input: the friendly name of the model's mask Parameter (:func:`find_mask_input`).
    """

    inplace = True

    def __init__(self, fn: Any, mask_input: str) -> None:
        self.fn = fn
        self.mask_input = mask_input
        aggregator = getattr(fn, ONLINE_ATTRIBUTE, None)
        if aggregator is not None:
            setattr(self, ONLINE_ATTRIBUTE, aggregator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fn!r}, mask_input={self.mask_input!r})"

    def graph_reduce(self, output: ov.Output, name: Optional[str] = None) -> ov.Output:
        """Not available on an output alone: the mask input of the model is needed (:meth:`graph_reduce_in`)."""
        raise TypeError(f"{self!r} needs the statistics model to find its mask input: build it with "
                        "graph_reduce_in(model, output) (statistics.stats_outputs does)")

    def graph_reduce_in(self, model: ov.Model, output: ov.Output) -> ov.Output:
        """The in-graph value of ``output`` in ``model`` (the statistics model being built)."""
        mask = next((p for p in model.get_parameters() if p.get_friendly_name() == self.mask_input), None)
        real = None if mask is None else real_token_mask(output, mask.output(0))
        label = str(node_key_label((output.get_node().get_friendly_name(), output.get_index())))
        if real is None:
            if output.get_node().get_type_name() != "Parameter":  # model inputs are kept as fed, by design
                _warn_all_positions(label, str(output.get_partial_shape()), self.mask_input)
            return self.fn.graph_reduce(output) if is_inplace_reducer(self.fn) else output
        return self._real_value(output, real, label)

    def _real_value(self, output: ov.Output, real: RealTokens, label: str) -> ov.Output:
        raise NotImplementedError


class RealTokenReduction(RealTokenStatistic):
    """An in-graph min, max, abs_max or mean reducer over the real tokens (:func:`masked_reduce_output`): per
    sample for any batch size; its in-graph value is the statistic, as a plain in-graph reducer's."""

    def _real_value(self, output: ov.Output, real: RealTokens, label: str) -> ov.Output:
        axes = self.fn.reduction_axes(output.get_partial_shape().rank.get_length())
        return masked_reduce_output(output, real, self.fn.stat_type, axes,
                                    f"{label}/real_tokens_{self.fn.stat_type}_{'_'.join(map(str, axes))}")

    def merge_rows(self, rows: np.ndarray) -> np.ndarray:
        """``fn``'s, for an activation measured as ``fn`` alone would (``Reducer.merge_rows``)."""
        return self.fn.merge_rows(rows)

    def extreme_partners(self, output: ov.Output) -> Optional[Tuple["RealTokenReduction", "RealTokenReduction"]]:
        """An abs_max's min and max partners (``AbsMaxReducer.extreme_partners``), on the real tokens too: over the
        same positions, so ``|max(max, -min)|`` of their values is this statistic (there is always a real
        position, :func:`real_token_mask`); ``None`` for the other kinds."""
        found = extreme_partners_of(self.fn, output)
        return None if found is None else (RealTokenReduction(found[0], self.mask_input),
                                           RealTokenReduction(found[1], self.mask_input))


class RealTokenRows(RealTokenStatistic):
    """Any other statistic (quantiles, numpy reducers, activation rows): the in-graph value is the activation's
    real-token rows for one sample (:func:`real_token_rows`), for a batch the activation with NaN at the padded
    positions; :meth:`after_graph` applies ``fn`` to its real-token rows in numpy."""

    def _real_value(self, output: ov.Output, real: RealTokens, label: str) -> ov.Output:
        if real.positions is not None:
            return real_token_rows(output, real.positions)
        return _where(real.mask, as_f32(output, f"{label}/real_tokens"), np.nan, f"{label}/real_tokens_nan")

    def after_graph(self, value: np.ndarray, samples: int, what: str) -> Any:
        """One batch's statistic from the in-graph ``value`` (``fn``'s own in-graph result when the activation
        could not be masked: rank below 3)."""
        if np.ndim(value) < 3 and is_inplace_reducer(self.fn):
            return per_batch_value(self.fn, value, samples, True, what)
        return per_batch_value(self.fn, real_rows(value), samples, False, what)


def real_tokens(fn: Any, mask_input: str) -> RealTokenStatistic:
    """``fn`` measured on the real tokens of the mask input ``mask_input`` only: a :class:`RealTokenReduction` for
    an in-graph reducer of :data:`MASKED_KINDS`, else a :class:`RealTokenRows`."""
    if is_inplace_reducer(fn) and getattr(fn, "stat_type", None) in MASKED_KINDS:
        return RealTokenReduction(fn, mask_input)
    return RealTokenRows(fn, mask_input)


#: Reductions with a masked in-graph form (:func:`masked_reduce_output`).
MASKED_KINDS = ("min", "max", "abs_max", "mean")


def real_rows(value: np.ndarray) -> np.ndarray:
    """The positions of a ``[batch, seq, ...]`` batch output that are not NaN-padded, as ``[1, N, ...]`` (one
    sample: its real tokens; several: theirs together). A value of rank below 3 or without padded positions is
    returned as is."""
    if np.ndim(value) < 3:
        return value
    real = ~np.all(np.isnan(value), axis=tuple(range(2, value.ndim)))
    return value if real.all() else value[real][np.newaxis]


@functools.lru_cache(maxsize=None)
def _warn_all_positions(what: str, shape: str, mask_input: str) -> None:
    logger.warning("padding-aware statistics: %s of shape %s is not [batch, seq, ...] like the mask input '%s', so "
                   "its statistics are taken over all positions, padding included", what, shape, mask_input)


def every_token_real(data_loader: Any, indices: Optional[Sequence[int]], mask_input: str) -> bool:
    """Whether every calibration item of ``data_loader`` (at ``indices``; all when ``None``) gives the mask as a
    dict entry (``mask_input``'s friendly name or :data:`MASK_INPUT`) that is non-zero everywhere. Then padding-aware
    statistics equal plain ones (a dynamic-shape model fed unpadded samples), and ``collect_statistics`` skips the
    masked reductions. ``False`` at the first item that does not: padded, or its data is not such a dict."""
    for index in range(len(data_loader)) if indices is None else indices:
        item = data_loader[index]
        parts = item[:2] if isinstance(item, (tuple, list)) else (item,)  # (data, annotation) or POT's older format
        masks = [part[key] for part in parts if isinstance(part, Mapping)
                 for key in (mask_input, MASK_INPUT) if key in part]
        if not masks or not np.all(np.asarray(masks[0]) != 0):
            return False
    return True


@functools.lru_cache(maxsize=None)
def report_mask_input(model_name: str, mask_input: Optional[str], others: Tuple[str, ...] = ()) -> None:
    """Say once per model whether padding-aware statistics apply, and which input is the mask (``others``: inputs
    named like masks that are not used)."""
    if mask_input is None:
        unused = (f" (its inputs {', '.join(others)} look like masks, but whether non-zero marks a real or a padded "
                  f"token is unknown: name the real-token mask '{MASK_INPUT}' to use it)") if others else ""
        logger.warning("padding-aware statistics cannot apply to model '%s': it has no [batch, seq] input named "
                       "'%s' (non-zero on real tokens)%s; its statistics are taken over all positions. Set "
                       "padding_aware_statistics to False to silence this", model_name, MASK_INPUT, unused)
    else:
        logger.info("padding-aware statistics: activations [batch, seq, ...] of model '%s' are measured on the "
                    "tokens where its input '%s' is non-zero", model_name, mask_input)
