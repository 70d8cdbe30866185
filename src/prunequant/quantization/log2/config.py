"""``Log2Config``: post-training power-of-two weight quantization through ``quantize_``."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ...errors import ConfigError
from ..config import PTQConfig
from .quantizer import Log2WeightQuant


@dataclass
class Log2Config(PTQConfig):
    """Power-of-two (log2) weights: ``quantize_(model, Log2Config(wbits=4, abits=8), calibration_data=x)``.

    Shared pipeline fields (BN folding, activation calibration, bias correction, skip / keep_8bit): see
    :class:`~prunequant.quantization.config.PTQConfig`. ``scale_search``: number of per-channel scale candidates
    ``max|w| * 2^(-t/scale_search)`` tried (1 = max-scaled). See docs/log2.md.
    """

    scale_search: int = 8

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.scale_search, bool) or not isinstance(self.scale_search, int) or self.scale_search < 1:
            raise ConfigError(f"Log2Config.scale_search must be an integer >= 1, got {self.scale_search!r}")

    @property
    def scheme_name(self) -> str:
        return "log2"

    def make_quantizer(self, w: Tensor, bits: int, name: str) -> Log2WeightQuant:
        return Log2WeightQuant.from_weight(w, bits, dim=self.dim, search=self.scale_search, name=name)
