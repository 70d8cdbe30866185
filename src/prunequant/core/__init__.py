"""The shared representation every method, exporter and report builds on.

Imports nothing of the package but :mod:`prunequant.errors`:

* :mod:`.targets` - which weights a config selects (:class:`Selector`, :func:`compressible_weights`).
* :mod:`.checks` - the one set of input checks (:func:`check_weight`, :func:`check_bits`).
* :mod:`.masks` - mask parametrizations (:class:`MaskParametrization`, :class:`FixedMask`).
* :mod:`.chain` - the parametrization-chain accessor (:class:`WeightChain`).
* :mod:`.tracing` - the one forward-hook tracer (:func:`trace_layers`) and the MAC rules it applies.
* :mod:`.quantizer`, :mod:`.cost` - the quantizer protocol and the storage cost model.
* :mod:`.resize` - shapes of channel-pruned models (:func:`resize_to_state_dict_`, :class:`HeadPrunedAttention`).
* :mod:`.fidelity` - the compressed model against its fp32 self, per layer and at the output (run by every verb).
"""
