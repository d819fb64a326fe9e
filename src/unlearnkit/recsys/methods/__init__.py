"""Recommender unlearning methods (one file per method). ``__all__`` is the method list.

Configs name them by full class path (``unlearnkit.recsys.methods.FineTune``). ``FineTune``,
``GradientAscent`` and ``Retrain`` are aliases of ``RecFineTune``, ``RecGradientAscent`` and
``RecRetrain``: the classes' own names differ from the vision methods' so that the bare
``class_path: FineTune`` of vision configs stays unambiguous when both families are loaded.
Reports use the short names (``method_name``).
"""

from unlearnkit.recsys.methods.e2urec import E2URec
from unlearnkit.recsys.methods.finetune import RecFineTune, RecRetrain
from unlearnkit.recsys.methods.gradient_ascent import RecGradientAscent
from unlearnkit.recsys.methods.reverse_bpr import ReverseBPR

FineTune = RecFineTune
Retrain = RecRetrain
GradientAscent = RecGradientAscent

__all__ = ["E2URec", "FineTune", "GradientAscent", "Retrain", "ReverseBPR"]
