"""The :class:`Unlearner` base class every unlearning method derives from.

It lives apart from :mod:`unlearnkit.base` (which adds :class:`~unlearnkit.base.LossUnlearner`,
the Lightning loop) so that :mod:`unlearnkit.module` can name it in ``UnlearningModule``'s
signature — what LightningCLI reads to build ``--model.method`` — without an import cycle.
Import it from :mod:`unlearnkit.base`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from unlearnkit.streams import LoaderSource, Stream, StreamSource, open_streams, reads

__all__ = ["DIVERGED", "Unlearner", "check_finite_model", "init_arguments"]


def init_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of an ``__init__``, from ``locals()`` called first thing in it.

    Lets each method keep its own typed signature with the paper's defaults (what LightningCLI
    reads) while the body only forwards them: ``super().__init__(**init_arguments(locals()))``.
    :class:`LossUnlearner` stores every argument it does not know unchanged as an attribute.

    Args:
        arguments: ``locals()`` of the ``__init__`` before any other statement.

    Returns:
        Every entry but ``self`` and ``__class__`` (the cell of a zero-argument ``super()``), with
        a ``**method_params`` catch-all (how a base class takes its subclasses' own
        hyper-parameters) merged in.
    """
    kwargs = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
    kwargs.update(kwargs.pop("method_params", {}))
    return kwargs


class Unlearner(ABC):
    """Base class of every unlearning method.

    Subclasses take their hyper-parameters as typed keyword arguments of ``__init__`` with the
    paper's defaults and store them unchanged (no logic in ``__init__``); state learned while
    unlearning gets a trailing underscore (``importance_``, ``mask_``).

    What a method reads is declared once, in :attr:`streams` (see :mod:`unlearnkit.streams`):
    standard names (``"forget"``, ``"retain"``, ``"union"``, ``"train"``) or :class:`Stream`
    objects the method defines. Both entry points build exactly those loaders and hand them to
    :meth:`apply`: :meth:`unlearn` (loaders passed by a user) and :meth:`unlearn_from` (a
    DataModule, as ``unlearnkit run`` and ``unlearnkit fit`` do).

    Attributes:
        streams: the data streams the method reads.
        iterative: whether the method is a loss-based loop (:class:`LossUnlearner`).
    """

    streams: ClassVar[tuple[str | Stream, ...]] = ("forget",)
    iterative: ClassVar[bool] = False

    def __init__(self, **hyperparameters: Any) -> None:
        """Store every hyper-parameter unchanged as an attribute (scikit-learn's rule: no logic
        here). A method keeps its own typed signature with the paper's defaults and forwards it:
        ``super().__init__(**init_arguments(locals()))``."""
        for name, value in hyperparameters.items():
            setattr(self, name, value)

    @property
    def requires_retain(self) -> bool:
        """Whether the method reads D_r (a ``retain`` or ``union`` stream, or ``train`` built
        from D_r and D_f when no train loader is given)."""
        return reads(self, "retain")

    def unlearn(
        self,
        model: nn.Module,
        forget: DataLoader,
        retain: DataLoader | None = None,
        *,
        trainer: Any | None = None,
        **loaders: DataLoader,
    ) -> nn.Module:
        """Edit ``model`` in place so that it forgets ``forget``; return the same object.

        Args:
            model: the trained (original) model θ_o; modified in place.
            forget: loader over D_f yielding ``(x, y)`` or ``(x, y, attributes)`` batches.
            retain: loader over D_r; required when the method reads D_r.
            trainer: an optional ``lightning.Trainer`` for iterative methods (e.g. DDP); its
                ``max_epochs`` must equal the method's ``epochs``.
            **loaders: other standard streams, e.g. ``train=`` (D_train unshuffled; default:
                D_r followed by D_f).

        Returns:
            ``model`` itself, now the unlearned model θ_u.

        Raises:
            TypeError: ``model`` is not an ``nn.Module``.
            ValueError: ``forget`` is empty, or a stream the method reads is missing; a parameter
                or floating-point buffer of ``model`` holds NaN or inf, before unlearning or
                after it (the method diverged, e.g. gradient ascent with too large a step:
                lower ``lr`` or ``epochs``; ``model`` is then left as the method made it).
        """
        for name, loader in {"forget": forget, "retain": retain, **loaders}.items():
            if isinstance(loader, Dataset):
                raise TypeError(
                    f"{type(self).__name__}.unlearn: {name} is a {type(loader).__name__} (a "
                    f"Dataset); pass a DataLoader over it, e.g. DataLoader({name}_set, batch_size=64)"
                )
        return self.unlearn_from(model, LoaderSource(forget, retain, **loaders), trainer=trainer)

    def unlearn_from(
        self, model: nn.Module, source: StreamSource, *, trainer: Any | None = None
    ) -> nn.Module:
        """:meth:`unlearn` with the streams taken from ``source`` (a DataModule).

        Raises:
            TypeError / ValueError: as :meth:`unlearn`.
        """
        self.check_model(model)
        result = self.apply(model, open_streams(self, model, source), trainer=trainer)
        self._check_finite(result, DIVERGED)
        return result

    @abstractmethod
    def apply(
        self, model: nn.Module, loaders: Mapping[str, Iterable], *, trainer: Any | None = None
    ) -> nn.Module:
        """Unlearn with the declared streams' loaders (``loaders[name]``); edit ``model`` in place.

        Called by :meth:`unlearn` / :meth:`unlearn_from` after the inputs were checked.
        """

    def check_model(self, model: nn.Module) -> None:
        """Raise ``TypeError`` unless ``model`` is an ``nn.Module``, ``ValueError`` if one of its
        parameters holds NaN or inf (no method can unlearn from a broken model, and an iterative
        one would silently return another broken one)."""
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{type(self).__name__}.unlearn expects a torch.nn.Module, got {type(model).__name__}"
            )
        self._check_finite(
            model, "before unlearning; load a valid checkpoint of the original model"
        )

    def _check_finite(self, model: nn.Module, when: str) -> None:
        check_finite_model(model, f"{type(self).__name__}.unlearn", when)

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` hyper-parameters, as stored (scikit-learn's convention)."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


#: The ``when`` of :func:`check_finite_model` after a method ran.
DIVERGED = "after unlearning: the method diverged; lower its lr or epochs"


def check_finite_model(model: nn.Module, who: str, when: str) -> None:
    """Raise ``ValueError`` when a parameter or a floating-point buffer (e.g. BatchNorm's
    ``running_var``) of ``model`` holds NaN or inf.

    Args:
        model: the model to check (not modified).
        who: the caller, first in the message (e.g. ``"GradientAscent.unlearn"``).
        when: the rest of the message (e.g. :data:`DIVERGED`).

    Raises:
        ValueError: naming the first non-finite tensor.
    """
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.detach()).all()):
            kind = "parameter" if isinstance(tensor, nn.Parameter) else "buffer"
            raise ValueError(f"{who}: the model's {kind} {name!r} holds NaN or inf {when}")
