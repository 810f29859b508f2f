"""A POT script, written as POT's documentation showed it, with only the import line changed.

    python examples/pot_script_ported.py            # about a minute on 2 CPU cores
    python examples/pot_script_ported.py --quick    # a few seconds (smoke test)

``prepare_model_and_data`` first makes what a POT user already had: an IR (a small CNN trained on generated
images, with its input normalization inside the model, as Model Optimizer's ``--mean_values``/``--scale_values``
put it there) and a folder of images named ``<index>_<label>.png``. Everything from "POT script" on is POT's
documented flow: a ``DataLoader`` over the folder, an ``Accuracy`` metric, ``load_model``, ``IEEngine``,
``create_pipeline`` with DefaultQuantization (then AccuracyAwareQuantization), ``compress_model_weights``,
``save_model`` and ``pipeline.evaluate``.
"""
import argparse
import os
import tempfile

import numpy as np
from PIL import Image

# before: from openvino.tools.pot import DataLoader, IEEngine, Metric, compress_model_weights, \
#             create_pipeline, load_model, save_model
from pot_torch import DataLoader, IEEngine, Metric, compress_model_weights, create_pipeline, load_model, save_model


def prepare_model_and_data(workdir, quick):
    """Write ``workdir/model/cnn.xml|.bin`` and ``workdir/images/*.png``; return their paths."""
    import openvino as ov
    import torch

    from pot_torch_showcase.synthetic import shape_images, shapes_dataset, small_cnn, train_classifier

    network = train_classifier(small_cnn(8 if quick else 24), shapes_dataset(400 if quick else 4000, seed=0),
                               steps=20 if quick else 300, batch=32)

    class WithNormalization(torch.nn.Module):  # takes 0..255 RGB pixels, like an IR converted by Model Optimizer
        def __init__(self, network):  # with --mean_values/--scale_values
            super().__init__()
            self.network = network

        def forward(self, pixels):
            return self.network((pixels / 255.0 - 0.5) / 0.3)

    ov_model = ov.convert_model(WithNormalization(network).eval(), example_input=torch.zeros(1, 3, 32, 32))
    model_xml = os.path.join(workdir, "model", "cnn.xml")
    ov.save_model(ov_model, model_xml, compress_to_fp16=False)

    images, labels = shape_images(100 if quick else 600, seed=1)
    pixels = (np.clip(images * 0.3 + 0.5, 0, 1) * 255).astype(np.uint8)
    image_dir = os.path.join(workdir, "images")
    os.makedirs(image_dir)
    for index, (image, label) in enumerate(zip(pixels, labels)):
        Image.fromarray(image.transpose(1, 2, 0)).save(os.path.join(image_dir, f"{index:05d}_{label}.png"))
    return model_xml, model_xml.replace(".xml", ".bin"), image_dir


# ------------------------------------------------------------------------------------------------ POT script
class ImageLoader(DataLoader):
    """Images of a folder; the label is in the file name (``<index>_<label>.png``)."""

    def __init__(self, config):
        super().__init__(config)
        self._files = sorted(os.listdir(config["data_source"]))

    def __len__(self):
        return len(self._files)

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError("Index out of dataset size")
        name = self._files[index]
        image = Image.open(os.path.join(self.config["data_source"], name)).convert("RGB")
        annotation = int(os.path.splitext(name)[0].split("_")[1])
        return np.asarray(image, dtype=np.float32).transpose(2, 0, 1), annotation


class Accuracy(Metric):
    """Top-k accuracy, as in POT's documentation."""

    def __init__(self, top_k=1):
        super().__init__()
        self._top_k = top_k
        self._name = "accuracy@top{}".format(self._top_k)
        self._matches = []

    @property
    def value(self):
        """Returns accuracy metric value for the last model output."""
        return {self._name: self._matches[-1]}

    @property
    def avg_value(self):
        """Returns accuracy metric value for all model outputs."""
        return {self._name: np.ravel(self._matches).mean()}

    def update(self, output, target):
        """Updates prediction matches.

        :param output: model output
        :param target: annotations
        """
        if len(output) > 1:
            raise Exception("The accuracy metric cannot be calculated for a model with multiple outputs")
        if isinstance(target, dict):
            target = list(target.values())
        predictions = np.argsort(output[0], axis=1)[:, -self._top_k:]
        match = [float(t in predictions[i]) for i, t in enumerate(target)]
        self._matches.append(match)

    def reset(self):
        """Resets collected matches."""
        self._matches = []

    def get_attributes(self):
        """Returns a dictionary of metric attributes {metric_name: {attribute_name: value}}."""
        return {self._name: {"direction": "higher-better", "type": "accuracy"}}


def run_pot_script(model_xml, model_bin, image_dir, output_dir):
    model_config = {"model_name": "cnn", "model": model_xml, "weights": model_bin}
    engine_config = {"device": "CPU"}
    dataset_config = {"data_source": image_dir}
    algorithms = [
        {
            "name": "DefaultQuantization",
            "params": {"target_device": "ANY", "preset": "performance", "stat_subset_size": 300},
        }
    ]

    model = load_model(model_config=model_config)
    data_loader = ImageLoader(config=dataset_config)
    metric = Accuracy(top_k=1)
    engine = IEEngine(config=engine_config, data_loader=data_loader, metric=metric)
    pipeline = create_pipeline(algorithms, engine)

    compressed_model = pipeline.run(model=model)
    compress_model_weights(compressed_model)
    compressed_model_paths = save_model(model=compressed_model, save_path=os.path.join(output_dir, "default"),
                                        model_name="cnn_int8")
    print("DefaultQuantization:", compressed_model_paths[0]["model"])
    print("  FP32:", pipeline.evaluate(model=model))
    print("  INT8:", pipeline.evaluate(model=compressed_model))

    # The same with accuracy control: at most 0.5 points lost.
    accuracy_aware = [
        {
            "name": "AccuracyAwareQuantization",
            "params": {"target_device": "ANY", "preset": "performance", "stat_subset_size": 300,
                       "maximal_drop": 0.005},
        }
    ]
    pipeline = create_pipeline(accuracy_aware, engine)
    compressed_model = pipeline.run(model=model)
    compress_model_weights(compressed_model)
    compressed_model_paths = save_model(model=compressed_model, save_path=os.path.join(output_dir, "accuracy_aware"),
                                        model_name="cnn_int8")
    print("AccuracyAwareQuantization:", compressed_model_paths[0]["model"])
    print("  INT8:", pipeline.evaluate(model=compressed_model))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and data (smoke test)")
    parser.add_argument("-o", "--output", help="folder for the INT8 IR (default: a new temporary folder)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pot_torch_pot_script_")
    model_xml, model_bin, image_dir = prepare_model_and_data(workdir, args.quick)
    run_pot_script(model_xml, model_bin, image_dir, args.output or os.path.join(workdir, "optimized"))


if __name__ == "__main__":
    main()
