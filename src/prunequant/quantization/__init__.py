"""Post-training quantization: uniform and piecewise linear (PWLQ) quantizers, breakpoint search, Lloyd-Max
reference, BN folding, activation calibration, bias correction, and ``PWLQConfig`` for ``quantize_``.

Functional core (vectorized over channels, CPU or CUDA)::

    uniform_quantize(w, bits, scale, zero_point, signed=True, dim=0)
    pwlq_quantize(w, bits, breakpoints, max_abs, variant="b_center", dim=0)
    find_breakpoints(w, bits, method="empirical", n_breakpoints=1, dim=0)

Model level::

    quantize_(model, PWLQConfig(wbits=4, abits=8), calibration_data=loader)
    quantize_(model, UniformConfig(wbits=8), calibration_data=loader)
    quantize_(model, Log2Config(wbits=4), calibration_data=loader)

Importing this package registers the configs with :mod:`prunequant.registry` and the weight quantizers
(``uniform``, ``pwlq``, ``log2``, group-wise ``uniform-group`` / ``pwlq-group``) with the quantizer registry of
:mod:`prunequant.core.quantizer`.
"""
from .base import (
                   ActFakeQuant,
                   IntForm,
                   QuantSpec,
                   WeightFakeQuant,
                   attach_input_quant,
                   check_bits,
                   check_weight,
                   detach_input_quant,
                   from_channels,
                   quantizer_from_spec,
                   register_quantizer,
                   to_channels,
)
from .bias_correction import apply_bias_correction, bias_correction_terms
from .bn_fold import fold_batchnorm
from .breakpoints import (
                   METHODS,
                   ChannelErrors,
                   bisect_breakpoints,
                   c_bits,
                   closed_form_breakpoint,
                   expected_error,
                   find_breakpoints,
)
from .calibration import (
                   ACT_GRANULARITY_CHOICES,
                   CALIBRATION_METHODS,
                   ActCalibration,
                   RangeObserver,
                   calibrate_act_quantizers,
                   calibrate_ranges,
)
from .config import PTQConfig, PWLQConfig, UniformConfig
from .groupwise import GroupPWLQWeightQuant, GroupUniformWeightQuant
from .handler import (
                   LayerQuantStats,
                   QuantizationResult,
                   finalize_quantization_,
                   make_weight_quantizer,
                   quantize_weights_,
                   register_ptq_config,
)
from .lloyd_max import lloyd_max, lloyd_max_mse, nearest_level_sse
from .log2 import Log2Config, Log2WeightQuant
from .pwlq import (
                   VARIANTS,
                   PWLQWeightQuant,
                   pwlq_codes,
                   pwlq_dequantize,
                   pwlq_level_count,
                   pwlq_levels,
                   pwlq_quantize,
)
from .uniform import (
                   UniformWeightQuant,
                   affine_qparams,
                   quantize_affine,
                   quantize_symmetric,
                   symmetric_scale,
                   uniform_codes,
                   uniform_dequantize,
                   uniform_levels,
                   uniform_quantize,
)

__all__ = [
                   "CALIBRATION_METHODS",
                   "GroupPWLQWeightQuant",
                   "GroupUniformWeightQuant",
                   "METHODS",
                   "VARIANTS",
                   "ActFakeQuant",
                   "IntForm",
                   "Log2Config",
                   "Log2WeightQuant",
                   "PTQConfig",
                   "QuantSpec",
                   "UniformConfig",
                   "quantize_weights_",
                   "quantizer_from_spec",
                   "register_ptq_config",
                   "register_quantizer",
                   "ChannelErrors",
                   "LayerQuantStats",
                   "PWLQConfig",
                   "PWLQWeightQuant",
                   "QuantizationResult",
                   "RangeObserver",
                   "ActCalibration",
                   "ACT_GRANULARITY_CHOICES",
                   "UniformWeightQuant",
                   "WeightFakeQuant",
                   "affine_qparams",
                   "apply_bias_correction",
                   "attach_input_quant",
                   "bias_correction_terms",
                   "bisect_breakpoints",
                   "c_bits",
                   "calibrate_act_quantizers",
                   "calibrate_ranges",
                   "check_bits",
                   "check_weight",
                   "closed_form_breakpoint",
                   "detach_input_quant",
                   "expected_error",
                   "finalize_quantization_",
                   "find_breakpoints",
                   "fold_batchnorm",
                   "from_channels",
                   "lloyd_max",
                   "lloyd_max_mse",
                   "make_weight_quantizer",
                   "nearest_level_sse",
                   "pwlq_codes",
                   "pwlq_dequantize",
                   "pwlq_level_count",
                   "pwlq_levels",
                   "pwlq_quantize",
                   "quantize_affine",
                   "quantize_symmetric",
                   "symmetric_scale",
                   "to_channels",
                   "uniform_codes",
                   "uniform_dequantize",
                   "uniform_levels",
                   "uniform_quantize",
]
