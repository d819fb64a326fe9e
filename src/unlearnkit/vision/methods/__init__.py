"""Vision unlearning methods (one file per method). ``__all__`` is the method list."""

from unlearnkit.vision.methods.amnesiac import Amnesiac
from unlearnkit.vision.methods.bad_teacher import BadTeacher
from unlearnkit.vision.methods.boundary import BoundaryExpanding, BoundaryShrink
from unlearnkit.vision.methods.finetune import FineTune, Retrain
from unlearnkit.vision.methods.fisher_forgetting import FisherForgetting
from unlearnkit.vision.methods.gradient_ascent import GradientAscent, NegGradPlus
from unlearnkit.vision.methods.iau import IAU
from unlearnkit.vision.methods.influence_unlearning import IU
from unlearnkit.vision.methods.l1_sparse import L1Sparse
from unlearnkit.vision.methods.last_layers import CFk, EUk
from unlearnkit.vision.methods.random_label import RandomLabel
from unlearnkit.vision.methods.salun import SalUn
from unlearnkit.vision.methods.scrub import SCRUB
from unlearnkit.vision.methods.ssd import LFSSD, SSD
from unlearnkit.vision.methods.unsir import UNSIR

__all__ = [
    "Amnesiac",
    "BadTeacher",
    "BoundaryExpanding",
    "BoundaryShrink",
    "CFk",
    "EUk",
    "FineTune",
    "FisherForgetting",
    "GradientAscent",
    "IAU",
    "IU",
    "L1Sparse",
    "LFSSD",
    "NegGradPlus",
    "RandomLabel",
    "Retrain",
    "SCRUB",
    "SalUn",
    "SSD",
    "UNSIR",
]
