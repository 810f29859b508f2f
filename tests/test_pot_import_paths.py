"""POT's import paths resolve under pot_torch: every row of docs/pot-compatibility.md's "Import paths" table.

Each row is ``| `openvino.tools.pot.X` | `pot_torch.X` |``; the test imports the pot_torch path (a module, or
attributes of the longest importable module prefix) and checks it is the POT path with the package renamed.
"""
import importlib
import inspect
import pathlib
import re

import pytest

import pot_torch
from pot_torch.algorithms import COMPRESSION_ALGORITHMS

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pot-compatibility.md"
#: POT 2023.3's ``openvino/tools/pot/__init__.py`` QUANTIZATION_ALGORITHMS (its top-level algorithm exports).
POT_QUANTIZATION_ALGORITHMS = [
    "MinMaxQuantization", "RangeOptimization", "FastBiasCorrection", "BiasCorrection",
    "ActivationChannelAlignment", "DataFreeQuantization", "DefaultQuantization", "AccuracyAwareQuantization",
    "AccuracyAwareGNA", "AccuracyAwareCommon", "INT4MixedQuantization", "TunableQuantization",
    "QuantNoiseEstimator", "OutlierChannelSplitting", "WeightBiasCorrection", "ParamsGridSearchAlgorithm",
    "OverflowCorrection", "RangeSupervision",
]


def _table_rows():
    text = DOC.read_text()
    section = text[text.index("## Import paths"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"^\| `(openvino\.tools\.pot[\w.]*)` \| `(pot_torch[\w.]*)` \|$", section, flags=re.M)


def resolve(path: str):
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(path)


def test_the_table_has_the_rows_of_issue_14():
    pot_paths = {pot for pot, _ in _table_rows()}
    assert {"openvino.tools.pot.graph.load_model", "openvino.tools.pot.graph.save_model",
            "openvino.tools.pot.DefaultQuantization", "openvino.tools.pot.graph.nx_model.CompressedModel.save",
            "openvino.tools.pot.api.samples.utils.argument_parser.get_common_argparser",
            "openvino.tools.pot.pipeline.initializer.create_pipeline",
            "openvino.tools.pot.engines.utils.append_stats"} <= pot_paths


def test_pipeline_package_keeps_pots_modules_and_the_short_path():
    from pot_torch.pipeline import Pipeline, create_pipeline
    from pot_torch.pipeline.initializer import create_pipeline as from_initializer
    from pot_torch.pipeline.pipeline import Pipeline as from_pipeline_module

    assert from_initializer is create_pipeline is pot_torch.create_pipeline
    assert from_pipeline_module is Pipeline is pot_torch.Pipeline


@pytest.mark.parametrize("pot_path, torch_path", _table_rows())
def test_pot_path_resolves_under_pot_torch(pot_path, torch_path):
    assert torch_path == "pot_torch" + pot_path[len("openvino.tools.pot"):]
    assert resolve(torch_path) is not None


def test_graph_reexports_the_same_functions_as_the_top_level():
    from pot_torch.graph import load_model, save_model

    assert load_model is pot_torch.load_model and save_model is pot_torch.save_model


def test_top_level_exports_every_pot_algorithm_pot_torch_implements():
    implemented = [name for name in POT_QUANTIZATION_ALGORITHMS if name in COMPRESSION_ALGORITHMS]
    assert set(implemented) == set(pot_torch.QUANTIZATION_ALGORITHMS)
    for name in implemented:
        assert getattr(pot_torch, name) is COMPRESSION_ALGORITHMS.get(name) and name in pot_torch.__all__


def test_compressed_model_save_has_pots_signature():
    from pot_torch.graph.nx_model import CompressedModel

    parameters = inspect.signature(CompressedModel.save).parameters
    assert [(p.name, p.default) for p in list(parameters.values())[1:]] == [
        ("save_path", inspect.Parameter.empty), ("model_name", None), ("for_stat_collection", False)]


def test_samples_argument_parser_takes_pots_sample_options(capsys):
    from pot_torch.api.samples.utils.argument_parser import get_common_argparser

    parser = get_common_argparser()
    args = parser.parse_args(["-m", "model.xml", "-d", "images/"])
    assert (args.model, args.weights, args.dataset) == ("model.xml", None, "images/")
    args = parser.parse_args(["--model", "m.xml", "--weights", "m.bin", "--dataset", "data"])
    assert (args.model, args.weights, args.dataset) == ("m.xml", "m.bin", "data")
    for argv in (["-m", "model.xml"], ["--mod", "model.xml", "-d", "images/"]):  # -d required; no abbreviations
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    parser.add_argument("--sample-option")  # samples add their own options
    assert parser.parse_args(["-m", "a", "-d", "b", "--sample-option", "x"]).sample_option == "x"
