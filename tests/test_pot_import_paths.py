"""POT's import paths resolve under pot_torch, with the same meaning.

Two tables of docs/pot-compatibility.md are checked here:
- "Public names, module by module": every public name of the POT 2023.3 modules issue #14's bar lists
  (:data:`POT_PUBLIC_NAMES`, read from POT's source: names defined or re-exported from POT's own modules, not
  private ``_x`` names nor third-party modules). Each resolves under ``pot_torch`` with ``openvino.tools.pot``
  renamed; names POT re-exported from one place are one object here too; names without a meaning on the current
  OpenVINO runtime (:data:`REFUSED`) import, and raise ``NotImplementedError`` saying why when used.
- "Import paths": single paths (``| `openvino.tools.pot.X` | `pot_torch.X` |``), e.g. attributes of classes.
"""
import importlib
import inspect
import io
import logging
import os
import pathlib
import re

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

import pot_torch
from pot_torch.algorithms import COMPRESSION_ALGORITHMS

from model_builders import conv_model, reference_infer, two_input_model

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pot-compatibility.md"
#: POT 2023.3's ``openvino/tools/pot/__init__.py`` QUANTIZATION_ALGORITHMS (its top-level algorithm exports).
POT_QUANTIZATION_ALGORITHMS = [
    "MinMaxQuantization", "RangeOptimization", "FastBiasCorrection", "BiasCorrection",
    "ActivationChannelAlignment", "DataFreeQuantization", "DefaultQuantization", "AccuracyAwareQuantization",
    "AccuracyAwareGNA", "AccuracyAwareCommon", "INT4MixedQuantization", "TunableQuantization",
    "QuantNoiseEstimator", "OutlierChannelSplitting", "WeightBiasCorrection", "ParamsGridSearchAlgorithm",
    "OverflowCorrection", "RangeSupervision",
]
POT_SPARSITY_ALGORITHMS = ["WeightSparsity", "MagnitudeSparsity", "BaseWeightSparsity"]

#: Every public name of the POT 2023.3 modules of issue #14's bar, by module (``""`` is ``openvino.tools.pot``),
#: in POT's source order. ``samplers`` (POT's package ``__init__``) defined none. Left out: ``ge`` and ``gb`` of
#: ``graph.model_utils`` / ``graph.nx_model``, POT's own modules ``graph.editor`` and ``graph.builder`` imported
#: under private-looking aliases for internal use (functions on Model Optimizer graphs; pot_torch's
#: counterparts are listed under ``graph`` and ``graph.model_utils``).
POT_PUBLIC_NAMES = {
    "": [
        "AccuracyAwareQuantization", "AccuracyAwareGNA", "AccuracyAwareCommon", "INT4MixedQuantization",
        "FastBiasCorrection", "BiasCorrection", "ActivationChannelAlignment", "DataFreeQuantization",
        "DefaultQuantization", "MinMaxQuantization", "RangeOptimization", "ParamsGridSearchAlgorithm",
        "QuantNoiseEstimator", "TunableQuantization", "OutlierChannelSplitting", "WeightBiasCorrection",
        "MagnitudeSparsity", "WeightSparsity", "BaseWeightSparsity", "OverflowCorrection", "RangeSupervision",
        "DataLoader", "Metric", "Engine", "IEEngine", "load_model", "save_model", "compress_model_weights",
        "create_pipeline", "QUANTIZATION_ALGORITHMS", "SPARSITY_ALGORITHMS"],
    "api": ["DataLoader", "Engine", "Metric", "get_logger", "logger"],
    "engines.ie_engine": [
        "append_stats", "process_accumulated_stats", "restore_original_node_names", "align_stat_names_with_results",
        "add_tensor_names", "cast_friendly_names", "collect_model_outputs", "process_raw_output", "get_clean_name",
        "Engine", "save_model", "BatchSampler", "get_logger", "create_tmp_dir", "convert_output_key", "logger",
        "IEEngine"],
    "engines.utils": [
        "compute_statistic", "Statistic", "TensorStatistic", "get_stats_function", "ACTIVATIONS", "get_logger",
        "convert_output_key", "logger", "append_stats", "parse_sequential_stats", "process_accumulated_stats",
        "get_per_layer_stat_mapping", "get_inplace_stats_mapping", "get_sequential_activations", "update_stats",
        "restore_original_node_names", "align_stat_names_with_results", "process_raw_output", "add_tensor_names",
        "cast_friendly_names", "collect_model_outputs", "get_clean_name"],
    "graph": ["load_model", "save_model", "connect_nodes", "connect_nodes_by_name", "remove_node_by_name",
              "GraphTransformer"],
    "graph.model_utils": [
        "CompressedModel", "compress_weights", "convert_output_key", "load_model", "save_model", "add_outputs",
        "compress_model_weights", "get_nodes_by_type", "get_node_by_name", "get_all_operation_nodes",
        "build_model_for_node", "models_union", "nx_type_infer"],
    "graph.nx_model": ["load_graph", "save_graph", "is_ignored", "preprocess_ignored_params", "get_logger",
                       "stdout_redirect", "logger", "CompressedModel"],
    "pipeline.initializer": ["Pipeline", "get_algorithm", "send_configuration", "create_pipeline"],
    "samplers": [],
    "samplers.batch_sampler": ["Sampler", "BatchSampler"],
    "samplers.creator": ["ACEngine", "BatchSampler", "IndexSampler", "create_sampler"],
    "samplers.index_sampler": ["Sampler", "IndexSampler"],
    "samplers.sampler": ["Sampler"],
    "utils.logger": ["root", "manager", "DEBUG_LEVEL", "RegularLogger", "ProgressBarLogger", "init_logger",
                     "get_logger", "stdout_redirect"],
}
#: Names with no meaning on the current OpenVINO runtime: they import, and using them raises NotImplementedError.
REFUSED = {
    "graph.GraphTransformer": lambda cls: cls(),
    "samplers.creator.ACEngine": lambda cls: cls({}),
    "pipeline.initializer.send_configuration": lambda fn: fn([], None),
}
#: Per-module objects: each module has its own (POT's ``logger = get_logger(__name__)``).
PER_MODULE = {"logger"}


def _torch_path(module: str) -> str:
    return "pot_torch" + (f".{module}" if module else "")


def _name_cases():
    for module, names in POT_PUBLIC_NAMES.items():
        for name in names:
            yield pytest.param(module, name, id=f"{_torch_path(module)}.{name}")


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


def _module_table():
    """``{POT module: names}`` of the doc's "Public names, module by module" table (pot_torch paths checked)."""
    text = DOC.read_text()
    section = text[text.index("## Public names, module by module"):]
    section = section[:section.index("\n## ", 1)]
    rows = re.findall(r"^\| `(openvino\.tools\.pot[\w.]*)` \| `(pot_torch[\w.]*)` \| (.*) \|$", section, flags=re.M)
    table = {}
    for pot, torch_path, cell in rows:
        module = pot[len("openvino.tools.pot") + 1:]
        assert torch_path == _torch_path(module)
        table[module] = re.findall(r"`(\w+)`", cell)
    return table, section


def test_the_doc_lists_every_public_name_of_pots_modules():
    table, section = _module_table()
    assert table == POT_PUBLIC_NAMES
    for path in REFUSED:
        assert f"`{path.rsplit('.', 1)[-1]}`" in section.split("Refused when used")[1].split("\n\n")[0], path


@pytest.mark.parametrize("module, name", list(_name_cases()))
def test_every_public_name_of_pots_modules_resolves(module, name):
    target = getattr(importlib.import_module(_torch_path(module)), name)
    assert target is not None


def test_a_name_pot_exported_from_several_modules_is_one_object():
    places = {}
    for module, names in POT_PUBLIC_NAMES.items():
        for name in names:
            places.setdefault(name, []).append(module)
    shared = {name: modules for name, modules in places.items() if len(modules) > 1 and name not in PER_MODULE}
    assert len(shared) >= 15
    for name, modules in shared.items():
        objects = [getattr(importlib.import_module(_torch_path(m)), name, None) for m in modules]
        present = [o for o in objects if o is not None]
        assert all(o is present[0] for o in present), (name, modules)
    for module in ("api", "engines.ie_engine", "engines.utils", "graph.nx_model"):
        logger = importlib.import_module(_torch_path(module)).logger
        assert isinstance(logger, logging.Logger) and logger.name == _torch_path(module)


@pytest.mark.parametrize("path", sorted(REFUSED))
def test_names_without_meaning_on_openvino_2026_refuse_when_used(path):
    module, name = path.rsplit(".", 1)
    target = getattr(importlib.import_module(_torch_path(module)), name)
    with pytest.raises(NotImplementedError, match=f"openvino.tools.pot.*{name} is not available in pot_torch: "):
        REFUSED[path](target)


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


# ------------------------------------------------------------------ the names added for the bar do their job
def _relu_model():
    """input [1, 4] -> matmul ``dense`` -> relu ``act`` -> output ``out``."""
    x = ops.parameter([1, 4], np.float32, name="input")
    mm = ops.matmul(x, ops.constant(np.arange(16, dtype=np.float32).reshape(4, 4) - 8), False, False)
    mm.set_friendly_name("dense")
    act = ops.relu(mm)
    act.set_friendly_name("act")
    result = ops.result(act)
    result.set_friendly_name("out")
    return ov.Model([result], [x], "relu_model")


def test_graph_editing_rewires_and_bypasses_ops_of_an_openvino_model():
    from pot_torch.graph import connect_nodes_by_name, remove_node_by_name

    data = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    raw = data @ (np.arange(16, dtype=np.float32).reshape(4, 4) - 8)
    model = pot_torch.CompressedModel(_relu_model())
    remove_node_by_name(model, "act")
    np.testing.assert_allclose(reference_infer(model.get_model(), [data])[0], raw, rtol=1e-6)  # negatives kept

    model = pot_torch.CompressedModel(_relu_model())
    connect_nodes_by_name(model, "input", 0, "out", 0)  # the output reads the input directly
    np.testing.assert_array_equal(reference_infer(model.get_model(), [data])[0], data)
    with pytest.raises(ValueError, match="'flatten' turns f32 \\[1,8,1,1\\] into f32 \\[1,8\\]"):
        remove_node_by_name(pot_torch.CompressedModel(conv_model()), "flatten")  # changes the shape
    with pytest.raises(KeyError, match="no op named 'nope'"):
        remove_node_by_name(model, "nope")
    two_outputs = pot_torch.CompressedModel(two_input_model())
    remove_node_by_name(two_outputs, two_outputs.get_model().get_results()[1].get_friendly_name())
    assert len(two_outputs.get_model().outputs) == 1  # a Result is removed from the outputs


def test_build_model_for_node_computes_the_layer_alone():
    from pot_torch.graph.model_utils import build_model_for_node

    model = pot_torch.CompressedModel(conv_model())
    data = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    ops_by_name = {op.get_friendly_name(): op for op in model.get_model().get_ops()}
    probe = ov.Model([ops.result(ops_by_name["conv2_bias"])], [ops_by_name["input"]], "probe")
    relu1 = ov.Model([ops.result(ops_by_name["relu1"])], [ops_by_name["input"]], "relu1")
    image = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = reference_infer(probe, [image])[0]
    layer = build_model_for_node(model, "x", [1, 8, 16, 16], "conv2")
    np.testing.assert_allclose(reference_infer(layer.get_model(), [reference_infer(relu1, [image])[0]])[0],
                               expected, rtol=1e-5, atol=1e-5)
    no_bias = build_model_for_node(model, "x", [1, 8, 16, 16], "conv2", remove_bias=True)
    bias = ops_by_name["conv2_bias"].input_value(1).get_node().get_data()
    np.testing.assert_allclose(reference_infer(no_bias.get_model(), [data])[0] + bias,
                               reference_infer(layer.get_model(), [data])[0], rtol=1e-5, atol=1e-5)
    assert [op.get_type_name() for op in no_bias.get_model().get_ordered_ops()] == [
        "Parameter", "Constant", "Convolution", "Result"]


def test_models_union_runs_both_models_in_one():
    from pot_torch.graph.model_utils import models_union

    first, second = pot_torch.CompressedModel(_relu_model()), pot_torch.CompressedModel(two_input_model())
    union = models_union(first, second)
    assert union is first and len(union.get_model().outputs) == 3
    data = np.ones((1, 4), np.float32)
    got = reference_infer(union.get_model(), [data, data, data])
    np.testing.assert_allclose(got[0], reference_infer(_relu_model(), [data])[0])
    np.testing.assert_allclose(got[1:], reference_infer(two_input_model(), [data, data]), rtol=1e-6)
    with pytest.raises(ValueError, match="both have ops named"):
        models_union(pot_torch.CompressedModel(_relu_model()), pot_torch.CompressedModel(_relu_model()))


def test_load_graph_and_save_graph_round_trip_an_openvino_model(tmp_path):
    from pot_torch.graph.nx_model import load_graph, save_graph

    paths = save_graph(_relu_model(), tmp_path / "ir", "relu")
    assert paths == [{"model": str(tmp_path / "ir" / "relu.xml"), "weights": str(tmp_path / "ir" / "relu.bin")}]
    graph = load_graph({"model": paths[0]["model"]})
    data = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    np.testing.assert_array_equal(reference_infer(graph, [data])[0], reference_infer(_relu_model(), [data])[0])


def test_ignored_params_helpers_follow_pots_rules():
    from pot_torch.graph.nx_model import is_ignored, preprocess_ignored_params

    model = pot_torch.CompressedModel(conv_model())
    params = preprocess_ignored_params({"scope": ["conv1"], "operations": [{"type": "MatMul"}]}, model)
    assert params == {"skip_model": False, "scope": ["conv1"], "operations": [{"type": "MatMul"}]}
    by_name = {op.get_friendly_name(): op for op in model.get_model().get_ops()}
    assert [n for n in ("conv1", "conv2", "fc") if is_ignored(params, by_name[n])] == ["conv1", "fc"]
    assert is_ignored(preprocess_ignored_params({"skip_model": True}, model), by_name["conv2"])
    cascade = pot_torch.CompressedModel(models=[{"name": "a", "model": _relu_model()},
                                                {"name": "b", "model": two_input_model()}])
    assert preprocess_ignored_params({"b": {"scope": ["sum"]}}, cascade) == {
        "a": {"skip_model": False, "scope": [], "operations": []},
        "b": {"skip_model": False, "scope": ["sum"], "operations": []}}


def test_pots_statistic_objects_and_function_selector():
    from pot_torch.engines.utils import (ACTIVATIONS, Statistic, TensorStatistic, compute_statistic,
                                         get_inplace_stats_mapping, get_per_layer_stat_mapping, get_stats_function,
                                         parse_sequential_stats)
    from pot_torch.statistics.pot_statistics import WEIGHTS

    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    per_channel_max = get_stats_function(ACTIVATIONS, "max", "perchannel", "compute_statistic")
    np.testing.assert_array_equal(compute_statistic(per_channel_max, x), x.max(axis=2))
    np.testing.assert_array_equal(compute_statistic(per_channel_max, {"relu": x}, "relu"), x.max(axis=2))
    assert not per_channel_max.inplace and get_stats_function(ACTIVATIONS, "min", "pertensor", True).inplace
    np.testing.assert_allclose(get_stats_function(ACTIVATIONS, "quantile", "pertensor", False)(x, q=0.5),
                               np.quantile(x.reshape(2, -1), 0.5, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(get_stats_function(WEIGHTS, "abs_max", "perchannel", False)(x),
                                  np.abs(x).max(axis=(1, 2)))
    scaled = TensorStatistic(lambda tensor, factor: tensor.max() * factor, 2.0)
    assert scaled(x) == pytest.approx(2 * x.max()) and scaled == TensorStatistic(scaled.func, 2.0)
    with pytest.raises(ValueError, match="unknown statistic 'maximum'"):
        get_stats_function(ACTIVATIONS, "maximum", "pertensor", False)

    in_graph = Statistic(max, inplace_statistics=True, type="max", granularity="pertensor")
    layout = {"relu": {in_graph: None}, ("conv", 1): {"min": np.min}}
    assert get_inplace_stats_mapping(layout) == {"relu": {in_graph: "max_relu"}, ("conv", 1): {"min": "conv.1"}}
    assert get_per_layer_stat_mapping(layout) == ({"max_relu": in_graph, "conv.1": "min"},
                                                  {"max_relu": "relu", "conv.1": ("conv", 1)})
    steps = [{"conv.1": np.full((1, 5), i, np.float32)} for i in range(3)]
    assert parse_sequential_stats(steps, layout)["conv.1"].shape == (1, 3, 5)


def test_create_sampler_and_get_algorithm():
    from pot_torch.pipeline.initializer import get_algorithm
    from pot_torch.samplers.creator import create_sampler

    class Items(pot_torch.DataLoader):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return np.full((1,), index, np.float32), index

    engine = pot_torch.IEEngine({}, Items({}))
    assert [[item[1] for item in batch] for batch in create_sampler(engine, 5, batch_size=2)] == [[0, 1], [2, 3], [4]]
    drawn = list(create_sampler(engine, 4, shuffle_data=True, seed=3).subset_indices)
    assert drawn == list(create_sampler(engine, 4, shuffle_data=True, seed=3).subset_indices) != [0, 1, 2, 3]
    assert list(create_sampler(engine, [7, 2]).subset_indices) == [7, 2]
    assert get_algorithm("DefaultQuantization") is pot_torch.DefaultQuantization
    assert issubclass(get_algorithm("AccuracyAwareCommon"), pot_torch.AccuracyAwareQuantization)
    with pytest.raises(ValueError, match="Unknown algorithm 'Nope'"):
        get_algorithm("Nope")


def test_pots_logger_helpers(capsys):
    from pot_torch.utils import logger as pot_logger
    from pot_torch.utils.utils import create_tmp_dir

    log = pot_logger.get_logger("pot_torch.test_names")
    assert isinstance(log, pot_logger.RegularLogger) and pot_logger.root.name == "pot_torch"
    assert pot_logger.manager.getLogger("pot_torch.test_names") is log and pot_logger.DEBUG_LEVEL == logging.DEBUG
    assert type(logging.getLogger("not_pot_torch.names")) is logging.Logger  # other libraries' loggers untouched
    stream = io.StringIO()
    saved = (list(pot_logger.root.handlers), pot_logger.root.level, pot_logger.root.propagate)
    pot_logger.init_logger(level="DEBUG", stream=stream)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        log.info("forced line", force=True)
        assert records[0].filename == os.path.basename(__file__)  # the caller, not the logger module
        assert pot_logger.stdout_redirect(lambda a, b=0: print("noise") or a + b, 2, b=3) == 5
    finally:  # leave logging as the other tests expect it
        log.removeHandler(handler)
        pot_logger.root.handlers[:], pot_logger.root.level, pot_logger.root.propagate = saved
    assert "forced line" in stream.getvalue() and "noise" in stream.getvalue() and capsys.readouterr().out == ""
    with create_tmp_dir() as folder:
        assert os.path.isdir(folder)
    assert not os.path.exists(folder)
