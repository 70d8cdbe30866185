"""Reference models. Each keeps ``model.config`` (JSON-able) so ``prunequant.io`` can rebuild it."""
from .digits import MLP, DigitsCNN, MobileNetSmall, ResNetSmall
from .reference import REFERENCE_EPOCHS, train_reference
from .registry import MODEL_REGISTRY, build_from_config, build_model, register_model

__all__ = ["DigitsCNN", "MLP", "ResNetSmall", "MobileNetSmall", "build_model", "build_from_config",
           "register_model", "MODEL_REGISTRY", "train_reference", "REFERENCE_EPOCHS"]
