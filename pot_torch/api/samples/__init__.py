"""Helpers shared by POT's API samples (``openvino.tools.pot.api.samples``)."""
