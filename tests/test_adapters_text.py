"""Text models through ``quantize``: a Hugging Face ``BertModel`` (tiny random config, no download) fed token
ids of different lengths, and ``result.module`` called with positional arguments in ``forward()``'s order."""
from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pot_torch.adapters import convert_torch_model, quantize  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")

VOCABULARY = 100


def tiny_bert() -> torch.nn.Module:
    """A 2-layer BERT with random weights (seeded); built from a config, nothing downloaded."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCABULARY, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(config).eval()


def tokenized(length: int, generator: torch.Generator) -> dict:
    """What a tokenizer returns for one text, in a tokenizer's key order (not BertModel.forward's)."""
    padding = int(torch.randint(0, length // 2, (1,), generator=generator))
    mask = torch.ones(length, dtype=torch.long)
    mask[length - padding:] = 0
    return {"input_ids": torch.randint(1, VOCABULARY, (length,), generator=generator) * mask,
            "token_type_ids": (torch.arange(length) >= length // 2).long(),
            "attention_mask": mask}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def bert_result():
    generator = torch.Generator().manual_seed(1)
    items = [tokenized(length, generator) for length in (8, 13, 5, 16)]
    model = tiny_bert()
    return model, quantize(model, calibration_dataset=items, subset_size=len(items), model_type="transformer")


def test_bert_with_different_lengths_gets_a_dynamic_sequence_axis(bert_result, caplog):
    _, result = bert_result
    shapes = {port.get_any_name(): str(port.get_partial_shape()) for port in result.model.get_model().inputs}
    assert shapes == {"input_ids": "[?,?]", "token_type_ids": "[?,?]", "attention_mask": "[?,?]"}
    with caplog.at_level(logging.INFO, logger="pot_torch"):
        convert_torch_model(tiny_bert(), dataset=[tokenized(6, torch.Generator().manual_seed(2))])
    assert "input 'input_ids': axis 1 is dynamic (length axis of an integer [batch, length] input" in caplog.text


def test_bert_module_takes_positional_arguments_in_forward_order(bert_result):
    model, result = bert_result
    inputs = tokenized(20, torch.Generator().manual_seed(3))  # a length calibration never saw
    batch = {name: value[None] for name, value in inputs.items()}
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
    positional = result.module(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0]
    by_name = result.module(**batch)[0]
    assert torch.equal(positional, by_name)
    assert cosine(positional, expected) > 0.99  # INT8 (CPU default bf16) vs torch f32
