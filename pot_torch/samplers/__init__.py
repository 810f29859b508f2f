"""Samplers: which data set items an engine reads, and in which batches."""
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.samplers.index_sampler import IndexSampler
from pot_torch.samplers.sampler import Sampler

__all__ = ["Sampler", "BatchSampler", "IndexSampler"]
