"""Helpers for inference engines, under the names POT's ``engines/utils.py`` gave custom engines.

Statistics are accumulated as ``{node_key: {stat_name: [(order, value), ...]}}`` by ``append_stats`` and
turned into ``{node_key: {stat_name: [value, ...]}}`` (sorted by ``order``) by ``process_accumulated_stats``.
The statistics-output builder (``add_stats_outputs``, ``stat_kind``) lives in
:mod:`pot_torch.statistics.stats_outputs` and POT's statistic objects (``Statistic``, ``compute_statistic``,
``get_stats_function``) in :mod:`pot_torch.statistics.pot_statistics`; both are importable from here too, as
custom engines do.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import openvino as ov

from pot_torch.graph.node_key import node_key_label, split_node_key  # noqa: F401  (POT-path re-export)
from pot_torch.statistics.pot_statistics import (ACTIVATIONS, Statistic, TensorStatistic,  # noqa: F401
                                                 compute_statistic, get_stats_function)
from pot_torch.statistics.stats_outputs import (StatsOutputs, add_stats_outputs, is_inplace_reducer,  # noqa: F401
                                               reducer_cache_key, stat_kind)
from pot_torch.utils.logger import get_logger

logger = get_logger(__name__)

_SINK_PORT = re.compile(r"/sink_port_\d+")


def get_clean_name(name: str) -> str:
    """``name`` without the ``/sink_port_N`` suffixes Model Optimizer gave Result and Parameter names."""
    return _SINK_PORT.sub("", name)


#: POT's name of :func:`pot_torch.graph.node_key.node_key_label`.
convert_output_key = node_key_label


def output_names(outputs: Sequence[Any]) -> List[str]:
    """Names of model outputs for ``postprocess_output``: as POT named them where the model allows.

    POT used the Result's friendly name without ``/sink_port_N``, which was also the output's tensor name. A
    model whose Result names are not tensor names (``Result_123``) gets its outputs' (first sorted) tensor
    name instead; an output without tensor names keeps the cleaned Result name. Names are unique.
    """
    names = []
    for output in outputs:
        result_name = get_clean_name(output.get_node().get_friendly_name())
        tensor_names = sorted(output.get_names())
        names.append(result_name if result_name in tensor_names or not tensor_names else tensor_names[0])
    if len(set(names)) != len(names):
        names = [output.get_node().get_friendly_name() for output in outputs]
    return names


def process_raw_output(raw_output: Mapping[Any, Any]) -> Dict[str, Any]:
    """Key raw inference results by clean name: each tensor name of an output key, or a text key as is."""
    result: Dict[str, Any] = {}
    for key, value in raw_output.items():
        if isinstance(key, str):
            result[get_clean_name(key)] = value
            continue
        for name in key.get_names():
            result[get_clean_name(name)] = value
    return result


def append_stats(accumulated_layer_stats: Dict[Hashable, Dict[str, list]], stats_layout: Mapping[Hashable, Mapping],
                 value: Union[Mapping[Any, Any], Sequence[Mapping[Any, Any]]], dataset_index: Any) -> None:
    """Apply the layout's functions to raw outputs and append ``(dataset_index, result)`` per statistic.

    :param accumulated_layer_stats: ``{node_key: {stat_name: [(order, value)]}}``, updated in place.
    :param stats_layout: ``{node_key: {stat_name: fn}}``.
    :param value: inference results keyed by output (tensor names are used) or by text name; a node key
        ``('name', i)`` is looked up as ``'name.i'``. A list (or tuple) of such results, one per step of a
        sequence, is stacked per output as POT did (``stack_sequential_outputs``) and ``fn`` gets the stack.
    :param dataset_index: the order key of these values (``process_accumulated_stats`` sorts by it).
    """
    if isinstance(value, (list, tuple)):
        outputs = stack_sequential_outputs(value, [convert_output_key(node_key) for node_key in stats_layout])
    elif isinstance(value, Mapping):
        outputs = process_raw_output(value)
    else:
        raise TypeError(f"append_stats takes inference results as a mapping {{output: array}} or a list of "
                        f"them (one per sequence step), got {type(value).__name__}")
    for node_key, stats in stats_layout.items():
        layer_stats = accumulated_layer_stats.setdefault(node_key, {name: [] for name in stats})
        name = convert_output_key(node_key)
        if name not in outputs:
            continue
        for stat_name, fn in stats.items():
            layer_stats.setdefault(stat_name, []).append((dataset_index, fn(outputs[name])))


def stack_sequential_outputs(steps: Sequence[Mapping[Any, Any]], names: Iterable[str]) -> Dict[str, np.ndarray]:
    """Stack the outputs ``names`` of a sequence's per-step results into one array each, as POT's
    ``append_stats`` did: on axis 1 for 2-D activations (``[N, steps, C]``), on axis 2 for higher ranks
    (``[N, C, steps, ...]``). Names missing from the results are left out.

    :raises TypeError: a step is not a mapping of results.
    :raises ValueError: an output has fewer than 2 dimensions (no axis to stack the steps on as POT did).
    """
    wanted = set(names)
    sequences: Dict[str, List[np.ndarray]] = {}
    for position, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise TypeError(f"append_stats: step {position} of the sequential results is a "
                            f"{type(step).__name__}; each step must be a mapping {{output: array}}")
        for name, activation in process_raw_output(step).items():
            if name in wanted:
                sequences.setdefault(name, []).append(np.asarray(activation))
    stacked = {}
    for name, arrays in sequences.items():
        rank = arrays[0].ndim
        if rank < 2:
            raise ValueError(f"append_stats: output '{name}' of the sequential results is {rank}-D, expected at "
                             "least 2-D ([batch, ...]) to stack its steps on axis 1 (2-D) or 2; append each "
                             "step's results separately instead")
        stacked[name] = np.stack(arrays, axis=1 if rank == 2 else 2)
    return stacked


def parse_sequential_stats(value_sequential: Sequence[Mapping[Any, Any]],
                           stats_layout: Mapping[Hashable, Mapping]) -> Dict[str, np.ndarray]:
    """POT's name for stacking a sequence's per-step results: the outputs of the layout's nodes, each stacked
    over the steps as :func:`append_stats` does with a list of results (see :func:`stack_sequential_outputs`)."""
    stat_names_by_layer, _ = get_per_layer_stat_mapping(stats_layout)
    return stack_sequential_outputs(value_sequential, stat_names_by_layer)


def _result_name(node_key: Hashable, stat: Any) -> Hashable:
    """The result name POT read a statistic from: ``<type>_<node>`` (or its ``layer_stat_name``) for a
    ``Statistic`` computed in the graph (``inplace_statistics``), the node's output name otherwise."""
    options = getattr(stat, "kwargs", None)
    if isinstance(options, Mapping) and options.get("inplace_statistics", False):
        return options.get("layer_stat_name", f"{options['type']}_{node_key}")
    return convert_output_key(node_key)


def get_per_layer_stat_mapping(stats_layout: Mapping[Hashable, Mapping]
                               ) -> tuple[Dict[Hashable, Any], Dict[Hashable, Hashable]]:
    """``({result name: statistic}, {result name: node key})`` for every statistic of the layout (a node's
    output name for plain statistics, ``<type>_<node>`` for POT's in-graph ``Statistic`` objects)."""
    stat_names_by_layer: Dict[Hashable, Any] = {}
    old_names_mapping: Dict[Hashable, Hashable] = {}
    for node_key, stats in stats_layout.items():
        for stat in stats:
            result_name = _result_name(node_key, stat)
            stat_names_by_layer[result_name], old_names_mapping[result_name] = stat, node_key
    return stat_names_by_layer, old_names_mapping


def get_inplace_stats_mapping(stats_layout: Mapping[Hashable, Mapping]) -> Dict[Hashable, Dict[Any, Hashable]]:
    """``{node key: {statistic: result name}}``: where each statistic of the layout is read from."""
    return {node_key: {stat: _result_name(node_key, stat) for stat in stats}
            for node_key, stats in stats_layout.items()}


def get_sequential_activations(activations: Any, layer: Hashable, activation_seq: Dict[Hashable, list],
                               stats_layout: Dict[Hashable, Dict], stat_names_by_layer: Mapping[Hashable, Any],
                               old_names_mapping: Mapping[Hashable, Hashable]) -> None:
    """Append one step's ``activations`` of result ``layer`` to ``activation_seq[layer]`` when the layout asks
    for it. A POT in-graph ``Statistic`` of that result is replaced in ``stats_layout`` by the same statistic
    computed on the stacked activations (a ``TensorStatistic``), as POT did for sequences."""
    node_key = old_names_mapping.get(layer)
    if node_key not in stats_layout:
        return
    stat = stat_names_by_layer[layer]
    options = getattr(stat, "kwargs", None)
    if isinstance(options, Mapping) and options.get("inplace_statistics", False):
        fn = get_stats_function(ACTIVATIONS, options.get("type"), options.get("granularity"), "compute_statistic")
        stats_layout[node_key].pop(stat)
        stats_layout[node_key][stat] = TensorStatistic(fn)
    activation_seq[layer].append(activations)


def process_accumulated_stats(accumulated_stats: Dict[Hashable, Dict[str, list]],
                              stat_names_aliases: Optional[Mapping[Hashable, Hashable]] = None
                              ) -> Dict[Hashable, Dict[str, list]]:
    """Sort ``(order, value)`` pairs by order (stably), keep the values, rename keys by ``stat_names_aliases``."""
    processed = {
        node_key: {stat: [v for _, v in sorted(pairs, key=lambda pair: pair[0])] for stat, pairs in stats.items()}
        for node_key, stats in accumulated_stats.items()
    }
    if stat_names_aliases is not None:
        processed = {stat_names_aliases.get(key, key): stats for key, stats in processed.items()}
    return processed


def update_stats(stats_layout: Dict[Hashable, Any], stat_aliases: Dict[str, Dict[Hashable, Any]], old_key: Hashable,
                 new_key: Hashable) -> None:
    """Rename ``old_key`` to ``new_key`` in a layout and in every algorithm's entry of ``stat_aliases``."""
    stats_layout[new_key] = stats_layout.pop(old_key)
    for aliases in stat_aliases.values():
        if old_key in aliases:
            aliases[new_key] = aliases.pop(old_key)


def restore_original_node_names(node2result: Mapping[Hashable, Hashable], accumulated_stats: Dict[Hashable, Any],
                                stats_layout: Dict[Hashable, Any], stat_aliases: Dict[str, Dict[Hashable, Any]]) -> None:
    """Rename statistics collected under output names back to the node names they were asked for."""
    if not node2result or not stats_layout:
        return
    for node_name, result_name in node2result.items():
        accumulated_stats[node_name] = accumulated_stats.pop(result_name)
        update_stats(stats_layout, stat_aliases, result_name, node_name)


def align_stat_names_with_results(result_names: Sequence[str], nodes_name: Iterable[Hashable],
                                  node2result: Dict[Hashable, Hashable], stats_layout: Dict[Hashable, Any],
                                  stat_aliases: Dict[str, Dict[Hashable, Any]]) -> None:
    """Where a node name is not an output name but ``'<name>.0'`` is, collect its statistics under the latter.

    Records the renaming in ``node2result`` so ``restore_original_node_names`` can undo it.
    """
    if not node2result:
        return
    for name in nodes_name:
        if isinstance(name, str) and name not in result_names and (name, 0) not in stats_layout:
            with_port = f"{name}.0"
            if with_port not in result_names:
                raise KeyError(f"neither '{name}' nor '{with_port}' is an output name; outputs: {list(result_names)}")
            update_stats(stats_layout, stat_aliases, name, with_port)
            node2result[name] = with_port


def add_tensor_names(outputs: Sequence[Any], names: Iterable[Hashable]) -> None:
    """Give each output the tensor name of its node key (``'name'`` or ``'name.port'``)."""
    for output, name in zip(outputs, names):
        output.get_tensor().add_names({str(convert_output_key(name))})


def cast_friendly_names(outputs: Sequence[Any]) -> None:
    """Add each output's node friendly name to its tensor names."""
    for output in outputs:
        output.get_tensor().add_names({output.get_node().get_friendly_name()})


def collect_model_outputs(model: ov.Model) -> List[str]:
    """All tensor names of ``model``'s outputs."""
    return [name for output in model.outputs for name in sorted(output.get_names())]


def copy_if_shared(value: Any, buffer: np.ndarray) -> Any:
    """``value`` itself, or a copy when it is an array sharing memory with ``buffer`` (a reused output)."""
    if isinstance(value, np.ndarray) and np.may_share_memory(value, buffer):
        return value.copy()
    return value
