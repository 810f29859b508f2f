"""Hardware descriptions: where FakeQuantize goes for each target device (JSON data)."""
