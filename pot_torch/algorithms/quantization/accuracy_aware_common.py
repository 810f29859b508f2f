"""``AccuracyAwareCommon``: POT's device-independent accuracy-aware algorithm, under its own name.

In POT, ``AccuracyAwareQuantization`` chose ``AccuracyAwareCommon`` for every target device but GNA and ran it;
configs could also name ``AccuracyAwareCommon`` directly. pot_torch's ``AccuracyAwareQuantization`` is that
algorithm, so ``AccuracyAwareCommon`` is it under POT's other name: same parameters, defaults and behaviour.
"""
from __future__ import annotations

from pot_torch.algorithms.quantization.accuracy_aware import AccuracyAwareQuantization
from pot_torch.algorithms.registry import COMPRESSION_ALGORITHMS


@COMPRESSION_ALGORITHMS.register("AccuracyAwareCommon")
class AccuracyAwareCommon(AccuracyAwareQuantization):
    """``AccuracyAwareQuantization`` under POT's name for its device-independent implementation."""
