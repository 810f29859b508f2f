"""The demo and its data, shipped with pot_torch but outside the library (needs the ``torch`` extra).

* ``demo``: ``pot-torch demo`` (train a small CNN on generated images, quantize it, compare FP32 and INT8);
* ``synthetic``: the generated image data set and small CNN the demo, the examples, tests and benchmarks use.

The library (``pot_torch``, ``pot_torch.adapters``) does not import this package; only the ``pot-torch demo``
command (``pot_torch.cli``) does, when it runs.
"""
