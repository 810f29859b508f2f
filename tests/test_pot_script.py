"""A script written for openvino.tools.pot runs with only its import changed, and gives OpenVINO's numbers."""
import os

import numpy as np
import openvino as ov
import pytest

from model_builders import conv_model

# --- the POT script, as POT's classification sample writes it (cv2 replaced by .npy files) ---------------
from pot_torch import (Metric, DataLoader, IEEngine, load_model, save_model, compress_model_weights,
                       create_pipeline)
from pot_torch.utils.logger import init_logger


class ImageNetDataLoader(DataLoader):

    def __init__(self, config):
        super().__init__(config)
        self._annotations, self._img_ids = self._read_img_ids_annotations(self.config)

    def __len__(self):
        return len(self._img_ids)

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError
        annotation = self._annotations[self._img_ids[index]] if self._annotations else None
        return self._read_image(self._img_ids[index]), annotation

    @staticmethod
    def _read_img_ids_annotations(dataset):
        annotations = {}
        img_ids = []
        if dataset.annotation_file:
            with open(dataset.annotation_file) as f:
                for line in f:
                    img_id, annotation = line.split(" ")
                    annotation = int(annotation.rstrip('\n'))
                    annotations[img_id] = annotation + 1 if dataset.has_background else annotation
                    img_ids.append(img_id)
        else:
            img_ids = sorted(os.listdir(dataset.data_source))
        return annotations, img_ids

    def _read_image(self, index):
        return np.load(os.path.join(self.config.data_source, index))


class Accuracy(Metric):

    def __init__(self, top_k=1):
        super().__init__()
        self._top_k = top_k
        self._name = 'accuracy@top{}'.format(self._top_k)
        self._matches = []

    @property
    def avg_value(self):
        return {self._name: np.ravel(self._matches).mean()}

    def update(self, output, target):
        if len(output) > 1:
            raise Exception('The accuracy metric cannot be calculated '
                            'for a model with multiple outputs')
        if isinstance(target, dict):
            target = list(target.values())
        predictions = np.argsort(output[0], axis=1)[:, -self._top_k:]
        match = [float(t in predictions[i]) for i, t in enumerate(target)]
        self._matches.append(match)

    def reset(self):
        self._matches = []

    def get_attributes(self):
        return {self._name: {'direction': 'higher-better', 'type': 'accuracy'}}


def optimize_model(model_path, data_dir, annotation_file):
    init_logger(level='INFO')
    model_config = {'model_name': 'sample_model', 'model': model_path,
                    'weights': '{}.bin'.format(os.path.splitext(model_path)[0])}
    engine_config = {'device': 'CPU'}
    dataset_config = {'data_source': data_dir, 'annotation_file': annotation_file, 'has_background': False}
    algorithms = [{'name': 'DefaultQuantization',
                   'params': {'target_device': 'ANY', 'preset': 'performance', 'stat_subset_size': 300}}]
    model = load_model(model_config)
    data_loader = ImageNetDataLoader(dataset_config)
    metric = Accuracy(top_k=1)
    engine = IEEngine(engine_config, data_loader, metric)
    pipeline = create_pipeline(algorithms, engine)
    compressed_model = pipeline.run(model)
    compress_model_weights(compressed_model)
    return model, compressed_model, pipeline, engine
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("pot_script")
    model = conv_model(seed=3)
    ov.save_model(model, root / "model.xml", compress_to_fp16=False)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    compiled = ov.Core().compile_model(model, "CPU")
    lines, expected_logits = [], []
    for i in range(24):
        image = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
        np.save(images / f"img{i:03d}.npy", image)
        logits = compiled(image)[0]
        expected_logits.append(logits)
        label = int(np.argmax(logits)) if i % 3 else int(np.argsort(logits[0])[-2])  # 2/3 right
        lines.append(f"img{i:03d}.npy {label}\n")
    (root / "labels.txt").write_text("".join(lines))
    return root, np.concatenate(expected_logits), [int(line.split()[1]) for line in lines]


def test_pot_script_runs_and_matches_plain_openvino(workspace, tmp_path):
    root, logits, labels = workspace
    model, compressed, pipeline, engine = optimize_model(str(root / "model.xml"), str(root / "images"),
                                                         str(root / "labels.txt"))
    expected = float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
    assert pipeline.evaluate(model) == {"accuracy@top1": pytest.approx(expected)}
    engine.set_model(model)
    metrics, stats = engine.predict()
    assert metrics == {"accuracy@top1": pytest.approx(expected)} and stats is None
    paths = save_model(compressed, str(tmp_path / "optimized"))
    assert paths == [{"model": str(tmp_path / "optimized" / "sample_model.xml"),
                      "weights": str(tmp_path / "optimized" / "sample_model.bin")}]  # POT's single-model form
    int8 = pipeline.evaluate(load_model({"model_name": "m", "model": paths[0]["model"],
                                         "weights": paths[0]["weights"]}))
    assert int8["accuracy@top1"] >= expected - 0.1


def test_pot_script_without_annotation_file_reads_folder(workspace):
    root, _, _ = workspace
    loader = ImageNetDataLoader({"data_source": str(root / "images")})
    assert len(loader) == 24 and loader[0][1] is None
