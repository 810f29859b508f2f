"""``create_sampler``: the sampler most algorithms need, as POT's ``samplers/creator.py`` made it."""
from __future__ import annotations

from typing import Any, Sequence, Union

from pot_torch.algorithms.params import calibration_indices
from pot_torch.samplers.batch_sampler import BatchSampler
from pot_torch.samplers.index_sampler import IndexSampler  # noqa: F401  (POT's creator exported it)
from pot_torch.utils.unsupported import unsupported_class

#: POT's Accuracy Checker engine, for which ``create_sampler`` made an ``IndexSampler``.
ACEngine = unsupported_class(
    "openvino.tools.pot.engines.ac_engine.ACEngine",
    "Accuracy Checker left OpenVINO with openvino-dev; use IEEngine with a DataLoader and a Metric")


def create_sampler(engine: Any, samples: Union[int, Sequence[int]], shuffle_data: bool = False, seed: int = 0,
                   batch_size: int = 1) -> BatchSampler:
    """A ``BatchSampler`` over ``engine.data_loader``.

    :param samples: the data set indices to read, or how many items: the first ``samples`` ones, or with
        ``shuffle_data`` that many drawn at random with ``seed`` (from a private generator, in data set order;
        POT seeded Python's global one and kept the drawn order).
    :param batch_size: items per batch.
    :raises ValueError: the engine has no data loader, or ``samples`` is not a count or indices.
    """
    data_loader = getattr(engine, "data_loader", None)
    if data_loader is None:
        raise ValueError("create_sampler: the engine has no data_loader; create it with "
                         "IEEngine(config, data_loader=..., metric=...)")
    if isinstance(samples, bool) or not isinstance(samples, (int, Sequence, range)) or isinstance(samples, str):
        raise ValueError(f"create_sampler: samples must be a number of items or a list of data set indices, "
                         f"got {samples!r}")
    if isinstance(samples, int):
        samples = calibration_indices({"shuffle_data": shuffle_data, "seed": seed}, len(data_loader), samples)
    return BatchSampler(data_loader, batch_size=batch_size, subset_indices=list(samples))
