"""POT's statistic objects and function selector, for custom engines and algorithms written against POT.

POT's layouts could hold ``Statistic`` objects (a function plus bound arguments) instead of plain functions;
``compute_statistic`` applied one to an activation, and ``get_stats_function`` chose POT's function for a
statistic type and granularity. pot_torch's layouts hold reducers (:mod:`pot_torch.statistics.reducers`);
``get_stats_function`` returns them, so both kinds of layout work with ``IEEngine`` and ``append_stats``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from pot_torch.statistics.reducers import QuantileReducer, REDUCER_TYPES, make_reducer

#: POT's tensor kinds for ``get_stats_function``.
ACTIVATIONS = "activations"
WEIGHTS = "weights"
#: POT's granularities.
PERCHANNEL = "perchannel"
PERTENSOR = "pertensor"


class Statistic:
    """A statistic function with bound extra arguments: ``compute(tensor)`` is defined by subclasses.

    Equal (and hashing equal) when the function and the bound arguments are, so it can key a layout.
    """

    def __init__(self, func: Callable[..., Any], *argv: Any, **kwargs: Any) -> None:
        self.func = func
        self.argv = argv
        self.kwargs = kwargs

    def compute(self, *input_tensor: Any, **kwargs: Any) -> Any:
        """The statistic of ``input_tensor`` (subclasses define it)."""
        raise NotImplementedError(f"{type(self).__name__} does not define compute(); use TensorStatistic")

    def __call__(self, *argv: Any, **kwargs: Any) -> Any:
        return self.compute(*argv, **kwargs)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Statistic) and self.func == other.func and self.argv == other.argv
                and self.kwargs == other.kwargs)

    def __hash__(self) -> int:
        keywords = frozenset(self.func.keywords) if isinstance(self.func, partial) else frozenset()
        return hash((self.func, frozenset(self.argv), frozenset(self.kwargs), keywords))


class TensorStatistic(Statistic):
    """``func(tensor, *argv, **kwargs)``: a function of one activation."""

    def compute(self, *input_tensor: Any, **kwargs: Any) -> Any:
        return self.func(*(input_tensor + self.argv), **self.kwargs)


def compute_statistic(statistic: Callable[..., Any], *argv: Any, **kwargs: Any) -> Any:
    """Apply ``statistic`` to an activation: ``compute_statistic(fn, tensor)``, or POT's
    ``compute_statistic(fn, outputs, name)`` which takes ``outputs[name]``."""
    if argv and isinstance(argv[0], Mapping):
        outputs, name = argv
        argv = (outputs[name],)
    return statistic(*argv, **kwargs)


def get_stats_function(tensor_type: str, name: str, granularity: str, inplace_statistics: Any = False
                       ) -> Callable[..., np.ndarray]:
    """pot_torch's function for POT's statistic ``name`` (``'min'``, ``'max'``, ``'abs_max'``, ``'mean'``,
    ``'quantile'``, ``'abs_quantile'``) of a tensor kind and granularity.

    For ``ACTIVATIONS`` it is a reducer (batch axis kept, channels on axis 1 per channel); ``inplace_statistics``
    true asks the engine to compute it in the graph (POT's ``'compute_statistic'`` selector means not in the
    graph). For ``WEIGHTS`` it maps a weight tensor to one value (per tensor) or one per output channel (axis
    0). The quantile types take the quantile as keyword ``q``, as POT's did.

    :raises ValueError: unknown tensor kind, granularity or statistic name.
    """
    if granularity not in (PERCHANNEL, PERTENSOR):
        raise ValueError(f"get_stats_function: granularity must be '{PERCHANNEL}' or '{PERTENSOR}', "
                         f"got {granularity!r}")
    if name not in REDUCER_TYPES:
        raise ValueError(f"get_stats_function: unknown statistic {name!r}; valid: {', '.join(sorted(REDUCER_TYPES))}")
    per_channel = granularity == PERCHANNEL
    if tensor_type == ACTIVATIONS:
        inplace = bool(inplace_statistics) and inplace_statistics != "compute_statistic"
        if issubclass(REDUCER_TYPES[name], QuantileReducer):
            return lambda x, q: make_reducer(name, per_channel, inplace=inplace, quantile=q)(x)
        return make_reducer(name, per_channel, inplace=inplace)
    if tensor_type == WEIGHTS:
        return partial(_weight_statistic, name, per_channel)
    raise ValueError(f"get_stats_function: tensor type must be '{ACTIVATIONS}' or '{WEIGHTS}', got {tensor_type!r}")


def _weight_statistic(name: str, per_channel: bool, weights: np.ndarray, q: float | None = None) -> np.ndarray:
    """POT's weight statistic: the weights seen as one sample whose channels are the output channels."""
    reducer = make_reducer(name, per_channel, quantile=q) if q is not None else make_reducer(name, per_channel)
    return reducer(np.asarray(weights)[np.newaxis])[0]
