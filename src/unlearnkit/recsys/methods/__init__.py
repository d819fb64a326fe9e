"""Recommender unlearning methods (one file per method). ``__all__`` is the method list.

Configs name them by full class path (``unlearnkit.recsys.methods.RecRetrain``); each class is
exported under its one name. ``RecFineTune``, ``RecGradientAscent`` and ``RecRetrain`` differ
from the vision ``FineTune``, ``GradientAscent`` and ``Retrain`` so that the bare
``class_path: FineTune`` of vision configs stays unambiguous when both families are loaded.
Reports use the short names (``method_name``: ``FineTune``, ``GradientAscent``, ``Retrain``).
"""

from unlearnkit.recsys.methods.e2urec import E2URec
from unlearnkit.recsys.methods.finetune import RecFineTune, RecRetrain
from unlearnkit.recsys.methods.gradient_ascent import RecGradientAscent
from unlearnkit.recsys.methods.reverse_bpr import ReverseBPR

__all__ = ["E2URec", "RecFineTune", "RecGradientAscent", "RecRetrain", "ReverseBPR"]
