"""prunequant: learned pruning, MAC-budget pruning, piecewise-linear quantization and joint pruning +
mixed-precision QAT for PyTorch models that stay ordinary ``nn.Module``s."""
from .api import finalize_, prune_, prune_quantize_, quantize_
from .registry import register_handler

__version__ = "0.1.0"
__all__ = ["finalize_", "load", "prune_", "quantize_", "prune_quantize_", "register_handler", "save", "__version__"]


def save(model, path):
    """Write ``model`` (quantizers, masks, activation quantizers, construction recipe) as one compressed ``.pq``
    file; see :func:`prunequant.export.pqfile.save`. Returns a ``SaveResult`` (path, file bytes)."""
    from .export.pqfile import save as _save

    return _save(model, path)


def load(path, model=None):
    """Read a ``.pq`` file: the quantized model, outputs bit-identical to the saved one; see
    :func:`prunequant.export.pqfile.load`."""
    from .export.pqfile import load as _load

    return _load(path, model=model)
