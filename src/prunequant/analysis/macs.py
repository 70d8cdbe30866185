"""MAC rules per layer call (see :mod:`prunequant.core.macs`, where they live so every tracer shares them)."""
from __future__ import annotations

from ..core.macs import (
    ZERO_MAC_TYPES,
    CallMacs,
    WeightUse,
    call_macs,
    flop_counter_macs,
    is_known,
    weight_nonzeros,
)

__all__ = ["ZERO_MAC_TYPES", "CallMacs", "WeightUse", "call_macs", "flop_counter_macs", "is_known", "weight_nonzeros"]
