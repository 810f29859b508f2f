"""Quantize a model at the end of a PyTorch training script, with accuracy control.

    python examples/training_post_step.py            # about a minute on 2 CPU cores
    python examples/training_post_step.py --quick    # a few seconds (smoke test)

The training part is ordinary PyTorch (a small CNN on generated images); the post-training step is one call
to ``pot_torch.adapters.quantize`` with the objects the script already has: the module, the data sets and a
torchmetrics metric. ``maximal_drop`` turns on AccuracyAwareQuantization: layers are put back to floating
point until the accuracy drop is at most that much.
"""
import argparse
import tempfile

import torch
from torchmetrics.classification import MulticlassAccuracy

from pot_torch.adapters import quantize
from pot_torch_showcase.synthetic import CLASSES, accuracy, shapes_dataset, small_cnn, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny data and training (smoke test)")
    parser.add_argument("--steps", type=int, help="training steps (default: 300, 20 with --quick)")
    parser.add_argument("-o", "--output", help="folder for the INT8 IR (default: a new temporary folder)")
    args = parser.parse_args()
    steps = args.steps or (20 if args.quick else 300)

    # --- an ordinary training script ------------------------------------------------------------------------
    train = shapes_dataset(400 if args.quick else 4000, seed=0)
    validation = shapes_dataset(100 if args.quick else 500, seed=1)
    module = small_cnn(8 if args.quick else 24)
    train_classifier(module, train, steps=steps, batch=32)
    print(f"PyTorch accuracy: {accuracy(module, validation):.3f}")

    # --- the post-training step: one call --------------------------------------------------------------------
    result = quantize(
        module,
        calibration_dataset=torch.utils.data.Subset(train, range(64 if args.quick else 300)),
        validation_dataset=validation,
        metric=MulticlassAccuracy(num_classes=len(CLASSES), average="micro"),
        maximal_drop=0.01,  # at most 1 point of accuracy lost, else layers go back to floating point
        subset_size=64 if args.quick else 300,
    )
    print(f"{result.metric_name}: FP32 {result.fp32_metric:.3f} -> INT8 {result.int8_metric:.3f} "
          f"(quantized in {result.quantization_time:.1f} s, layers kept in FP: {result.reverted_layers or 'none'})")

    # The INT8 model runs from torch like the original module ...
    images, labels = validation.tensors
    predictions = result.module(images[:8]).argmax(1)
    print(f"INT8 module predictions: {predictions.tolist()} (labels {labels[:8].tolist()})")
    # ... and is saved as OpenVINO IR for deployment.
    output = args.output or tempfile.mkdtemp(prefix="pot_torch_training_")
    paths = result.save(output)
    print(f"INT8 IR written to {paths[0]['model']}")


if __name__ == "__main__":
    main()
