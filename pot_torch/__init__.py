"""pot_torch: the POT (Post-training Optimization Tool) Python API on the current OpenVINO runtime.

Replace ``from openvino.tools.pot import ...`` with ``from pot_torch import ...``.
"""
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization
from pot_torch.algorithms.quantization.bias_correction import BiasCorrection
from pot_torch.algorithms.quantization.channel_alignment import ActivationChannelAlignment
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.algorithms.quantization.fast_bias_correction import FastBiasCorrection
from pot_torch.algorithms.quantization.minmax import MinMaxQuantization
from pot_torch.api import DataLoader, Engine, Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import Pipeline, create_pipeline
from pot_torch.samplers import BatchSampler, IndexSampler, Sampler

__version__ = "0.1.0"

#: POT's top-level algorithm classes that pot_torch implements (POT 2023.3 exported these among others;
#: docs/pot-compatibility.md lists the rest, which are not implemented).
QUANTIZATION_ALGORITHMS = [
    "MinMaxQuantization", "FastBiasCorrection", "BiasCorrection", "ActivationChannelAlignment",
    "DefaultQuantization", "AccuracyAwareQuantization",
]

__all__ = QUANTIZATION_ALGORITHMS + [
    "DataLoader", "Metric", "Engine", "IEEngine", "Pipeline", "create_pipeline", "load_model", "save_model",
    "compress_model_weights", "CompressedModel", "Sampler", "BatchSampler", "IndexSampler",
]
