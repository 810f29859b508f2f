"""POT's ``pot`` command line on ``pot-torch``: ``-q/--quantize``, ``-c/--config`` and the options around them.

A POT user's shell history runs as it was: the same option names and choices, the same checks of wrong
combinations with POT's messages (``openvino/tools/pot/app/argparser.py``, ``check_dependencies``), the same
configuration ``-q`` built from POT's templates (``stat_subset_size`` 300, preset ``performance``, model name
``model_name``), and the same output layout (``app/run.py``)::

    <--output-dir>/<model name>_<algorithm names>/<timestamp>/optimized/<model name>.xml   (default)
    <--output-dir>/optimized/<model name>.xml                                               (-d/--direct-dump)

Only the simplified engine exists here: Accuracy Checker options are refused with one line naming the Python
API route, and what needs a metric (``-e``, AccuracyAwareQuantization) is refused before any work.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

from pot_torch.cli_config import PYTHON_API_HINT, ConfigError, check_config, read_config_file, run_config

#: The timestamp of POT's output folders (``app/run.py``).
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
#: The model name of POT's ``-q`` templates, used for the output folder (and the files unless ``-n``).
TEMPLATE_MODEL_NAME = "model_name"
#: What ``-q`` runs, as POT's templates had it.
_QUANTIZE_ALGORITHMS = {"default": "DefaultQuantization", "accuracy_aware": "AccuracyAwareQuantization"}
_TEMPLATE_PARAMS = {"preset": "performance", "stat_subset_size": 300}
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_DEFAULT_OUTPUT_DIR = "./results"
_DEFAULT_LOG_LEVEL = "INFO"
_AC_REFUSAL = ("Accuracy Checker (--ac-config, --engine accuracy_checker) is not part of pot-torch: for "
               "DefaultQuantization on a folder of images use --engine simplified --data-source DIR; to quantize "
               f"or evaluate with a metric, {PYTHON_API_HINT}")
#: The destination of each option ``add_pot_arguments`` adds. Each one's parser default is ``None`` (``False`` for
#: flags) so that an option given at its documented default value still counts as given.
_POT_DESTINATIONS = ("pot_quantize", "pot_preset", "pot_model", "pot_weights", "pot_name", "pot_engine",
                     "pot_ac_config", "pot_max_drop", "pot_evaluate", "pot_output_dir", "pot_direct_dump",
                     "pot_log_level", "pot_pbar", "pot_stream_output", "pot_data_source")


def add_pot_arguments(parser: argparse.ArgumentParser) -> None:
    """Add POT's ``pot`` options (all but ``-c`` and ``--keep-uncompressed-weights``, which ``cli.py`` has)."""
    parser.add_argument("-q", "--quantize", dest="pot_quantize", choices=tuple(_QUANTIZE_ALGORITHMS),
                        help="POT's quick mode: DefaultQuantization (default) or AccuracyAwareQuantization "
                        "(accuracy_aware; needs a metric, so only from Python) of -m/-w, e.g. -q default")
    parser.add_argument("--preset", dest="pot_preset", choices=("performance", "mixed"),
                        help="with -q: performance (symmetric) or mixed (asymmetric activations)")
    parser.add_argument("-m", "--model", dest="pot_model", metavar="XML", help="with -q: the model .xml")
    parser.add_argument("-w", "--weights", dest="pot_weights", metavar="BIN", help="with -q: the weights .bin")
    parser.add_argument("-n", "--name", dest="pot_name", metavar="NAME",
                        help="with -q: file name of the output model (default: model_name, as POT)")
    parser.add_argument("--engine", dest="pot_engine", choices=("accuracy_checker", "simplified"),
                        help="simplified: calibrate on the images of --data-source (accuracy_checker is refused)")
    parser.add_argument("--ac-config", dest="pot_ac_config", metavar="FILE",
                        help="refused: Accuracy Checker is not part of pot-torch (use the Python API)")
    parser.add_argument("--max-drop", dest="pot_max_drop", type=float, metavar="DROP",
                        help="with -q accuracy_aware: the maximal accuracy drop")
    parser.add_argument("-e", "--evaluate", dest="pot_evaluate", action="store_true",
                        help="refused, as POT refused it in simplified mode: evaluation needs a metric")
    parser.add_argument("--output-dir", dest="pot_output_dir", metavar="DIR",
                        help="POT's output layout: DIR/<model>_<algorithm>/<timestamp>/optimized/ (a new "
                        "timestamp folder each run; default: ./results)")
    parser.add_argument("-d", "--direct-dump", dest="pot_direct_dump", action="store_true",
                        help="write into DIR/optimized/ instead (an existing one only with --overwrite)")
    parser.add_argument("--log-level", dest="pot_log_level", choices=_LOG_LEVELS,
                        help="level of pot_torch's log messages (default: INFO)")
    parser.add_argument("--progress-bar", dest="pot_pbar", action="store_true",
                        help="show progress bars during statistics collection")
    parser.add_argument("--stream-output", dest="pot_stream_output", action="store_true",
                        help="accepted for POT's command lines; progress display is the same with it")
    parser.add_argument("--data-source", dest="pot_data_source", metavar="DIR",
                        help="the simplified engine's folder of calibration images, e.g. --data-source images/")


def pot_options_given(args: argparse.Namespace) -> bool:
    """Whether any of POT's options (other than ``-c``) is on the command line."""
    return any(getattr(args, dest) not in (None, False) for dest in _POT_DESTINATIONS)


def check_dependencies(args: argparse.Namespace) -> None:
    """POT's checks of option combinations, in POT's order and with POT's messages.

    :raises ConfigError: the first wrong combination.
    """
    quantize, config = args.pot_quantize, args.config
    if (quantize is None) == (config is None):
        raise ConfigError("Either --config or --quantize option should be specified")
    if quantize is not None and (args.pot_model is None or args.pot_weights is None):
        raise ConfigError("--quantize option requires model and weights to be specified.")
    if quantize is not None and args.pot_ac_config is None and args.pot_engine in (None, "accuracy_checker"):
        raise ConfigError("--quantize option requires AC config to be specified or --engine should be "
                          "`simplified`.")
    if quantize == "accuracy_aware" and args.pot_max_drop is None:
        raise ConfigError("For AccuracyAwareQuantization --max-drop should be specified")
    if config is None and args.pot_engine == "simplified" and args.pot_data_source is None:
        raise ConfigError("For Simplified mode `--data-source` option should be specified")
    for option, dest in (("model", "pot_model"), ("weights", "pot_weights"), ("preset", "pot_preset"),
                         ("ac_config", "pot_ac_config")):
        if config is not None and getattr(args, dest) is not None:
            raise ConfigError(f"Either --config or --{option} option should be specified")


def _check_pot_torch_rules(args: argparse.Namespace) -> None:
    """What pot-torch refuses beyond POT's checks: Accuracy Checker, evaluation, -o mixed with POT's layout."""
    if args.pot_ac_config is not None or args.pot_engine == "accuracy_checker":
        raise ConfigError(_AC_REFUSAL)
    if args.pot_evaluate:
        raise ConfigError(f"Can not make evaluation in simplified mode: the simplified engine has no metric; "
                          f"to evaluate, {PYTHON_API_HINT}")
    if args.config_output is not None and (args.pot_direct_dump or args.pot_output_dir is not None):
        raise ConfigError("-o OUT writes into OUT itself; --output-dir and -d/--direct-dump choose POT's layout "
                          "instead: give -o, or --output-dir (with or without -d), not both")


def _notes(args: argparse.Namespace) -> List[str]:
    """Options POT accepted and ignored in this combination: said, not refused, so old command lines run."""
    notes = []
    if args.pot_max_drop is not None and args.pot_quantize != "accuracy_aware":
        notes.append("--max-drop is used only with -q accuracy_aware; ignored (as POT did)")
    if args.pot_name is not None and args.config is not None:
        notes.append("-n/--name is used only with -q; with -c the config's model_name names the model; "
                     "ignored (as POT did)")
    if args.config_overwrite and args.config_output is None and not args.pot_direct_dump:
        notes.append("--overwrite has no effect: POT's layout writes a new timestamp folder each run")
    return notes


def quantize_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The config POT's ``-q`` built from its template and the command line."""
    algorithm = _QUANTIZE_ALGORITHMS[args.pot_quantize]
    params: Dict[str, Any] = dict(_TEMPLATE_PARAMS)
    if args.pot_preset:
        params["preset"] = args.pot_preset
    if algorithm == "AccuracyAwareQuantization":
        params.update(maximal_drop=args.pot_max_drop, tune_hyperparams=False)
    return {
        "model": {"model_name": args.pot_name or TEMPLATE_MODEL_NAME, "model": args.pot_model,
                  "weights": args.pot_weights},
        "engine": {"type": "simplified", "data_source": args.pot_data_source},
        "compression": {"target_device": "ANY", "algorithms": [{"name": algorithm, "params": params}]},
    }


def file_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The config file of ``-c``, with ``--engine`` and ``--data-source`` applied as POT applied them."""
    config = read_config_file(args.config)
    engine = config.get("engine")
    if isinstance(engine, dict):
        if args.pot_engine:
            engine["type"] = args.pot_engine
        if "data_source" not in engine and args.pot_data_source is not None:
            engine["data_source"] = args.pot_data_source
    return config


def log_algo_name(model_name: str, algorithms: List[Mapping[str, Any]]) -> str:
    """POT's output subfolder name: the model name and the algorithm names joined by ``_``."""
    return "_".join([model_name] + [str(algorithm["name"]) for algorithm in algorithms])


def timestamp_folder(parent: Path) -> Path:
    """``parent/<timestamp>`` for a timestamp no earlier run used (waits for the next second if needed)."""
    while True:
        folder = parent / datetime.now().strftime(TIMESTAMP_FORMAT)
        if not folder.exists():
            return folder
        time.sleep(0.2)


@contextlib.contextmanager
def _logging_at(level: str) -> Iterator[None]:
    """pot_torch's log messages at ``level`` and above go to stderr during the block (restored after)."""
    logger = logging.getLogger("pot_torch")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def run_pot_command(args: argparse.Namespace) -> List[Dict[str, str]]:
    """Run ``pot-torch`` with POT's options: check them, build the config, quantize, write POT's layout.

    :returns: ``save_model``'s entries (the paths written).
    :raises ConfigError: a wrong combination (POT's message where POT had one) or a config that cannot run.
    """
    check_dependencies(args)
    _check_pot_torch_rules(args)
    for note in _notes(args):
        print(f"pot-torch: note: {note}", file=sys.stderr, flush=True)
    config = check_config(quantize_config(args) if args.pot_quantize else file_config(args))
    output_dir = Path(args.pot_output_dir or _DEFAULT_OUTPUT_DIR).expanduser()
    if args.config_output is not None:
        output = Path(args.config_output)
    elif args.pot_direct_dump:
        output = output_dir / "optimized"
    else:
        model_name = TEMPLATE_MODEL_NAME if args.pot_quantize else config["model"]["model_name"]
        algorithms = config["compression"]["algorithms"]
        output = timestamp_folder(output_dir / log_algo_name(model_name, algorithms)) / "optimized"
    with _logging_at(args.pot_log_level or _DEFAULT_LOG_LEVEL):
        return run_config(config, output, args.config_overwrite, args.config_keep_weights, progress=args.pot_pbar)
