"""Hardware descriptions: which file serves which device, what they say, their errors, and op classes."""
from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from pot_torch.graph.hardware.config import HardwareConfig, ModelTypeRules, load_hardware_config
from pot_torch.graph.hardware.op_classes import classify_op


@pytest.mark.parametrize("device,expected", [("ANY", "cpu.json"), ("CPU", "cpu.json"), ("CPU_SPR", "cpu.json"),
                                             ("GPU", "gpu.json"), ("NPU", "npu.json")])
def test_device_reads_its_file(device, expected):
    config = load_hardware_config(device)
    assert config.source == expected
    assert config.target_device == device


def test_cpu_quantizers_are_pots():
    cpu = load_hardware_config("CPU")
    conv = cpu.rule("Convolution")
    weights = cpu.quantizer_options(conv.weights)
    assert weights[0] == {"bits": 8, "mode": "symmetric", "level_low": -127, "level_high": 127,
                          "granularity": "perchannel"}
    assert weights[1]["mode"] == "asymmetric"
    assert cpu.quantizer_options(conv.activations)[0]["granularity"] == "pertensor"
    depthwise = cpu.rule("DepthwiseConvolution")
    # INT8 depthwise kernels on real weights (findings 8.10), per-channel activations as NNCF's CPU setup (8.15)
    assert cpu.quantizer_options(depthwise.activations)[0]["granularity"] == "perchannel" and depthwise.weights
    gpu = load_hardware_config("GPU")
    assert gpu.quantizer_options(gpu.rule("DepthwiseConvolution").activations)[0]["granularity"] == "perchannel"
    assert conv.below_min_spatial == "weights_only" and conv.min_input_spatial == 2
    assert cpu.rule("EmbeddingGather").activations is None and cpu.rule("Gather") is None
    assert cpu.rule("ResidualAdd").activations == "q8_a" and cpu.rule("Add") is None
    assert cpu.rule("MatMul").weight_channel_axes == "matmul" and conv.weight_channel_axes == (0,)
    assert cpu.has_unified_scales("Concat") and not cpu.has_unified_scales("Convolution")
    assert cpu.is_agnostic("MaxPool") and not cpu.is_agnostic("Convolution")
    assert cpu.rule("Relu") is None
    assert cpu.cpu_plugin_workarounds and not gpu.cpu_plugin_workarounds


def test_rules_are_frozen():
    with pytest.raises(FrozenInstanceError):
        load_hardware_config("CPU").rule("Convolution").activations = None


def _op(node, name):
    node.set_friendly_name(name)
    return node


def test_ops_are_classified_as_the_rules_key_them():
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 4, 8, 8], np.float32, name="x")
    depthwise = _op(ops.group_convolution(x, ops.constant(rng.standard_normal((4, 1, 1, 3, 3)).astype(np.float32)),
                                          [1, 1], [1, 1], [1, 1], [1, 1]), "depthwise")
    grouped = _op(ops.group_convolution(x, ops.constant(rng.standard_normal((2, 2, 2, 3, 3)).astype(np.float32)),
                                        [1, 1], [1, 1], [1, 1], [1, 1]), "grouped")
    residual = _op(ops.add(depthwise, grouped), "residual")
    bias = _op(ops.add(residual, ops.constant(np.ones((1, 4, 1, 1), np.float32))), "bias")
    pooled = _op(ops.reduce_mean(bias, ops.constant(np.array([2, 3], np.int64)), True), "pooled")
    channel_mean = _op(ops.reduce_mean(bias, ops.constant(np.array([1], np.int64)), True), "channel_mean")
    ids = ops.parameter([5], np.int64, name="ids")
    table = ops.constant(rng.standard_normal((8, 8)).astype(np.float32))
    rows = _op(ops.gather(table, ids, ops.constant(np.array(0, np.int64))), "rows")
    columns = _op(ops.gather(table, ids, ops.constant(np.array(1, np.int64))), "columns")
    model = ov.Model([ops.result(n) for n in (pooled, channel_mean, rows, columns)], [x, ids], "classes")
    classes = {op.get_friendly_name(): classify_op(op) for op in model.get_ordered_ops()}
    assert {name: classes[name] for name in ("depthwise", "grouped", "residual", "bias", "pooled", "channel_mean",
                                             "rows", "columns")} == {
        "depthwise": "DepthwiseConvolution", "grouped": "GroupConvolution", "residual": "ResidualAdd",
        "bias": "Add", "pooled": "GlobalPool", "channel_mean": "ReduceMean", "rows": "EmbeddingGather",
        "columns": "Gather"}


def test_saturation_fix_only_for_cpu_and_any():
    assert load_hardware_config("CPU").saturation_fix_applies
    assert load_hardware_config("ANY").saturation_fix_applies
    assert not load_hardware_config("CPU_SPR").saturation_fix_applies
    assert not load_hardware_config("GPU").saturation_fix_applies


def test_transformer_rules_and_cpu_spr_exception():
    rules = load_hardware_config("CPU").model_type_rules("transformer")
    assert rules.default_preset == "mixed"
    assert {"Add", "MVN", "Multiply", "Power", "Subtract"} <= set(rules.ignored_operations)
    assert rules.skipped_producers("MatMul") == ("Softmax",) and rules.skipped_producers("Convolution") == ()
    spr = load_hardware_config("CPU_SPR").model_type_rules("transformer")
    assert "Multiply" not in spr.ignored_operations and "Add" in spr.ignored_operations
    assert load_hardware_config("CPU").model_type_rules(None) == ModelTypeRules()
    with pytest.raises(ValueError, match="no rules for model_type 'cnn'.*transformer"):
        load_hardware_config("CPU").model_type_rules("cnn")


def test_unknown_device_lists_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown target_device 'TPU'; valid values: ANY, CPU, CPU_SPR, GPU, NPU$"):
        load_hardware_config("TPU")
    with pytest.raises(ValueError, match=r"^target_device 'GNA' is not supported: the GNA plugin was removed from "
                                         r"OpenVINO .*; valid values: ANY, CPU, CPU_SPR, GPU, NPU$"):
        load_hardware_config("GNA")


def _description(**operation):
    return {"quantizers": {"q8": {"bits": 8, "mode": "symmetric", "granularity": "pertensor"}},
            "operations": {"Convolution": operation}}


def test_bad_descriptions_are_named():
    with pytest.raises(ValueError, match="uses quantizer 'q4' that is not defined; defined quantizers: \\['q8'\\]"):
        HardwareConfig(_description(activations="q4"), "CPU", "mine.json")
    with pytest.raises(ValueError, match="mine.json: operation 'Convolution' has unknown fields \\['activation'\\]"):
        HardwareConfig(_description(activation="q8"), "CPU", "mine.json")
    with pytest.raises(ValueError, match="has the field 'only_if', which op classes replaced: key the rule by op "
                                         "class instead \\('ResidualAdd' for all_inputs_activations"):
        HardwareConfig(_description(activations="q8", only_if=["all_inputs_activations"]), "CPU", "mine.json")
    with pytest.raises(ValueError, match="operation 'Convolutoin' is neither an OpenVINO op type nor an op class; "
                                         "op classes: \\['DepthwiseConvolution', 'EmbeddingGather'"):
        HardwareConfig({**_description(), "operations": {"Convolutoin": {}}}, "CPU", "mine.json")
    with pytest.raises(ValueError, match="below_min_spatial 'drop'; valid: \\['skip', 'weights_only'\\]"):
        HardwareConfig(_description(activations="q8", below_min_spatial="drop"), "CPU", "mine.json")


def test_a_model_type_field_the_parser_does_not_know_is_refused():
    description = {"quantizers": {}, "operations": {},
                   "model_types": {"transformer": {"default_preset": "mixed", "ignored_operation": ["Add"]}}}
    with pytest.raises(ValueError, match=r"<dict>: model type 'transformer' has unknown fields \['ignored_operation'\]"):
        HardwareConfig(description, "CPU")
