"""Image-classifier unlearning: methods and backbones.

``from unlearnkit.vision import FineTune`` works in anyone's training code: every method is an
:class:`~unlearnkit.base.Unlearner` with ``unlearn(model, forget_loader, retain_loader)``.
"""

from unlearnkit.vision.methods import *  # noqa: F403
from unlearnkit.vision.methods import __all__ as _methods

__all__ = list(_methods)
