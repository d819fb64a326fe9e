"""unlearnkit: machine unlearning for vision classifiers and graph recommenders."""

from unlearnkit.base import LossUnlearner, UnlearnBatch, Unlearner, list_methods
from unlearnkit.data import ForgetSpec, ForgetSplit, UnlearningDataModule

__version__ = "0.1.0"

__all__ = [
    "ForgetSpec",
    "ForgetSplit",
    "LossUnlearner",
    "UnlearnBatch",
    "Unlearner",
    "UnlearningDataModule",
    "list_methods",
]
