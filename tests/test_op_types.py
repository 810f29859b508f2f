"""OpenVINO op type names: which exist (for ``ignored.operations``), close names, names missing from a model."""
import logging

from model_builders import conv_model
from pot_torch.graph.op_types import close_op_types, is_op_type, warn_op_types_not_in


def test_types_of_every_opset_are_known_and_misspellings_are_not():
    for name in ("Convolution", "MatMul", "Add", "FakeQuantize", "Constant", "Parameter", "Result", "If",
                 "GroupNormalization", "ScaledDotProductAttention", "Convert"):
        assert is_op_type(name), name
    for name in ("Convolutoin", "matmul", "Conv2d", "", "PtFrameworkNode"):
        assert not is_op_type(name), name


def test_close_op_types_suggest_the_intended_one():
    assert close_op_types("Convolutoin")[0] == "Convolution"
    assert close_op_types("matmul") == ["MatMul"]
    assert close_op_types("Multipy")[0] == "Multiply"


def test_types_the_model_does_not_have_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pot_torch"):
        missing = warn_op_types_not_in(conv_model(), ["Convolution", "Softmax"])
    assert missing == ["Softmax"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("ignored operations name the op type 'Softmax', which no op of model "
                                  "'conv_model' has, so it selects nothing; the model's op types: Add, AvgPool, ")
