"""pot_torch: the POT (Post-training Optimization Tool) Python API on the current OpenVINO runtime.

Replace ``from openvino.tools.pot import ...`` with ``from pot_torch import ...``.
"""
from pot_torch.api import DataLoader, Engine, Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import Pipeline, create_pipeline
from pot_torch.samplers import BatchSampler, IndexSampler, Sampler

__version__ = "0.1.0"

__all__ = [
    "DataLoader", "Metric", "Engine", "IEEngine", "Pipeline", "create_pipeline", "load_model", "save_model",
    "compress_model_weights", "CompressedModel", "Sampler", "BatchSampler", "IndexSampler",
]
