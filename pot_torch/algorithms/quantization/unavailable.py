"""POT algorithms that cannot work on the current OpenVINO runtime: importable by their POT names, refused when
created, with the reason and what to use instead."""
from __future__ import annotations

from typing import Any, List, Optional

from pot_torch.algorithms.algorithm import Algorithm
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS
from pot_torch.statistics.collector import Statistics


class UnavailableAlgorithm(Algorithm):
    """A POT algorithm pot_torch refuses: creating it raises ``ValueError`` with ``reason``."""

    #: why the algorithm is not available and what to use instead
    reason: str = ""

    def __init__(self, config: Any = None, engine: Any = None) -> None:  # noqa: D107 (always raises)
        raise ValueError(f"{self.name} is not available in pot_torch: {self.reason}")

    def run(self, model: Any, statistics: Optional[List[Statistics]] = None) -> Any:
        """Never reached: the constructor raises."""
        raise ValueError(f"{self.name} is not available in pot_torch: {self.reason}")


_GNA_GONE = ("it exists for Intel GNA (Gaussian & Neural Accelerator), whose plugin was removed from OpenVINO in "
             "2024.0, so there is no device left to run its result on. ")


@COMPRESSION_ALGORITHMS.register("OverflowCorrection")
class OverflowCorrection(UnavailableAlgorithm):
    """POT's rescaling of >8-bit weights so GNA's integer accumulators do not overflow (GNA only)."""

    reason = (_GNA_GONE + "The CPU plugin accumulates INT8 products without that limit: quantize with "
              "DefaultQuantization (or MinMaxQuantization) and leave OverflowCorrection out of the pipeline.")


@COMPRESSION_ALGORITHMS.register("AccuracyAwareGNA")
class AccuracyAwareGNA(UnavailableAlgorithm):
    """POT's accuracy-aware search between GNA's 8- and 16-bit quantization (GNA only)."""

    reason = (_GNA_GONE + "For accuracy control on the CPU use AccuracyAwareQuantization, which returns the most "
              "harmful layers to floating point until the metric drop is within 'maximal_drop'.")
