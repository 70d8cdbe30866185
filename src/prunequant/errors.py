"""Exceptions raised by prunequant. Each message names the layer, file or argument at fault."""


class PrunequantError(Exception):
    """Base class for all prunequant errors."""


class ConfigError(PrunequantError, ValueError):
    """A configuration value is out of range or inconsistent."""


class LayerError(PrunequantError, ValueError):
    """A layer cannot be processed (NaN weights, zero variance, empty, unsupported)."""


class ShapeError(PrunequantError, ValueError):
    """An input tensor has the wrong shape or dtype."""


class StorageError(PrunequantError, OSError):
    """A file is missing, truncated, tampered with or from an unsupported version."""


class UnsupportedModuleError(PrunequantError, TypeError):
    """A module type that the method does not handle."""
