"""POT configuration files for the ``pot-torch`` command: reading, checking and running them.

A config has POT's three sections::

    {
      "model": {"model_name": "net", "model": "net.xml", "weights": "net.bin"},
      "engine": {"type": "simplified", "data_source": "calibration_images/"},
      "compression": {"target_device": "ANY",
                      "algorithms": [{"name": "DefaultQuantization",
                                      "params": {"preset": "performance", "stat_subset_size": 300}}]}
    }

JSON may carry ``//`` and ``/* */`` comments (as POT's templates do); ``.yaml``/``.yml`` files need PyYAML.
Algorithm parameters get what POT's command line added to them: ``target_device`` and ``model_type`` from the
``compression`` section, ``inplace_statistics`` (default True) and the preset aliases (``symmetric`` is
``performance``; ``asymmetric``/``accuracy`` become ``mixed`` for CPU, GPU and ANY).
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from pot_torch.algorithms import COMPRESSION_ALGORITHMS
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.image_folder import CHANNEL_ORDERS, ImageFolderLoader
from pot_torch.pipeline import create_pipeline
from pot_torch.utils.logger import progress_enabled
from pot_torch.utils.output_folder import DATA_FOLDER, Input, OutputFolder

_SECTIONS = ("model", "engine", "compression")
#: Where a user who needs Accuracy Checker or a metric goes instead (ends every such refusal).
PYTHON_API_HINT = ("use the Python API instead: a pot_torch.DataLoader and pot_torch.Metric with IEEngine and "
                    "create_pipeline (README, 'Migrating a POT script')")
_SIMPLIFIED_EXAMPLE = '"engine": {"type": "simplified", "data_source": "<folder of calibration images>"}'
_PRESET_ALIASES = {"symmetric": "performance", "asymmetric": "accuracy"}
_ACCURACY_AS_MIXED = ("ANY", "CPU", "GPU")
_NEEDS_METRIC = ("AccuracyAwareQuantization",)


class ConfigError(ValueError):
    """A configuration file or command-line setting that cannot be run; the message says how to fix it."""


# ----------------------------------------------------------------------------------------------- reading
def strip_json_comments(text: str) -> str:
    """``text`` without ``//`` line comments and ``/* */`` block comments outside JSON strings."""
    out: List[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ConfigError("unterminated /* comment in the config file")
            out.append(" ")
            i = end + 2
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def read_config_file(path: Any) -> Dict[str, Any]:
    """Read a POT config from a ``.json`` (comments allowed) or ``.yaml``/``.yml`` file.

    :raises FileNotFoundError: the file does not exist.
    :raises ConfigError: unknown extension, a syntax error, PyYAML missing for YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(strip_json_comments(text))
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file '{path}' is not valid JSON: {error}") from error
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise ConfigError(f"reading the YAML config '{path}' needs PyYAML: pip install pyyaml "
                              "(or write the config as .json)") from error
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file '{path}' is not valid YAML: {' '.join(str(error).split())}") from error
    else:
        raise ConfigError(f"config file '{path}' must end in .json, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping with sections {list(_SECTIONS)}")
    return data


# ---------------------------------------------------------------------------------------------- checking
def check_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Check a config and return a copy ready to run (model name, engine defaults, algorithm params filled).

    :raises ConfigError: a section is missing or malformed, the engine is not the simplified one, or an
        algorithm is unknown or needs a metric.
    """
    missing = [section for section in _SECTIONS if not isinstance(config.get(section), Mapping)]
    if missing:
        raise ConfigError(f"the config has no {', '.join(repr(s) for s in missing)} section; a POT config has "
                          f"sections {list(_SECTIONS)} (see README, 'POT config files')")
    result = copy.deepcopy(dict(config))
    result["model"] = _checked_model(result["model"])
    result["engine"] = _checked_engine(result["engine"])
    result["compression"] = _checked_compression(result["compression"])
    return result


def _checked_model(model: Dict[str, Any]) -> Dict[str, Any]:
    if model.get("cascade"):
        raise ConfigError("the config's model is a cascade; IEEngine runs single models, so cascades need a "
                          f"custom engine: {PYTHON_API_HINT} (examples/cascaded_model.py)")
    if not model.get("model"):
        raise ConfigError('the config\'s model section needs "model": "<path of the .xml>" (and optionally '
                          '"weights": "<path of the .bin>")')
    if not model.get("model_name"):
        model["model_name"] = Path(str(model["model"])).stem
    return model


def _checked_engine(engine: Dict[str, Any]) -> Dict[str, Any]:
    engine_type = engine.get("type", "accuracy_checker")
    if engine_type == "accuracy_checker" or "config" in engine:
        raise ConfigError("the Accuracy Checker engine is not supported (Accuracy Checker is not part of "
                          f"pot_torch); for DefaultQuantization on a folder of images use {_SIMPLIFIED_EXAMPLE}; "
                          f"to measure accuracy, {PYTHON_API_HINT}")
    if engine_type != "simplified":
        raise ConfigError(f"unknown engine type {engine_type!r}; use {_SIMPLIFIED_EXAMPLE}")
    if not engine.get("data_source"):
        raise ConfigError(f"the simplified engine needs a data_source folder: {_SIMPLIFIED_EXAMPLE}")
    engine.setdefault("device", "CPU")
    order = engine.setdefault("channel_order", "bgr")
    if order not in CHANNEL_ORDERS:
        raise ConfigError(f"engine channel_order must be one of {list(CHANNEL_ORDERS)}, got {order!r}")
    return engine


def _checked_compression(compression: Dict[str, Any]) -> Dict[str, Any]:
    algorithms = compression.get("algorithms")
    if not isinstance(algorithms, list) or not algorithms:
        raise ConfigError('the compression section needs "algorithms": [{"name": "DefaultQuantization", '
                          '"params": {"preset": "performance", "stat_subset_size": 300}}]')
    target_device = compression.get("target_device", "ANY")
    model_type = compression.get("model_type")
    for index, algorithm in enumerate(algorithms):
        if not isinstance(algorithm, Mapping) or "name" not in algorithm:
            raise ConfigError(f"compression.algorithms[{index}] must be {{\"name\": ..., \"params\": {{...}}}}, "
                              f"got {algorithm!r}")
        name = algorithm["name"]
        if name in _NEEDS_METRIC:
            raise ConfigError(f"{name} needs an accuracy metric, which the simplified engine does not have "
                              "(POT logged 'Could not find the required metrics for optimization in the engine. "
                              "Stop AccuracyAware optimization.' and saved the model unquantized); "
                              f"{PYTHON_API_HINT}")
        try:
            COMPRESSION_ALGORITHMS.get(name)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        params = dict(algorithm.get("params") or {})
        if "preset" in params:  # unset: the model type's default (mixed for transformers), as in the API
            preset = _PRESET_ALIASES.get(params["preset"], params["preset"])
            params["preset"] = "mixed" if preset == "accuracy" and target_device in _ACCURACY_AS_MIXED else preset
        params["target_device"] = target_device
        params["model_type"] = None if model_type == "None" else model_type
        params.setdefault("inplace_statistics", compression.get("inplace_statistics", True))
        algorithm["params"] = params
    return compression


# ----------------------------------------------------------------------------------------------- running
def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_config(config: Mapping[str, Any], output_dir: Any, overwrite: bool = False,
               keep_uncompressed_weights: bool = False, progress: bool = True) -> List[Dict[str, str]]:
    """Quantize the model a checked config names, on its image folder, and write the IR to ``output_dir``.

    The output folder is checked first, before the model is read: it must not be or hold the model, its
    weights or the data folder (nor, with ``overwrite``, lie inside the data folder), and an existing one is
    replaced only with ``overwrite`` and only if it holds nothing but a previous ``<model_name>.xml``/``.bin``
    (``pot_torch.utils.output_folder``). It is filled only when everything succeeded. Weights are stored as
    INT8 unless ``keep_uncompressed_weights``.

    :returns: ``save_model``'s entries, with paths inside ``output_dir``.
    """
    config = check_config(config)
    model_config, engine_config = config["model"], config["engine"]
    name = model_config["model_name"]
    output = OutputFolder.checked(output_dir, overwrite, inputs=_inputs(config),
                                  expected=(f"{name}.xml", f"{name}.bin"))
    algorithms = config["compression"]["algorithms"]
    _say(f"Loading model {model_config['model']}")
    model = load_model(model_config, target_device=config["compression"].get("target_device", "ANY"))
    ov_model = model.get_model()
    if len(ov_model.inputs) != 1:
        raise ConfigError(f"model '{model.name}' has {len(ov_model.inputs)} inputs; the simplified engine feeds "
                          f"one image input; {PYTHON_API_HINT}")
    loader = ImageFolderLoader(engine_config["data_source"], ov_model.inputs[0], engine_config["channel_order"])
    _say(f"Calibration data: {len(loader)} images from {engine_config['data_source']} "
         f"(layout {loader.layout}, {engine_config['channel_order'].upper()}, pixel values 0..255)")
    engine = IEEngine({"device": engine_config["device"]}, loader)
    pipeline = create_pipeline(algorithms, engine)
    _say("Quantizing with " + ", ".join(a["name"] for a in algorithms))
    with progress_enabled(progress):
        quantized = pipeline.run(model)
    if not keep_uncompressed_weights:
        compress_model_weights(quantized)
    with output.staged() as staging:
        entries = save_model(quantized, str(staging), model_name=name)
    for entry in entries:
        for key in ("model", "weights"):
            entry[key] = str(output.path / Path(entry[key]).name)
    _say(f"Wrote {entries[0]['model']} and {entries[0]['weights']}")
    return entries


def _inputs(config: Mapping[str, Any]) -> List[Input]:
    """The files and folder a checked config reads (the .bin defaults to the one next to the .xml)."""
    model = str(config["model"]["model"])
    weights = config["model"].get("weights") or str(Path(model).with_suffix(".bin"))
    return [("input model", model), ("input weights", str(weights)),
            (DATA_FOLDER, str(config["engine"]["data_source"]))]


def simplified_config(model: str, weights: Optional[str], data: str, preset: str, subset_size: int,
                      model_name: Optional[str] = None, channel_order: str = "bgr",
                      target_device: str = "ANY") -> Dict[str, Any]:
    """The POT config of the simplified mode: DefaultQuantization of ``model`` on the images in ``data``."""
    model_section: Dict[str, Any] = {"model": model}
    if weights:
        model_section["weights"] = weights
    if model_name:
        model_section["model_name"] = model_name
    return {
        "model": model_section,
        "engine": {"type": "simplified", "data_source": data, "channel_order": channel_order},
        "compression": {"target_device": target_device, "algorithms": [
            {"name": "DefaultQuantization", "params": {"preset": preset, "stat_subset_size": subset_size}}]},
    }
