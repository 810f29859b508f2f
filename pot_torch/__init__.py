"""pot_torch: the POT (Post-training Optimization Tool) Python API on the current OpenVINO runtime.

Replace ``from openvino.tools.pot import ...`` with ``from pot_torch import ...``.
"""
from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization
from pot_torch.algorithms.quantization.accuracy_aware_common import AccuracyAwareCommon
from pot_torch.algorithms.quantization.bias_correction import BiasCorrection
from pot_torch.algorithms.quantization.channel_alignment import ActivationChannelAlignment
from pot_torch.algorithms.quantization.data_free import DataFreeQuantization
from pot_torch.algorithms.quantization.default import DefaultQuantization
from pot_torch.algorithms.quantization.fast_bias_correction import FastBiasCorrection
from pot_torch.algorithms.quantization.int4_mixed import INT4MixedQuantization
from pot_torch.algorithms.quantization.minmax import MinMaxQuantization
from pot_torch.algorithms.quantization.outlier_channel_splitting import OutlierChannelSplitting
from pot_torch.algorithms.quantization.params_grid_search import ParamsGridSearchAlgorithm
from pot_torch.algorithms.quantization.qnoise_estimator import QuantNoiseEstimator
from pot_torch.algorithms.quantization.range_optimization import RangeOptimization
from pot_torch.algorithms.quantization.range_supervision import RangeSupervision
from pot_torch.algorithms.quantization.tunable_quantization import TunableQuantization
from pot_torch.algorithms.quantization.unavailable import AccuracyAwareGNA, OverflowCorrection
from pot_torch.algorithms.quantization.weight_bias_correction import WeightBiasCorrection
from pot_torch.algorithms.sparsity.magnitude_sparsity import MagnitudeSparsity
from pot_torch.algorithms.sparsity.weight_sparsity import BaseWeightSparsity, WeightSparsity
from pot_torch.api import DataLoader, Engine, Metric
from pot_torch.engines.ie_engine import IEEngine
from pot_torch.graph.model_io import load_model, save_model
from pot_torch.graph.nx_model import CompressedModel
from pot_torch.graph.weights_compression import compress_model_weights
from pot_torch.pipeline import Pipeline, create_pipeline
from pot_torch.samplers import BatchSampler, IndexSampler, Sampler

__version__ = "0.1.0"

#: POT's top-level algorithm classes that pot_torch implements (POT 2023.3 exported these among others;
#: docs/pot-compatibility.md lists the rest, which are not implemented). The GNA-only OverflowCorrection and
#: AccuracyAwareGNA import, but creating them raises ValueError saying why and what to use instead.
QUANTIZATION_ALGORITHMS = [
    "MinMaxQuantization", "FastBiasCorrection", "BiasCorrection", "ActivationChannelAlignment",
    "DefaultQuantization", "AccuracyAwareQuantization", "AccuracyAwareCommon",
    "RangeOptimization", "ParamsGridSearchAlgorithm", "TunableQuantization", "OverflowCorrection", "AccuracyAwareGNA",
    "INT4MixedQuantization",
    "DataFreeQuantization", "WeightBiasCorrection", "OutlierChannelSplitting", "RangeSupervision",
    "QuantNoiseEstimator",
]
#: POT's sparsity algorithms (MagnitudeSparsity, WeightSparsity, BaseWeightSparsity).
SPARSITY_ALGORITHMS = ["WeightSparsity", "MagnitudeSparsity", "BaseWeightSparsity"]

__all__ = QUANTIZATION_ALGORITHMS + SPARSITY_ALGORITHMS + [
    "DataLoader", "Metric", "Engine", "IEEngine", "Pipeline", "create_pipeline", "load_model", "save_model",
    "compress_model_weights", "CompressedModel", "Sampler", "BatchSampler", "IndexSampler",
]
