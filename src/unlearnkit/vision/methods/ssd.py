"""Selective Synaptic Dampening (SSD) and its label-free variant (LF-SSD).

SSD (Foster, Schoepf & Brintrup, "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024, arXiv 2308.07707, method section) is one-shot: it compares,
parameter by parameter, the diagonal Fisher importance over the forget set, ``I_F = [I]_{D_f}``,
with the one over the whole training set, ``I_D = [I]_{D}`` (D = D_f ∪ D_r), and shrinks the
parameters that matter disproportionately to D_f:

* selection equation: parameter ``i`` is selected iff ``I_F,i > α · I_D,i``;
* dampening equation: a selected parameter is multiplied by ``β_i = min(λ · I_D,i / I_F,i, 1)``
  (the bound 1 keeps a parameter from growing); the others stay unchanged.

(The equations are named by content: their numbers in the arXiv versions could not be checked
offline when this was written.)

LF-SSD (Foster, Schoepf & Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper,
arXiv 2402.19308, method section) keeps everything but the importance: the sensitivity of the
squared L2 norm of the output, ``mean |d ||f(x)||² / dθ|``, so no labels are needed.

``I_D`` is cached on disk per (weights of the original model, training data in the order it is
read, importance definition). In the reference code's order (D_r, then D_f) the batches of ``I_D``
depend on the forget request, so only a repeated request hits the cache; with
``order="by_label"`` or ``"as_given"`` over ``train=`` a second forget request on the same
original model only pays for the D_f pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    SequentialSampler,
    Subset,
    TensorDataset,
)

from unlearnkit.base import Unlearner
from unlearnkit.cache import default_cache_dir
from unlearnkit.checkpoint import model_arch
from unlearnkit.datasets.tensors import TensorImageDataset, dataset_labels
from unlearnkit.influence import fisher_diagonal, l2_output_loss, select_params
from unlearnkit.store import ArtifactStore

__all__ = [
    "LFSSD",
    "SSD",
    "dataset_fingerprint",
    "model_fingerprint",
    "sort_by_label",
    "ssd_dampening_factors",
]

log = logging.getLogger(__name__)
#: The file of an ``I_D`` store entry.
_IMPORTANCE_FILE = "importance.pt"

ImportanceDefinition = Literal["batch_empirical", "per_sample"]
BatchOrder = Literal["reference", "retain_then_forget", "by_label", "as_given"]
_ORDERS = ("reference", "retain_then_forget", "by_label", "as_given")
LossKind = Literal["cross_entropy", "l2_output"]

#: Bump when the meaning of a cached importance changes (keys of older entries then miss).
_CACHE_FORMAT = 1
#: ``per_sample`` importances materialise at most this many per-sample gradients at once.
_PER_SAMPLE_CHUNK = 16


# -- pure numerics -------------------------------------------------------------------------------
def ssd_dampening_factors(
    importance_forget: Mapping[str, Tensor],
    importance_train: Mapping[str, Tensor],
    *,
    alpha: float,
    lam: float,
) -> dict[str, Tensor]:
    """SSD's per-parameter multipliers β (Foster et al., AAAI 2024, arXiv 2308.07707).

    The selection and dampening equations of the paper's method section.

    ``β_i = min(λ · I_D,i / I_F,i, 1)`` where ``I_F,i > α · I_D,i`` (selected), ``β_i = 1``
    elsewhere. The division happens only at selected entries, where ``I_F,i > α · I_D,i >= 0``
    guarantees ``I_F,i > 0``; hence:

    * ``I_F,i = 0`` → never selected, β = 1 (whatever ``I_D,i``);
    * ``I_D,i = 0 < I_F,i`` → selected, β = 0 (the parameter is zeroed);
    * no NaN or Inf can come out of finite, non-negative importances.

    Args:
        importance_forget: ``I_F``, name → importance over D_f (non-negative, finite).
        importance_train: ``I_D``, name → importance over D_train, same names and shapes.
        alpha: selection threshold α (> 0; the paper uses 10 for ResNet-18).
        lam: dampening constant λ (>= 0; the paper uses 1).

    Returns:
        Dict name → β, in the order of ``importance_forget``.

    Shapes:
        Each β has the shape and dtype of its importance; values in ``[0, 1]`` (dimensionless).

    Raises:
        ValueError: ``alpha``/``lam`` out of range, names or shapes differ, or an importance holds
            NaN, Inf or a negative value (the message names the parameter).
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(
            f"SSD: alpha (selection threshold) must be a finite number > 0, got {alpha}"
        )
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"SSD: lam (dampening constant λ) must be finite and >= 0, got {lam}")
    if list(importance_forget) != list(importance_train):
        missing = sorted(set(importance_forget) ^ set(importance_train))
        raise ValueError(
            f"SSD: I_F and I_D cover different parameters (e.g. {missing[:3]}); compute both "
            "with the same model and the same eligible layers"
        )
    factors: dict[str, Tensor] = {}
    for name, forget in importance_forget.items():
        train = importance_train[name]
        if forget.shape != train.shape:
            raise ValueError(
                f"SSD: importance shapes differ for parameter {name!r}: I_F {tuple(forget.shape)} "
                f"vs I_D {tuple(train.shape)}"
            )
        for what, value in (("I_F", forget), ("I_D", train)):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(
                    f"SSD: {what} holds NaN/Inf for parameter {name!r}; check the model weights "
                    "and inputs for NaN/Inf (or clear a corrupted importance cache entry)"
                )
            if bool((value < 0).any()):
                raise ValueError(
                    f"SSD: {what} is negative for parameter {name!r}; importances are |grad|^p >= 0"
                )
        train = train.to(forget.device)
        selected = forget > alpha * train
        safe_forget = torch.where(selected, forget, torch.ones_like(forget))
        beta = torch.where(
            selected, (lam * train / safe_forget).clamp(max=1.0), torch.ones_like(forget)
        )
        factors[name] = beta
    return factors


def nothing_selected_message(
    method: Any, importance_forget: dict[str, Tensor], importance_train: dict[str, Tensor]
) -> str:
    """The warning of an SSD run that dampened nothing, with the α that would select something.

    A parameter is selected when ``I_F > α · I_D``; the largest ratio ``I_F / I_D`` over all
    parameters (with ``I_D > 0``) is the α below which at least one is selected.
    """
    ratios = [
        (
            importance_forget[n][importance_train[n] > 0]
            / importance_train[n][importance_train[n] > 0]
        )
        for n in importance_forget
    ]
    top = max((float(r.max()) for r in ratios if r.numel()), default=0.0)
    hint = (
        f"the largest I_F/I_D is {top:.3g}, so alpha < {top:.3g} selects at least one parameter"
        if top > 0
        else "I_F is 0 everywhere: the forget set has no gradient signal"
    )
    return (
        f"{type(method).__name__} dampened 0 of the model's parameters at alpha={method.alpha}: "
        f"no I_F exceeds alpha * I_D; {hint} (the model is unchanged)"
    )


# -- fingerprints (cache keys) -------------------------------------------------------------------
def _feed_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())


def _feed_value(h: Any, value: Any, where: str) -> None:
    if isinstance(value, Tensor):
        _feed_tensor(h, value)
    elif isinstance(value, np.ndarray | np.generic):
        _feed_tensor(h, torch.from_numpy(np.ascontiguousarray(value)))
    elif isinstance(value, bool | int | float | str) or value is None:
        h.update(f"V{type(value).__name__}:{value!r}".encode())
    elif isinstance(value, tuple | list):
        h.update(f"L{len(value)}".encode())
        for k, item in enumerate(value):
            _feed_value(h, item, f"{where}[{k}]")
    else:
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - any failure means "cannot hash this sample"
            array = None
        if array is None or array.dtype == object:
            raise TypeError(
                f"cannot fingerprint {where} of type {type(value).__name__} for the SSD importance "
                "cache; yield tensors/arrays/numbers from the dataset, or pass cache=False"
            )
        _feed_tensor(h, torch.from_numpy(np.ascontiguousarray(array)))


def _feed_dataset(h: Any, dataset: Dataset) -> None:
    if isinstance(dataset, TensorImageDataset):
        h.update(b"TensorImageDataset")
        _feed_tensor(h, dataset.images)
        _feed_tensor(h, dataset.targets)
        h.update(json.dumps([list(dataset.mean), list(dataset.std), dataset.augment]).encode())
    elif isinstance(dataset, TensorDataset):
        h.update(f"TensorDataset{len(dataset.tensors)}".encode())
        for t in dataset.tensors:
            _feed_tensor(h, t)
    elif isinstance(dataset, ConcatDataset):
        h.update(f"ConcatDataset{len(dataset.datasets)}".encode())
        for part in dataset.datasets:
            _feed_dataset(h, part)
    elif isinstance(dataset, Subset):
        h.update(b"Subset")
        _feed_dataset(h, dataset.dataset)
        _feed_tensor(h, torch.as_tensor(list(dataset.indices), dtype=torch.long))
    else:  # generic: every sample, in order
        n = len(dataset)  # type: ignore[arg-type]
        h.update(f"{type(dataset).__qualname__}:{n}".encode())
        for i in range(n):
            _feed_value(h, dataset[i], f"sample {i} of {type(dataset).__name__}")


def dataset_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of a dataset's content, in order (used in SSD's importance-cache key).

    In-memory datasets are hashed from their tensors (:class:`TensorImageDataset`: uint8 images,
    targets, normalisation and augmentation flag; ``TensorDataset``: its tensors), ``ConcatDataset``
    and ``Subset`` recursively; any other map-style dataset sample by sample (``dataset[i]`` for
    every ``i``), which reads the whole dataset once.

    Args:
        dataset: a map-style dataset.

    Returns:
        64 hex characters; equal for equal content in equal order.

    Raises:
        TypeError: a sample holds something that is neither a tensor, an array nor a number.
    """
    h = hashlib.sha256()
    _feed_dataset(h, dataset)
    return h.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's architecture name and every ``state_dict`` tensor (weights and buffers).

    Args:
        model: the model (any device; tensors are copied to CPU for hashing).

    Returns:
        64 hex characters; equal iff names, dtypes, shapes and bytes are equal.
    """
    h = hashlib.sha256(model_arch(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        _feed_tensor(h, tensor)
    return h.hexdigest()


# -- data plumbing -------------------------------------------------------------------------------
def _without_augment(dataset: Dataset) -> Dataset:
    return dataset.with_augment(False) if hasattr(dataset, "with_augment") else dataset


def sort_by_label(dataset: Dataset) -> Dataset:
    """``dataset`` re-ordered by a stable sort on its labels (batches then hold one class each,
    except at class boundaries) — SSD's ``order="by_label"``; the reference code's class-wise
    loaders hold D_r sorted this way followed by D_f (SSD's ``order="reference"``).

    Args:
        dataset: a map-style dataset yielding ``(x, y, ...)`` with scalar class ids ``y``.

    Returns:
        A ``Subset`` in label order (within a class, the original order is kept).

    Raises:
        ValueError: the labels are not scalar class ids (pass ``order="as_given"``).
    """
    labels = dataset_labels(dataset)
    if labels is None or labels.dtype.is_floating_point:
        raise ValueError(
            f"SSD order='by_label' needs scalar integer labels, and {type(dataset).__name__} has "
            "none; pass order='as_given'"
        )
    return Subset(dataset, torch.argsort(labels, stable=True).tolist())


def _is_sequential(loader: Iterable) -> bool:
    return (
        isinstance(loader, DataLoader)
        and loader.batch_size is not None
        and isinstance(loader.sampler, SequentialSampler)
    )


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shard_batches(loader: Iterable) -> Iterable:
    """This rank's share of an unshuffled loader: batches ``rank, rank + W, ...`` (whole batches).

    ``fisher_diagonal`` all-reduces its per-rank sums and batch counts, so striding whole batches
    over the ranks gives exactly the single-process importance (up to float summation order) while
    each rank does ``1/W`` of the work. Other loaders are returned unchanged (every rank then
    iterates all of it, which :func:`fisher_diagonal` also handles, without the speed-up).
    """
    rank, world = _world()
    if world == 1 or not _is_sequential(loader):
        return loader
    assert isinstance(loader, DataLoader)
    batches = list(BatchSampler(SequentialSampler(loader.dataset), loader.batch_size, False))
    return DataLoader(
        loader.dataset,
        batch_sampler=batches[rank::world],
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
    )


# -- the methods ---------------------------------------------------------------------------------
class SSD(Unlearner):
    """Selective Synaptic Dampening: dampen the parameters D_f depends on far more than D does.

    Source: Foster, Schoepf & Brintrup, "Fast Machine Unlearning Without Retraining Through
    Selective Synaptic Dampening", AAAI 2024 (arXiv 2308.07707), method section: importances are
    diagonals of the Fisher information matrix, ``I_F`` over D_f and ``I_D`` over the full
    training set; parameter ``i`` is selected iff ``I_F,i > α I_D,i`` (selection equation) and
    multiplied by ``β_i = min(λ I_D,i / I_F,i, 1)`` (dampening equation; see
    :func:`ssd_dampening_factors`).

    Faithful to the reference implementation (github.com/if-loops/selective-synaptic-dampening,
    ``ssd.py``): importances are taken in eval mode (BatchNorm running statistics, no dropout),
    with the ``batch_empirical`` definition (squared gradient of each batch-mean loss, averaged
    over batches of 64, unshuffled; see :func:`~unlearnkit.influence.fisher_diagonal`), and every
    parameter is eligible. Training-mode flags are restored afterwards and ``.grad`` is untouched.

    Data: the reference code builds the loader of ``I_D`` as
    ``DataLoader(ConcatDataset((retain_train, forget_train)), batch_size)``, unshuffled: D_r first,
    then D_f (``forget_full_class_main.py``, ``forget_subclass_main.py`` and
    ``forget_random_main.py`` all do this). Its class-wise experiments build ``retain_train`` class
    by class in ascending order (``build_retain_forget_sets``), its random-forgetting experiment
    takes both parts from ``random_split`` (random order). ``order`` picks the batches of ``I_D``:

    * ``"reference"`` (default; the class-wise experiments): D_r stably sorted by label, then D_f
      stably sorted by label (one class: unchanged). Forgetting class 0 of 0-9 reads classes
      1, ..., 9, 0. Built from ``retain`` and ``forget``; ``train``, if given, is only checked to
      hold ``|D_r| + |D_f|`` samples.
    * ``"retain_then_forget"`` (the random-forgetting experiment): D_r then D_f, each in its
      dataset's own order (ours are index order, which for CIFAR-10 and Fashion-MNIST mixes the
      classes like the reference's ``random_split``). Also built from ``retain`` and ``forget``.
    * ``"by_label"``: D_train (``train``, else D_r ∪ D_f) stably sorted by label, 0, 1, ...;
      class-wise batches too, but the forget class sits at its label's place, which moves the
      batch boundaries (different ``I_D``; cached once for all forget requests).
    * ``"as_given"``: ``train``'s dataset in its own order (else D_r then D_f as given); fully
      label-free for LF-SSD.

    Loaders are rebuilt from their ``.dataset`` with ``batch_size`` samples per batch, unshuffled,
    without augmentation (datasets with ``with_augment``): D_f and D_r are sets, their loaders'
    shuffling is ignored. A ``train`` loader that is not an unshuffled ``DataLoader`` (e.g.
    ``shuffle=True``) is refused with ``ValueError`` when ``batch_size`` is set and ``order`` reads
    it (``"by_label"``, ``"as_given"``); with ``batch_size=None`` a given ``train`` is honoured as
    given in every order (its own order and batches).

    The ``batch_empirical`` importance depends strongly on the batches. With class-wise batches
    the forget class fills about ``N_f / N`` of the batches of D, so ``I_D >= (N_f / N) · I_F`` and
    only ``α < N / N_f`` can select anything: the paper's α = 10 fits its 1-5 % forget sets, but
    selects (almost) nothing when one of 10 balanced classes is forgotten. With mixed batches
    (``order="as_given"`` on shuffled data) the class gradients cancel in ``I_D`` and far more
    parameters pass (on Fashion-MNIST a third of a small CNN's weights, retain accuracy 92 % →
    37 %). ``per_sample`` importances do not depend on batching but obey the same bound exactly
    (``I_D = (N_f/N) I_F + (N_r/N) I_R``).

    Cache: ``I_D`` is the :class:`~unlearnkit.store.ArtifactStore` entry
    ``<cache_dir or default_cache_dir()>/importance/<hash>/importance.pt`` (atomic, checksummed,
    verified on load, never overwritten; a corrupt one is moved aside and recomputed), keyed by
    SHA-256 of the model's
    weights and buffers before unlearning (:func:`model_fingerprint`), the training data in order
    (:func:`dataset_fingerprint`), the importance definition, loss, power, batch size, order and
    the eligible parameter names.

    Distributed: when ``torch.distributed`` is initialised (e.g. a Lightning DDP run), each rank
    takes every ``W``-th batch and the importances are all-reduced, so every rank gets the
    single-process importances and applies the same update. All ranks must call :meth:`unlearn`.

    Args:
        alpha: selection threshold α (> 0). Paper and reference code: 10 for ResNet-18 (5 for
            ViT, ``model_size_scaler``).
        lam: dampening constant λ (>= 0; Python reserves ``lambda``). Paper: 1.
        importance: ``"batch_empirical"`` (reference code; depends on ``batch_size``) or
            ``"per_sample"`` (exact empirical Fisher diagonal, independent of batching).
        loss: ``"cross_entropy"`` (SSD) or ``"l2_output"`` (squared L2 norm of the output,
            LF-SSD; labels unused).
        power: exponent of ``|grad|`` (2 = Fisher, SSD; 1 = LF-SSD).
        batch_size: batch size of both importance passes (reference: 64); ``None`` uses the
            given loaders as they are (order and batching).
        order: batches of ``I_D`` (see Data above): ``"reference"`` (D_r by label, then D_f; the
            reference's class-wise experiments), ``"retain_then_forget"`` (D_r, then D_f, as
            given; its random-forgetting experiment), ``"by_label"`` (D_train sorted by label)
            or ``"as_given"`` (``train`` as given).
        layers: name prefixes of the eligible parameters (e.g. ``["layer4", "fc"]``, see
            :func:`~unlearnkit.influence.select_params`); ``None``: every parameter with
            ``requires_grad``. Others are never dampened.
        cache: reuse/store ``I_D`` on disk.
        cache_dir: cache root (default :func:`unlearnkit.cache.default_cache_dir`).

    Attributes:
        importance_forget_: ``I_F``, name → tensor shaped like the parameter.
        importance_train_: ``I_D``, likewise.
        selected_: name → number of selected (dampened) entries.
        n_selected_: total selected entries; ``n_eligible_``: total eligible entries.
        cache_hit_: whether ``I_D`` came from the cache; ``cache_path_``: its file (or None).
        times_: seconds spent on ``forget`` (I_F), ``train`` (I_D incl. hashing; small on a hit)
            and ``dampen``.

    Shapes:
        Loaders yield ``(x, y)`` (extra entries ignored): ``x`` (B, ...) float32, ``y`` (B,)
        int64. Importances share their parameter's shape, dtype and device.

    Raises:
        ValueError: see :meth:`unlearn`.
    """

    #: D_f gives I_F; D_train gives I_D (from a DataModule: D_train in dataset order; from
    #: ``unlearn(model, forget, retain)``: D_r followed by D_f unless ``train=`` is passed).
    streams: ClassVar[tuple[str, ...]] = ("forget", "train")
    #: D_r: the reference orders build I_D from D_r then D_f (``train`` is then only checked).
    optional_streams: ClassVar[tuple[str, ...]] = ("retain",)

    def __init__(
        self,
        *,
        alpha: float = 10.0,
        lam: float = 1.0,
        importance: ImportanceDefinition = "batch_empirical",
        loss: LossKind = "cross_entropy",
        power: float = 2.0,
        batch_size: int | None = 64,
        order: BatchOrder = "reference",
        layers: list[str] | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.lam = lam
        self.importance = importance
        self.loss = loss
        self.power = power
        self.batch_size = batch_size
        self.order = order
        self.layers = layers
        self.cache = cache
        self.cache_dir = cache_dir

    # -- entry point -----------------------------------------------------------------------------
    def apply(
        self, model: nn.Module, loaders: Mapping[str, Any], *, trainer: Any | None = None
    ) -> nn.Module:
        """Dampen ``model`` in place with the declared streams (see :meth:`_dampen`)."""
        return self._dampen(
            model, loaders["forget"], loaders.get("retain"), train=loaders.get("train")
        )

    def _dampen(
        self,
        model: nn.Module,
        forget: DataLoader,
        retain: DataLoader | None = None,
        *,
        train: DataLoader | None = None,
    ) -> nn.Module:
        """Dampen ``model`` in place so that it forgets ``forget``; return it.

        Args:
            model: the original model θ_o; modified in place (eval-mode importances).
            forget: loader over D_f.
            retain: loader over D_r; used for ``I_D`` (as D_r ∪ D_f) only when ``train`` is None.
            train: loader over D_train for ``I_D`` with ``order="by_label"``/``"as_given"``
                (what ``unlearnkit run`` passes; then ``retain`` is not needed); with the
                reference orders only its size is checked. Must be an unshuffled ``DataLoader``
                unless ``batch_size=None`` (then used as given, in every order).

        Returns:
            ``model``, now θ_u.

        Raises:
            TypeError: ``model`` is not an ``nn.Module``.
            ValueError: empty forget set; neither ``retain`` nor ``train`` given; no ``retain``
                for the reference orders; a shuffled ``train`` that would be rebuilt; ``train``
                not of size ``|D_r| + |D_f|``; bad hyper-parameters; an importance with NaN/Inf
                (names the parameter); a cache entry holding another key.
        """
        self._check_hyperparameters()
        eligible = list(select_params(model, self.layers))
        forget_loader = self._rebatch(forget)
        train_loader = self._train_loader(forget, retain, train)

        start = time.perf_counter()
        importance_train = self._train_importance(model, train_loader, eligible)
        after_train = time.perf_counter()
        importance_forget = self._importance(model, forget_loader, eligible)
        after_forget = time.perf_counter()
        factors = ssd_dampening_factors(
            importance_forget, importance_train, alpha=self.alpha, lam=self.lam
        )
        params = dict(model.named_parameters())
        selected: dict[str, int] = {}
        with torch.no_grad():
            for name, beta in factors.items():
                param = params[name]
                param.mul_(beta.to(device=param.device, dtype=param.dtype))
                mask = importance_forget[name] > self.alpha * importance_train[name]
                selected[name] = int(mask.sum())
        self.importance_forget_ = importance_forget
        self.importance_train_ = importance_train
        self.selected_ = selected
        self.n_selected_ = sum(selected.values())
        if self.n_selected_ == 0:
            warnings.warn(
                nothing_selected_message(self, importance_forget, importance_train), stacklevel=4
            )
        self.n_eligible_ = sum(params[n].numel() for n in eligible)
        self.times_ = {
            "train": after_train - start,
            "forget": after_forget - after_train,
            "dampen": time.perf_counter() - after_forget,
        }
        log.info(
            "%s: dampened %d of %d parameters (I_D %s, %.2fs; I_F %.2fs)",
            type(self).__name__,
            self.n_selected_,
            self.n_eligible_,
            "from cache" if self.cache_hit_ else "computed",
            self.times_["train"],
            self.times_["forget"],
        )
        return model

    # -- pieces ----------------------------------------------------------------------------------
    def _check_hyperparameters(self) -> None:
        name = type(self).__name__
        if self.importance not in ("batch_empirical", "per_sample"):
            raise ValueError(
                f"{name}: importance must be 'batch_empirical' or 'per_sample', got {self.importance!r}"
            )
        if self.order not in _ORDERS:
            raise ValueError(
                f"{name}: order must be one of {', '.join(map(repr, _ORDERS))}, got {self.order!r}"
            )
        if self.loss not in ("cross_entropy", "l2_output"):
            raise ValueError(
                f"{name}: loss must be 'cross_entropy' or 'l2_output', got {self.loss!r}"
            )
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(
                f"{name}: batch_size must be a positive int or None, got {self.batch_size!r}"
            )
        if not (
            isinstance(self.power, int | float) and math.isfinite(self.power) and self.power > 0
        ):
            raise ValueError(f"{name}: power must be a finite number > 0, got {self.power!r}")
        # alpha / lam are checked by ssd_dampening_factors; check them before the expensive passes
        ssd_dampening_factors({}, {}, alpha=float(self.alpha), lam=float(self.lam))

    def _sorted(self, dataset: Dataset) -> Dataset:
        """``dataset`` stably sorted by label, or a one-line error naming the label-free orders."""
        labels = dataset_labels(dataset)
        if labels is None or labels.dtype.is_floating_point:
            raise ValueError(
                f"{type(self).__name__} order={self.order!r} sorts by label, and "
                f"{type(dataset).__name__} has no scalar integer labels; pass "
                "order='retain_then_forget' or order='as_given'"
            )
        return Subset(dataset, torch.argsort(labels, stable=True).tolist())

    def _prepare(self, dataset: Dataset) -> Dataset:
        dataset = _without_augment(dataset)
        return self._sorted(dataset) if self.order in ("reference", "by_label") else dataset

    def _rebatch(self, loader: DataLoader) -> Iterable:
        if self.batch_size is None:
            return loader
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise TypeError(
                f"{type(self).__name__}: batch_size={self.batch_size} rebuilds loaders from their "
                "`.dataset`; pass torch DataLoaders, or batch_size=None to use the iterables as given"
            )
        return DataLoader(
            self._prepare(dataset),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=getattr(loader, "num_workers", 0),
            collate_fn=getattr(loader, "collate_fn", None),
        )

    def _train_loader(
        self, forget: DataLoader, retain: DataLoader | None, train: DataLoader | None
    ) -> Iterable:
        """The loader of ``I_D`` for ``self.order`` (see the class docstring, Data)."""
        name = type(self).__name__
        if train is not None and self.batch_size is None:
            return train  # honoured as given: its own order and batches
        if self.order in ("reference", "retain_then_forget"):
            if retain is None:
                raise ValueError(
                    f"{name} order={self.order!r} reads D_r then D_f and needs retain= (the D_r "
                    "loader); pass it, or order='by_label'/'as_given' to read train= alone"
                )
            if train is not None:
                sizes = [len(d.dataset) for d in (train, retain, forget)]  # type: ignore[arg-type]
                if sizes[0] != sizes[1] + sizes[2]:
                    raise ValueError(
                        f"{name}: train= holds {sizes[0]} samples, not |D_r| + |D_f| = "
                        f"{sizes[1]} + {sizes[2]}; pass loaders over D_train, D_r and D_f of one split"
                    )
            return self._union(forget, retain)
        if train is None:
            return self._union(forget, retain)
        if not _is_sequential(train):
            raise ValueError(
                f"{name}: train= is not an unshuffled DataLoader, and batch_size="
                f"{self.batch_size} would rebuild it in another order; pass "
                "DataLoader(..., shuffle=False), or batch_size=None to use its batches as given"
            )
        return self._rebatch(train)

    def _union(self, forget: DataLoader, retain: DataLoader | None) -> Iterable:
        """D as ``ConcatDataset([D_r, D_f])`` (the reference's ``full_train_dl``), ordered."""
        if retain is None:
            raise ValueError(
                f"{type(self).__name__} needs a retain set or a train set to compute I_D; pass "
                "retain=<DataLoader over D_r> or train=<unshuffled DataLoader over D_train>"
            )
        retain_ds, forget_ds = _without_augment(retain.dataset), _without_augment(forget.dataset)
        if self.order == "reference":
            union: Dataset = ConcatDataset([self._sorted(retain_ds), self._sorted(forget_ds)])
        elif self.order == "by_label":
            union = self._sorted(ConcatDataset([retain_ds, forget_ds]))
        else:
            union = ConcatDataset([retain_ds, forget_ds])
        return DataLoader(
            union,
            batch_size=self.batch_size or forget.batch_size or 1,
            shuffle=False,
            num_workers=getattr(forget, "num_workers", 0),
            collate_fn=getattr(forget, "collate_fn", None),
        )

    def _importance(
        self, model: nn.Module, loader: Iterable, eligible: list[str]
    ) -> dict[str, Tensor]:
        return fisher_diagonal(
            model,
            _shard_batches(loader),
            definition=self.importance,
            loss_fn=l2_output_loss if self.loss == "l2_output" else None,
            params=eligible,
            power=float(self.power),
            chunk_size=_PER_SAMPLE_CHUNK if self.importance == "per_sample" else None,
        )

    def _cache_key(
        self, model: nn.Module, loader: Iterable, eligible: list[str]
    ) -> dict[str, Any] | None:
        if not _is_sequential(loader):
            log.info(
                "%s: I_D not cached (the training loader is not an unshuffled DataLoader)",
                type(self).__name__,
            )
            return None
        assert isinstance(loader, DataLoader)
        return {
            "format": _CACHE_FORMAT,
            "model": model_fingerprint(model),
            "data": dataset_fingerprint(loader.dataset),
            "definition": self.importance,
            "loss": self.loss,
            "power": float(self.power),
            "batch_size": loader.batch_size,
            "order": self.order,
            "params": eligible,
        }

    def _train_importance(
        self, model: nn.Module, loader: Iterable, eligible: list[str]
    ) -> dict[str, Tensor]:
        """``I_D`` from the store's ``importance`` namespace (verified) or computed and stored."""
        self.cache_hit_, self.cache_path_ = False, None
        key = self._cache_key(model, loader, eligible) if self.cache else None
        store = None
        if key is not None:
            root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
            store = ArtifactStore(root)
            self.cache_path_ = store.path("importance", key) / _IMPORTANCE_FILE
            cached = self._load_cached(store, key, model, eligible)
            if _all_ranks_agree(cached is not None):
                log.info("%s: I_D cache hit: %s", type(self).__name__, self.cache_path_)
                self.cache_hit_ = True
                return cached  # type: ignore[return-value]
        importance = self._importance(model, loader, eligible)
        if store is not None and _world()[0] == 0:
            state = {n: v.detach().cpu() for n, v in importance.items()}
            store.put("importance", key, lambda d: torch.save(state, d / _IMPORTANCE_FILE))
            log.info("%s: I_D stored in the cache: %s", type(self).__name__, self.cache_path_)
        return importance

    def _load_cached(
        self, store: ArtifactStore, key: dict[str, Any], model: nn.Module, eligible: list[str]
    ) -> dict[str, Tensor] | None:
        """The verified cached ``I_D`` (``None``: missing, or corrupt and moved aside)."""
        entry = store.get("importance", key)  # ValueError when it holds another key
        if entry is None:
            return None
        path = entry.file(_IMPORTANCE_FILE)
        stored = torch.load(path, map_location="cpu", weights_only=True)
        params = dict(model.named_parameters())
        if list(stored) != eligible or any(stored[n].shape != params[n].shape for n in eligible):
            raise ValueError(
                f"importance cache entry {path} does not fit the model; remove it by hand"
            )
        return {n: stored[n].to(device=params[n].device, dtype=params[n].dtype) for n in eligible}


def _all_ranks_agree(flag: bool) -> bool:
    """``flag`` on every rank (logical AND over ranks; the flag itself outside distributed runs)."""
    if _world()[1] == 1:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":  # pragma: no cover - needs GPUs
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


class LFSSD(SSD):
    """LF-SSD: label-free SSD, importances from the squared L2 norm of the output.

    Source: Foster, Schoepf & Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper
    (arXiv 2402.19308), method section: the Fisher diagonal of SSD is replaced by the sensitivity
    ``Ω = mean_batches |∂ mean_b ||f(x_b)||²₂ / ∂θ|`` (power 1, no labels); selection and
    dampening are SSD's (arXiv 2308.07707) with the same α and λ (the reference
    README changes only the loss and the power). Everything else is inherited from :class:`SSD`.

    Args: as :class:`SSD`, with defaults ``loss="l2_output"`` and ``power=1.0``.

    Raises:
        ValueError: see :meth:`SSD.unlearn`.
    """

    def __init__(
        self,
        *,
        alpha: float = 10.0,
        lam: float = 1.0,
        importance: ImportanceDefinition = "batch_empirical",
        loss: LossKind = "l2_output",
        power: float = 1.0,
        batch_size: int | None = 64,
        order: BatchOrder = "reference",
        layers: list[str] | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            lam=lam,
            importance=importance,
            loss=loss,
            power=power,
            batch_size=batch_size,
            order=order,
            layers=layers,
            cache=cache,
            cache_dir=cache_dir,
        )
