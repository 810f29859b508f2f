"""Samplers: POT's batching, ``len`` in samples, subsets and index sampling."""
import pytest

from pot_torch import BatchSampler, IndexSampler, Sampler
from pot_torch.samplers.batch_sampler import BatchSampler as BatchSamplerByPotPath


class ListLoader:
    def __init__(self, n):
        self.items = [(i, f"label{i}") for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_batch_sampler_batches_and_counts_samples():
    sampler = BatchSampler(ListLoader(7), batch_size=3)
    batches = list(sampler)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[2] == [(6, "label6")]
    assert len(sampler) == 7  # samples, not batches, as in POT
    assert sampler.num_samples() == 7


def test_batch_sampler_subset_indices_in_given_order_with_indices():
    sampler = BatchSampler(ListLoader(10), batch_size=2, subset_indices=[9, 2, 5])
    assert list(sampler.iter_indexed()) == [([9, 2], [(9, "label9"), (2, "label2")]), ([5], [(5, "label5")])]
    assert len(sampler) == 3


def test_pot_import_path_is_the_same_class():
    assert BatchSamplerByPotPath is BatchSampler


def test_index_sampler_yields_indices():
    sampler = IndexSampler([4, 1, 3])
    assert list(sampler) == [4, 1, 3] and len(sampler) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_batch_size_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="Sampler batch_size must be a positive integer"):
        BatchSampler(ListLoader(3), batch_size=bad)


def test_batch_sampler_needs_loader():
    with pytest.raises(ValueError, match="BatchSampler needs a data_loader"):
        BatchSampler(None)


def test_sampler_is_abstract():
    with pytest.raises(TypeError):
        Sampler()  # type: ignore[abstract]


@pytest.mark.parametrize("indices, bad", [([0, -1], "-1"), ([3], "3"), ([0, 1.0], "1.0"), ([True], "True")])
def test_batch_sampler_refuses_what_is_not_an_index_of_the_data_set(indices, bad):
    """-1 would read the last item without a word (a list's negative index): refused like any index outside."""
    with pytest.raises(ValueError) as raised:
        BatchSampler(ListLoader(3), subset_indices=indices)
    assert str(raised.value) == (f"BatchSampler subset_indices holds {bad}, which is not an index of the data set "
                                 "(3 items: 0 to 2)")


def test_batch_sampler_subset_indices_must_be_a_sequence():
    with pytest.raises(ValueError, match=r"BatchSampler subset_indices must be a list of data set indices such as "
                                         r"\[0, 5, 9\], got '012'"):
        BatchSampler(ListLoader(3), subset_indices="012")
