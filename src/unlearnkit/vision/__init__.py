"""Image-classifier unlearning: methods, backbones and the worst-case forget-set search.

``from unlearnkit.vision import SSD`` works in anyone's training code: every method is an
:class:`~unlearnkit.base.Unlearner` with ``unlearn(model, forget_loader, retain_loader)``.
"""

from unlearnkit.vision.methods import *  # noqa: F403
from unlearnkit.vision.methods import __all__ as _methods
from unlearnkit.vision.models import (
    CIFARResNet18,
    CompactCIFARNet,
    LeNet5,
    SmallCNN,
    TimmClassifier,
    build_model,
    cifar_resnet18,
)
from unlearnkit.vision.worst_case import (
    PaperWorstCaseSelector,
    WorstCaseSelector,
    worst_case_forget_set,
)

__all__ = [
    *_methods,
    "CIFARResNet18",
    "CompactCIFARNet",
    "LeNet5",
    "SmallCNN",
    "TimmClassifier",
    "build_model",
    "cifar_resnet18",
    "PaperWorstCaseSelector",
    "WorstCaseSelector",
    "worst_case_forget_set",
]
