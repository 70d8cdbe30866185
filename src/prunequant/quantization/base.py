"""Quantization names re-exported from the shared representation in :mod:`prunequant.core.quantizer`.

The quantizer protocol (:class:`WeightFakeQuant`, :class:`ActFakeQuant`, :class:`QuantSpec`, :class:`IntForm`,
the registry) and the per-channel tensor helpers live in ``core`` so that ``io``, ``export`` and ``analysis`` need
not import this package; the quantization modules import them from here.
"""
from ..core.quantizer import (  # noqa: F401
    MAX_BITS,
    MIN_BITS,
    ActFakeQuant,
    IntForm,
    QuantSpec,
    RegionForm,
    WeightFakeQuant,
    attach_input_quant,
    check_bits,
    check_weight,
    detach_input_quant,
    from_channels,
    per_channel,
    quantizer_class,
    quantizer_from_spec,
    register_quantizer,
    registered_schemes,
    ste,
    to_channels,
)

__all__ = ["MAX_BITS", "MIN_BITS", "ActFakeQuant", "IntForm", "QuantSpec", "RegionForm", "WeightFakeQuant",
           "attach_input_quant", "check_bits", "check_weight", "detach_input_quant", "from_channels", "per_channel",
           "quantizer_class", "quantizer_from_spec", "register_quantizer", "registered_schemes", "ste",
           "to_channels"]
