"""Offline data sets: sklearn digits, chemotools fermentation spectra, and a user CSV/NPZ loader."""
from .digits import DIGITS_SPLIT, digits_loaders, digits_splits
from .fashion_mnist import FashionMNIST, fashion_mnist, fashion_mnist_loaders
from .fermentation import FermentationData, fermentation_data
from .tensors import load_tensors

__all__ = ["DIGITS_SPLIT", "digits_loaders", "digits_splits", "FermentationData", "fermentation_data", "load_tensors",
           "FashionMNIST", "fashion_mnist", "fashion_mnist_loaders"]
