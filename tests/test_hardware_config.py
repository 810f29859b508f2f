"""Hardware descriptions: which file serves which device, what they say, and their errors."""
from __future__ import annotations

import pytest

from pot_torch.graph.hardware.config import HardwareConfig, load_hardware_config


@pytest.mark.parametrize("device,expected", [("ANY", "cpu.json"), ("CPU", "cpu.json"), ("CPU_SPR", "cpu.json"),
                                             ("GPU", "gpu.json"), ("NPU", "npu.json")])
def test_device_reads_its_file(device, expected):
    config = load_hardware_config(device)
    assert config.source == expected
    assert config.target_device == device


def test_cpu_quantizers_are_pots():
    cpu = load_hardware_config("CPU")
    conv = cpu.rule("Convolution")
    weights = cpu.quantizer_options(conv["weights"])
    assert weights[0] == {"bits": 8, "mode": "symmetric", "level_low": -127, "level_high": 127,
                          "granularity": "perchannel"}
    assert weights[1]["mode"] == "asymmetric"
    assert cpu.quantizer_options(conv["activations"])[0]["granularity"] == "pertensor"
    assert cpu.rule("GroupConvolution")["depthwise_weights_only"]  # bf16 depthwise kernels are faster here
    gpu = load_hardware_config("GPU")
    assert gpu.quantizer_options(gpu.rule("GroupConvolution")["depthwise_activations"])[0]["granularity"] == \
        "perchannel"
    assert conv["below_min_spatial"] == "weights_only"
    assert cpu.rule("Gather")["only_if"] == ["embedding_table"]
    assert cpu.has_unified_scales("Concat") and not cpu.has_unified_scales("Convolution")
    assert cpu.is_agnostic("MaxPool") and not cpu.is_agnostic("Convolution")
    assert cpu.rule("Relu") is None


def test_saturation_fix_only_for_cpu_and_any():
    assert load_hardware_config("CPU").saturation_fix_applies
    assert load_hardware_config("ANY").saturation_fix_applies
    assert not load_hardware_config("CPU_SPR").saturation_fix_applies
    assert not load_hardware_config("GPU").saturation_fix_applies


def test_transformer_rules_and_cpu_spr_exception():
    rules = load_hardware_config("CPU").model_type_rules("transformer")
    assert rules["default_preset"] == "mixed"
    assert {"Add", "MVN", "Multiply", "Power", "Subtract"} <= set(rules["ignored_operations"])
    spr = load_hardware_config("CPU_SPR").model_type_rules("transformer")
    assert "Multiply" not in spr["ignored_operations"] and "Add" in spr["ignored_operations"]
    assert load_hardware_config("CPU").model_type_rules(None) == {}
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
    with pytest.raises(ValueError, match="unknown conditions \\['sometimes'\\]"):
        HardwareConfig(_description(activations="q8", only_if=["sometimes"]), "CPU", "mine.json")
    with pytest.raises(ValueError, match="below_min_spatial 'drop'; valid: \\['skip', 'weights_only'\\]"):
        HardwareConfig(_description(activations="q8", below_min_spatial="drop"), "CPU", "mine.json")
