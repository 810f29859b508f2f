"""A small BERT-style encoder (token ids and attention mask in a dict) quantized with model_type 'transformer'.

    python examples/transformer.py            # about 10 seconds on 2 CPU cores
    python examples/transformer.py --quick    # a few seconds (smoke test)

The task is generated: each sequence mixes "topic" tokens of one of four topics with filler tokens and
padding; the encoder learns to name the topic. Samples are ``({'input_ids': ..., 'attention_mask': ...},
label)``, so the model inputs are fed by name. ``model_type='transformer'`` applies POT's transformer rules
(no FakeQuantize on Add, LayerNorm (MVN) and similar ops; symmetric activations into MatMuls), runs
SmoothQuant first and the full BiasCorrection last (docs/quantization.md).
"""
import argparse
import math

import torch
from torch import nn

from pot_torch.adapters import quantize

VOCAB, TOPICS, WORDS_PER_TOPIC, SEQ = 200, 4, 20, 32


def topic_dataset(count, seed):
    """``count`` samples: a dict of ``input_ids``/``attention_mask`` [SEQ] (int64) and the topic label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, TOPICS, (count,), generator=generator)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (count,), generator=generator)
    filler = torch.randint(TOPICS * WORDS_PER_TOPIC + 1, VOCAB, (count, SEQ), generator=generator)
    topical = labels[:, None] * WORDS_PER_TOPIC + 1 + torch.randint(0, WORDS_PER_TOPIC, (count, SEQ), generator=generator)
    is_topical = torch.rand(count, SEQ, generator=generator) < 0.3
    ids = torch.where(is_topical, topical, filler)
    mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # 0 is the padding token
    return [({"input_ids": ids[i], "attention_mask": mask[i]}, labels[i]) for i in range(count)]


class EncoderLayer(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x, bias):
        n, s, h = x.shape
        q, k, v = self.qkv(x).reshape(n, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, s, h)
        x = self.norm1(x + self.out(context))
        return self.norm2(x + self.ffn(x))


class TinyBert(nn.Module):
    """Embeddings, ``layers`` encoder layers, classification from the first token."""

    def __init__(self, hidden=64, layers=2, heads=4):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, hidden)
        self.positions = nn.Embedding(SEQ, hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads) for _ in range(layers))
        self.classifier = nn.Linear(hidden, TOPICS)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1])[None, :]
        x = self.tokens(input_ids) + self.positions(positions)
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        mask = attention_mask[:, :, None].float()
        return self.classifier((x * mask).sum(1) / mask.sum(1))


def train(model, data, steps, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    step = 0
    model.train()
    while step < steps:
        for inputs, labels in loader:
            loss = nn.functional.cross_entropy(model(**inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model.eval()


def accuracy_fn(preds, targets):
    return float((preds.argmax(-1) == targets).float().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, data and training (smoke test)")
    args = parser.parse_args()
    model = TinyBert(hidden=32 if args.quick else 64, layers=1 if args.quick else 2)
    model = train(model, topic_dataset(320 if args.quick else 3000, seed=0), steps=10 if args.quick else 300)
    validation = topic_dataset(64 if args.quick else 500, seed=1)

    result = quantize(model, calibration_dataset=validation[:64 if args.quick else 300], validation_dataset=validation,
                      metric=accuracy_fn, model_type="transformer", subset_size=64 if args.quick else 300)
    inputs = [name for port in result.model.get_model().inputs for name in sorted(port.get_names())
              if not name.isdigit()]
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in result.model.get_model().get_ops())
    print(f"inputs {inputs}; {fake_quantize} FakeQuantize ops")
    print(f"accuracy: FP32 {result.fp32_metric:.3f}, INT8 {result.int8_metric:.3f} "
          f"(quantized in {result.quantization_time:.1f} s)")


if __name__ == "__main__":
    main()
