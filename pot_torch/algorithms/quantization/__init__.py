"""Quantization algorithms; importing this package registers each of them."""
from pot_torch.algorithms.quantization import minmax  # noqa: F401
from pot_torch.algorithms.quantization import channel_alignment  # noqa: F401
from pot_torch.algorithms.quantization import smooth_quant  # noqa: F401
from pot_torch.algorithms.quantization import fast_bias_correction  # noqa: F401
from pot_torch.algorithms.quantization import bias_correction  # noqa: F401
from pot_torch.algorithms.quantization import default  # noqa: F401
from pot_torch.algorithms.quantization import accuracy_aware  # noqa: F401
