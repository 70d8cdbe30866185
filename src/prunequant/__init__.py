"""prunequant: learned pruning, MAC-budget pruning, piecewise-linear quantization and joint pruning +
mixed-precision QAT for PyTorch models that stay ordinary ``nn.Module``s."""
from .api import finalize_, prune_, prune_quantize_, quantize_, register_handler

__version__ = "0.1.0"
__all__ = ["finalize_", "prune_", "quantize_", "prune_quantize_", "register_handler", "__version__"]
