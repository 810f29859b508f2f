"""Per-layer time from OpenVINO's performance counters (``PERF_COUNT``), attributed to quantizer groups."""
from __future__ import annotations

import statistics
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import openvino as ov

from pot_torch.graph.editor import ops_by_name
from pot_torch.graph.layer_patterns import find_bias_add
from pot_torch.utils.latency import compile_on_cpu


def node_times(model: ov.Model, inputs: Mapping[int, np.ndarray], runs: int = 30, warmup: int = 5,
               precision: Optional[str] = None, threads: Optional[int] = None) -> Dict[str, float]:
    """``{runtime node name: median µs}`` of the executed nodes of ``model`` compiled for the CPU (LATENCY hint,
    ``precision`` ``None`` = the device default), over ``runs`` synchronous inferences of ``inputs``."""
    request = compile_on_cpu(model, precision, "LATENCY", threads, perf_count=True).create_infer_request()
    for _ in range(warmup):
        request.infer(dict(inputs))
    times: Dict[str, List[float]] = {}
    for _ in range(runs):
        request.infer(dict(inputs))
        for info in request.get_profiling_info():
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                times.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def owner(node_name: str, owned: Mapping[str, int]) -> Optional[int]:
    """The group owning runtime node ``node_name``: the one with the longest op name ``node_name`` is, starts
    (``name/...``, a fused node) or ends with (``..._name``, a reorder feeding it); ``None`` if no group's."""
    best: Tuple[int, Optional[int]] = (0, None)
    for name, group in owned.items():
        if (node_name == name or node_name.startswith(name + "/") or node_name.endswith("_" + name)) \
                and len(name) > best[0]:
            best = (len(name), group)
    return best[1]


def group_times(times: Mapping[str, float], owned: Mapping[str, int], groups: int) -> Tuple[List[float], float]:
    """Per group the summed time of the nodes it owns (:func:`owner`), and the total time of all nodes (µs)."""
    per_group = [0.0] * groups
    for name, value in times.items():
        group = owner(name, owned)
        if group is not None:
            per_group[group] += value
    return per_group, float(sum(times.values()))


def owned_names(model: ov.Model, groups: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> Dict[str, int]:
    """``{op name: group index}`` for each group's layers, their bias ``Add`` and its FakeQuantize ops (the
    names the runtime nodes of a group carry): ``groups`` is ``[(layers, fake_quantize_names)]``."""
    ops = ops_by_name(model)
    owned: Dict[str, int] = {}
    for index, (layers, fq_names) in enumerate(groups):
        for name in list(layers) + list(fq_names):
            owned[name] = index
            bias = find_bias_add(ops[name]) if name in ops else None
            if bias is not None:
                owned[bias.add.get_friendly_name()] = index
    return owned
