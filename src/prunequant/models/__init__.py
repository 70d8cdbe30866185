"""Reference models. Each keeps ``model.config`` (JSON-able) so ``prunequant.io`` can rebuild it.

Training them is a recipe, not a model: ``from prunequant.models.reference import train_reference``.
"""
from .digits import MLP, DigitsCNN, MobileNetSmall, ResNetSmall
from .fashion import FashionMobileNetV2, FashionResNet
from .registry import MODEL_REGISTRY, build_from_config, build_model, register_model
from .tiny_lm import TinyLM  # registers "tiny_lm"; torch only, so `import prunequant` stays light

__all__ = ["DigitsCNN", "MLP", "ResNetSmall", "MobileNetSmall", "build_model", "build_from_config",
           "register_model", "MODEL_REGISTRY",
           "FashionResNet", "FashionMobileNetV2", "TinyLM"]
