"""The one training loop used by every training-based method (fine-tune, QAT, glucose), DDP-ready."""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .metrics import accuracy, neg_mse
from .plugin import TrainPlugin
from .trainer import TrainConfig, Trainer, evaluate, seed_everything

__all__ = ["Trainer", "TrainConfig", "evaluate", "seed_everything", "TrainPlugin", "accuracy", "neg_mse", "save_checkpoint", "load_checkpoint",
           "latest_checkpoint"]
