"""A two-stage cascade quantized as one model, with a custom IEEngine that runs the stages.

    python examples/cascaded_model.py            # about a minute on 2 CPU cores
    python examples/cascaded_model.py --quick    # a few seconds (smoke test)

Like POT's MTCNN sample, the cascade is one ``CompressedModel(models=[...])``: a *proposal* stage (a CNN that
turns an image into a feature map and a coarse class guess) and a *refinement* stage (a head that classifies
the proposal's features). ``IEEngine`` refuses cascades, as POT's did, so ``CascadeEngine`` overrides
``set_model`` and ``predict``: it runs the proposal stage, passes its features to the refinement stage, feeds
the final scores to the metric, and collects the statistics the algorithms ask for on both stages. Then
DefaultQuantization quantizes both members in one pipeline run.

Statistics layouts name ops by friendly name, one flat ``{name: {stat: fn}}`` dict for all members, so the
members' op names must not repeat across the cascade (two converted torch modules often have ops named
``__module.0/aten::...`` when both are ``nn.Sequential``). ``unique_member_names`` prefixes every op with its member's name, as POT's
``CompressedModel`` prefixed cascade node names.
"""
import argparse

import numpy as np
import openvino as ov
import torch
from torch import nn

from pot_torch import BatchSampler, CompressedModel, DataLoader, IEEngine, Metric, create_pipeline
from pot_torch_showcase.synthetic import CLASSES, shapes_dataset
from pot_torch.engines.utils import add_stats_outputs, split_node_key, stat_kind


# --------------------------------------------------------------------------------------------- the two stages
def conv_block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Proposal(nn.Module):
    """Image -> (feature map [N, 2w, 8, 8], coarse class scores [N, 10])."""

    def __init__(self, width):
        super().__init__()
        self.features = nn.Sequential(conv_block(3, width), nn.MaxPool2d(2), conv_block(width, 2 * width),
                                      nn.MaxPool2d(2))
        self.coarse = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, len(CLASSES)))

    def forward(self, image):
        features = self.features(image)
        return features, self.coarse(features)


class Refinement(nn.Module):
    """Feature map -> final class scores [N, 10]."""

    def __init__(self, width):
        super().__init__()
        self.head = nn.Sequential(conv_block(2 * width, 4 * width), conv_block(4 * width, 4 * width),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, len(CLASSES)))

    def forward(self, features):
        return self.head(features)


def train_cascade(width, steps, images, seed=0):
    """Train both stages end to end (final loss plus a lighter loss on the coarse guess)."""
    torch.manual_seed(seed)
    proposal, refinement = Proposal(width), Refinement(width)
    data = shapes_dataset(images, seed=seed)
    inputs, labels = data.tensors
    parameters = list(proposal.parameters()) + list(refinement.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, len(inputs), (32,), generator=generator)
        features, coarse = proposal(inputs[index])
        loss = nn.functional.cross_entropy(refinement(features), labels[index]) + \
            0.3 * nn.functional.cross_entropy(coarse, labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return proposal.eval(), refinement.eval()


def unique_member_names(model, member):
    """Prefix every op's friendly name with ``<member>/`` so names are unique across the cascade."""
    for op in model.get_ops():
        op.set_friendly_name(f"{member}/{op.get_friendly_name()}")
    return model


def build_cascade(proposal, refinement, width):
    example = torch.zeros(1, 3, 32, 32)
    proposal_ir = ov.convert_model(proposal, example_input=example)
    with torch.no_grad():
        features = proposal(example)[0]
    refinement_ir = ov.convert_model(refinement, example_input=features)
    return CompressedModel(models=[{"name": "proposal", "model": unique_member_names(proposal_ir, "proposal")},
                                   {"name": "refinement", "model": unique_member_names(refinement_ir, "refinement")}],
                           model_name="cascade")


# --------------------------------------------------------------------------------------------- data and metric
class ShapesLoader(DataLoader):
    def __init__(self, count, seed):
        super().__init__({})
        self._images, self._labels = (t.numpy() for t in shapes_dataset(count, seed=seed).tensors)

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        return self._images[index], int(self._labels[index])


class Accuracy(Metric):
    def __init__(self):
        super().__init__()
        self._hits = []

    @property
    def value(self):
        return {"accuracy": self._hits[-1:]}

    @property
    def avg_value(self):
        return {"accuracy": float(np.mean(self._hits))}

    def update(self, output, target):
        self._hits.extend(float(p == t) for p, t in zip(output[0].argmax(1), target))

    def reset(self):
        self._hits = []

    def get_attributes(self):
        return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}


# ------------------------------------------------------------------------------------------------ the engine
class CascadeEngine(IEEngine):
    """Runs proposal -> refinement on each image; statistics on the ops of both members."""

    def set_model(self, model):
        self._members = {member["name"]: member["model"] for member in model.models}
        self._op_member = {op.get_friendly_name(): name for name, ov_model in self._members.items()
                           for op in ov_model.get_ops()}

    def _compile(self, member, layout):
        """The member's compiled model with the layout's statistics outputs, and where each statistic is."""
        model = self._members[member]
        plan = add_stats_outputs(model, layout) if layout else None
        precision = self.config.get("stat_inference_precision", "f32") if layout else None
        properties = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
        compiled = self._ie.compile_model(plan.model if plan else model, self._device, properties)
        return compiled.create_infer_request(), plan

    def predict(self, stats_layout=None, sampler=None, stat_aliases=None, metric_per_sample=False,
                print_progress=False):
        layouts = {name: {} for name in self._members}
        for node_key, stats in (stats_layout or {}).items():
            layouts[self._op_member[split_node_key(node_key)[0]]][node_key] = stats
        runs = {name: self._compile(name, layouts[name]) for name in self._members}
        collected = {key: {stat: [] for stat in stats} for key, stats in (stats_layout or {}).items()}
        sampler = sampler or BatchSampler(self.data_loader)
        if self._metric is not None:
            self._metric.reset()
        for batch in sampler:
            annotations, data, _ = self._process_batch(batch)
            inputs = np.stack(data)
            outputs = {}
            for name in ("proposal", "refinement"):
                request, plan = runs[name]
                request.infer({0: inputs})
                outputs[name] = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
                for node_key, stats in layouts[name].items():
                    for stat_name, fn in stats.items():
                        kind = stat_kind(fn)
                        value = outputs[name][plan.source(node_key, kind)]
                        collected[node_key][stat_name].append(value if kind is not None else fn(value))
                inputs = outputs[name][0]  # the proposal's feature map feeds the refinement stage
            if self._metric is not None:
                self._metric.update([outputs["refinement"][0]], [label for _, label in annotations])
        metrics = self._metric.avg_value if self._metric is not None else None
        return metrics, (collected if stats_layout else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and data (smoke test)")
    args = parser.parse_args()
    width = 8 if args.quick else 16
    proposal, refinement = train_cascade(width, steps=20 if args.quick else 300,
                                         images=400 if args.quick else 4000)
    model = build_cascade(proposal, refinement, width)

    engine = CascadeEngine(config={"device": "CPU"}, data_loader=ShapesLoader(100 if args.quick else 500, seed=1),
                           metric=Accuracy())
    pipeline = create_pipeline([{"name": "DefaultQuantization",
                                 "params": {"target_device": "ANY", "stat_subset_size": 300}}], engine)
    quantized = pipeline.run(model)
    for member in quantized.models:
        count = sum(op.get_type_name() == "FakeQuantize" for op in member["model"].get_ops())
        print(f"{member['name']}: {count} FakeQuantize ops")
    print(f"accuracy: FP32 {pipeline.evaluate(model)['accuracy']:.3f}, "
          f"INT8 {pipeline.evaluate(quantized)['accuracy']:.3f}")


if __name__ == "__main__":
    main()
