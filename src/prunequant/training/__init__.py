"""The one training loop used by every training-based method (fine-tune, QAT, glucose), DDP-ready, and the plugin
hooks through which methods take part in any training loop."""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .fit import Fit, phase_config, resolve_device
from .metrics import accuracy, neg_mse
from .plugin import TrainPlugin, claim_param_groups_, param_groups
from .trainer import TrainConfig, Trainer, evaluate, seed_everything

__all__ = ["Trainer", "TrainConfig", "Fit", "evaluate", "seed_everything", "TrainPlugin", "param_groups",
           "claim_param_groups_", "accuracy", "neg_mse", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "phase_config", "resolve_device"]
