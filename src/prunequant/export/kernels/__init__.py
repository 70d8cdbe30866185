"""Deployment kernels for compressed layers, one module per kind (no selection policy here; see ``export.select``).

* :mod:`.sparse` - CSR Linear / Conv2d.
* :mod:`.int8` - int8 Linear / Conv2d over ``torch.ao`` (exact weights from a quantizer's int8 form).
* :mod:`.pwlq_int8` - multi-branch int8 Linear / Conv2d (PWLQ's accumulator split).
* :mod:`.weight_only` - weight-only GEMM with codes dequantized on the fly (torch reference + Triton).
* :mod:`.packed_weight_only` - CPU weight-only Linear for any quantizer, group-wise ones included.
"""
from .int8 import Int8Conv2d, Int8Linear, int8_weight
from .packed_weight_only import PackedWeightOnlyLinear, to_packed_weight_only_
from .pwlq_int8 import PWLQInt8Conv2d, PWLQInt8Linear, int8_branches, pwlq_branches
from .sparse import SparseConv2d, SparseLinear
from .weight_only import KernelWeights, WeightOnlyLinear, pack_weight_only

__all__ = ["Int8Conv2d", "Int8Linear", "KernelWeights", "PackedWeightOnlyLinear", "PWLQInt8Conv2d", "PWLQInt8Linear",
           "SparseConv2d", "SparseLinear", "WeightOnlyLinear", "int8_branches", "int8_weight", "pack_weight_only",
           "pwlq_branches", "to_packed_weight_only_"]
