"""OpenVINO inference engines: ``IEEngine`` and helpers for custom engines."""
