"""A torchvision classifier quantized with the POT-style API: DataLoader subclass, Metric, IEEngine, pipeline.

    python examples/torchvision_classification.py            # a few minutes on 2 CPU cores
    python examples/torchvision_classification.py --quick    # a few seconds (smoke test)

The example writes a small image data set (generated pattern classes) as PNG files into a temporary
``ImageFolder`` tree, fine-tunes a torchvision ResNet-18 (``weights=None``: nothing is downloaded) on it for a
few steps, converts it with ``openvino.convert_model`` and quantizes it the way a POT script does: a
``pot_torch.DataLoader`` over the ``ImageFolder``, a ``pot_torch.Metric`` computing a torchmetrics accuracy,
``IEEngine`` and ``create_pipeline`` with DefaultQuantization.
"""
import argparse
import pathlib
import tempfile

import numpy as np
import openvino as ov
import torch
import torchvision
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy
from torchvision import transforms

from pot_torch import CompressedModel, DataLoader, IEEngine, Metric, create_pipeline
from pot_torch_showcase.synthetic import CLASSES, shape_images

IMAGE_SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.3, 0.3, 0.3)


def write_image_folder(root: pathlib.Path, count: int, seed: int) -> None:
    """``count`` PNG images in ``root/<class name>/<index>.png`` (an ImageFolder tree)."""
    images, labels = shape_images(count, seed=seed, size=IMAGE_SIZE)
    pixels = np.clip(images * 0.3 + 0.5, 0, 1) * 255  # undo the generator's normalization: 0..255 RGB
    for index, (image, label) in enumerate(zip(pixels.astype(np.uint8), labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{index:05d}.png")


class ImageFolderLoader(DataLoader):
    """The POT data loader: item ``index`` is ``(image as a CHW float array, class index)``."""

    def __init__(self, config):
        super().__init__(config)
        preprocessing = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
        self._dataset = torchvision.datasets.ImageFolder(self.config.data_source, transform=preprocessing)

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, index):
        image, label = self._dataset[index]
        return image.numpy(), label


class TorchmetricsAccuracy(Metric):
    """A POT metric computed with torchmetrics' multiclass accuracy."""

    def __init__(self, num_classes):
        self._accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self._last = []
        super().__init__()

    @property
    def value(self):
        return {"accuracy": self._last}

    @property
    def avg_value(self):
        return {"accuracy": float(self._accuracy.compute())}

    def update(self, output, target):
        logits = torch.from_numpy(output[0])
        labels = torch.as_tensor(target)
        self._last = (logits.argmax(1) == labels).float().tolist()
        self._accuracy.update(logits, labels)

    def reset(self):
        self._accuracy.reset()
        self._last = []

    def get_attributes(self):
        return {"accuracy": {"direction": "higher-better", "type": "accuracy"}}


def fine_tune(model: torch.nn.Module, data_root: pathlib.Path, steps: int) -> torch.nn.Module:
    """A few steps of ordinary PyTorch training on the ImageFolder."""
    preprocessing = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    dataset = torchvision.datasets.ImageFolder(data_root, transform=preprocessing)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    step = 0
    while step < steps:
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few images, no fine-tuning (smoke test)")
    parser.add_argument("--images", type=int, help="images per split (default: 1000, 48 with --quick)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: 150, 0 with --quick)")
    args = parser.parse_args()
    count = args.images or (48 if args.quick else 1000)
    steps = args.steps if args.steps is not None else (0 if args.quick else 150)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory(prefix="pot_torch_imagefolder_") as workdir:
        train_root, val_root = pathlib.Path(workdir, "train"), pathlib.Path(workdir, "val")
        write_image_folder(train_root, count, seed=0)
        write_image_folder(val_root, count, seed=1)

        network = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
        network = fine_tune(network, train_root, steps)
        ov_model = ov.convert_model(network, example_input=torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
        model = CompressedModel(ov_model, model_name="resnet18")

        # --- the POT script ------------------------------------------------------------------------------
        data_loader = ImageFolderLoader({"data_source": str(val_root)})
        metric = TorchmetricsAccuracy(num_classes=len(CLASSES))
        engine = IEEngine(config={"device": "CPU"}, data_loader=data_loader, metric=metric)
        algorithms = [{"name": "DefaultQuantization",
                       "params": {"target_device": "ANY", "preset": "performance",
                                  "stat_subset_size": min(300, count)}}]
        pipeline = create_pipeline(algorithms, engine)
        quantized = pipeline.run(model)
        fp32 = pipeline.evaluate(model)["accuracy"]
        int8 = pipeline.evaluate(quantized)["accuracy"]
    print(f"resnet18 accuracy on {count} images: FP32 {fp32:.3f}, INT8 {int8:.3f}")


if __name__ == "__main__":
    main()
