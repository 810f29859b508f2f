"""``create_pipeline``: a ``Pipeline`` built from POT-style algorithm configs (POT's ``pipeline/initializer.py``)."""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Sequence, Union

from pot_torch.algorithms import COMPRESSION_ALGORITHMS
from pot_torch.api.engine import Engine
from pot_torch.pipeline.pipeline import Pipeline
from pot_torch.utils.unsupported import unsupported_function

AlgoConfig = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]

#: POT sent the algorithm configuration to Intel's telemetry service from ``create_pipeline``.
send_configuration = unsupported_function(
    "openvino.tools.pot.pipeline.initializer.send_configuration",
    "pot_torch sends no telemetry, so there is nothing to send the configuration to")


def get_algorithm(name: str) -> type:
    """The algorithm class registered under POT's ``name`` (``'DefaultQuantization'``, ...).

    :raises ValueError: no algorithm has that name (the error lists the registered ones).
    """
    return COMPRESSION_ALGORITHMS.get(name)


def create_pipeline(algo_config: AlgoConfig, engine: Engine, interface: str = "API") -> Pipeline:
    """Build a ``Pipeline`` from POT-style algorithm configs ``[{'name': ..., 'params': {...}}, ...]``.

    A single config dict is accepted too. An unknown algorithm name raises ``ValueError`` listing the registered
    ones; a config that is not shaped so raises ``TypeError`` or ``ValueError`` saying how to write it.
    ``interface`` is accepted for POT compatibility and has no effect.
    """
    pipeline = Pipeline(engine)
    for index, entry in enumerate(_algorithm_configs(algo_config)):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ValueError(
                f"each algorithm config must be a dict with a 'name' (and optional 'params'), got {entry!r}"
            )
        where = f"algorithm config {index} ({entry['name']})"
        unknown = sorted(set(entry) - {"name", "params"})
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; valid keys: name, params "
                             "(the algorithm's parameters go inside 'params')")
        params = entry.get("params") or {}
        if not isinstance(params, Mapping):
            raise TypeError(f"'params' of {where} must be a dict of parameters, got {params!r}; "
                            "e.g. {'preset': 'performance', 'stat_subset_size': 300}")
        algorithm_cls = get_algorithm(entry["name"])
        pipeline.add_algo(algorithm_cls(dict(params), engine))
    return pipeline


def _algorithm_configs(algo_config: AlgoConfig) -> List[Any]:
    if isinstance(algo_config, Mapping):
        return [algo_config]
    if isinstance(algo_config, Iterable) and not isinstance(algo_config, (str, bytes)):
        return list(algo_config)
    shape = "[{'name': 'DefaultQuantization', 'params': {...}}]"
    if isinstance(algo_config, str):
        raise TypeError(f"create_pipeline takes a list of algorithm configs such as {shape}, got the string "
                        f"{algo_config!r}; write create_pipeline([{{'name': {algo_config!r}, 'params': {{...}}}}], "
                        "engine)")
    raise TypeError(f"create_pipeline takes a list of algorithm configs such as {shape}, got {algo_config!r}")
