"""The algorithm registry: lookup by POT name, errors listing the registered names."""
import pytest

from pot_torch.algorithms import COMPRESSION_ALGORITHMS, Algorithm, Registry


def test_unknown_name_lists_registered_ones():
    registry = Registry("Algos")

    @registry.register("Alpha")
    class Alpha(Algorithm):
        def run(self, model, statistics=None):
            return model

    assert registry.get("Alpha") is Alpha and Alpha.name == "Alpha"
    assert registry.get("Algos.Alpha") is Alpha  # POT's 'Registry.Name' form
    with pytest.raises(ValueError, match=r"Unknown algorithm 'Beta'. Registered algorithms: Alpha\."):
        registry.get("Beta")


def test_duplicate_registration_is_refused():
    registry = Registry("Algos")

    @registry.register("Alpha")
    class Alpha(Algorithm):
        def run(self, model, statistics=None):
            return model

    with pytest.raises(ValueError, match="'Alpha' is already registered"):
        @registry.register("Alpha")
        class Other(Algorithm):
            def run(self, model, statistics=None):
                return model


def test_quantization_algorithms_are_registered_by_pot_name():
    for name in ["MinMaxQuantization", "DefaultQuantization", "FastBiasCorrection", "BiasCorrection",
                 "ActivationChannelAlignment"]:
        assert name in COMPRESSION_ALGORITHMS, name


def test_misspelt_name_suggests_the_close_registered_ones():
    with pytest.raises(ValueError, match=r"Unknown algorithm 'DefaultQuantisation' \(did you mean "
                                         r"'DefaultQuantization'\?\)\. Registered algorithms: AccuracyAware"):
        COMPRESSION_ALGORITHMS.get("DefaultQuantisation")
