"""Power-of-two (log2) post-training weight quantization (docs/log2.md).

Importing this package registers :class:`Log2WeightQuant` (scheme ``"log2"``) with the quantizer registry and
:class:`Log2Config` with ``quantize_``.
"""
from ..handler import register_ptq_config
from .config import Log2Config
from .quantizer import Log2WeightQuant, log2_codes, log2_dequantize, log2_quantize, log2_scale

register_ptq_config(Log2Config)

__all__ = ["Log2Config", "Log2WeightQuant", "log2_codes", "log2_dequantize", "log2_quantize", "log2_scale"]
