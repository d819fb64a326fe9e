"""Worst-case forget sets: the ``worst_case`` forget kind, searched by bi-level optimisation.

Fan, Liu, Hero & Liu, "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine
Unlearning", ECCV 2024 (arXiv 2403.07362), §4: selection weights ``w ∈ [0, 1]^N`` over D_train
with ``1ᵀw = m``; the upper level minimises ``Σ_i w_i ℓ(θ_u(w); z_i) + γ‖w‖²`` (the model unlearned
on the chosen points still fits them: they are hard to forget), the lower level unlearns from θ_o
by fine-tuning on the soft retain set, unrolled with signSGD. Reference code:
``OPTML-Group/Unlearn-WorstCase``, ``data-wise/`` (``main_selmu.py``, ``unlearn/impl.py``:
``optimize_select`` / ``reverse_optimize_select``, ``unlearn/FT.py``: ``w_FT_iter``, ``utils.py``:
``SignSGD``, ``bisection``, ``update_w``; ``arg_parser.py`` for the defaults).

Use it as a forget request (Python or YAML)::

    ForgetSpec(kind="worst_case", fraction=0.1, selector=WorstCaseSelector())
    {kind: worst_case, fraction: 0.1,
     selector: {class_path: unlearnkit.vision.worst_case.WorstCaseSelector, init_args: {seed: 0}}}

or call :func:`worst_case_forget_set` on a model and a dataset.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from unlearnkit.data import ForgetSelector
from unlearnkit.evaluation.collect import collect
from unlearnkit.unlearner import init_arguments

__all__ = [
    "PaperWorstCaseSelector",
    "WorstCaseSelector",
    "project_capped_simplex",
    "top_m",
    "worst_case_forget_set",
]


def project_capped_simplex(v: Tensor, m: float, *, max_iter: int = 200) -> Tensor:
    """Euclidean projection of ``v`` onto the capped simplex ``{w ∈ [0, 1]^N : Σ_i w_i = m}``.

    The KKT conditions give ``w = clip(v − μ, 0, 1)`` for the one ``μ`` with
    ``Σ_i clip(v_i − μ, 0, 1) = m`` (a non-increasing, piecewise-linear function of ``μ``); ``μ`` is
    found by bisection on ``[min(v) − 1, max(v)]``, as ``bisection`` in the reference's
    ``data-wise/utils.py``. What we do differently: float64, bisection until the bracket stops
    shrinking (the reference stops at a width of 1e-5 or 100 steps), then ``μ`` solved exactly on
    the linear piece found (the coordinates strictly inside ``(0, 1)``), so the sum is ``m`` to
    rounding and the result is idempotent on feasible points.

    Args:
        v: ``(N,)`` the point to project.
        m: the sum, ``0 ≤ m ≤ N``.
        max_iter: bisection steps at most.

    Returns:
        ``(N,)`` float64, the projection.

    Raises:
        ValueError: ``v`` is not 1-D, holds NaN/inf, or ``m`` is outside ``[0, N]``.
    """
    v = torch.as_tensor(v).detach().to(torch.float64).flatten().cpu()
    n = v.numel()
    if n == 0 or not torch.isfinite(v).all():
        raise ValueError("project_capped_simplex needs a non-empty, finite vector (no NaN/inf)")
    if not 0 <= m <= n:
        raise ValueError(f"the capped simplex needs 0 <= m <= N = {n}, got m = {m}")
    lo, hi = float(v.min()) - 1.0, float(v.max())  # f(lo) = N >= m >= 0 = f(hi)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # the bracket no longer shrinks in float64
            break
        if float(torch.clamp(v - mid, 0.0, 1.0).sum()) > m:
            lo = mid
        else:
            hi = mid
    mu = 0.5 * (lo + hi)
    shifted = v - mu
    inside = (shifted > 0) & (shifted < 1)
    if inside.any():  # exact μ on this linear piece: Σ_inside (v_i − μ) + #{v_i − μ >= 1} = m
        ones = int((shifted >= 1).sum())
        mu = float((v[inside].sum() - (m - ones)) / int(inside.sum()))
    return torch.clamp(v - mu, 0.0, 1.0)


def top_m(w: Tensor, m: int) -> Tensor:
    """The ``m`` indices of the largest entries of ``w`` (ties: the lower index first), sorted.

    The reference binarises with ``torch.topk(w, m)`` (``main_selmu.py``); a stable sort makes
    the choice among equal weights deterministic.
    """
    order = torch.argsort(torch.as_tensor(w), descending=True, stable=True)
    return order[:m].sort().values


class _Indexed(Dataset):
    """``(x, y, position)`` for any dataset yielding ``(x, y, ...)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        item = self.dataset[i]
        return item[0], torch.as_tensor(item[1]), i


def _train_dataset(data: Any) -> Dataset:
    """D_train in its order, without augmentation, from a DataModule, a DataLoader or a Dataset."""
    if hasattr(data, "full_train_dataloader"):  # an UnlearningDataModule
        return data.full_train_dataloader(shuffle=False).dataset
    if isinstance(data, DataLoader):
        return data.dataset
    if isinstance(data, Dataset) or hasattr(data, "__getitem__"):
        return data
    raise ValueError(
        f"worst-case search needs a DataModule, DataLoader or Dataset of D_train, got "
        f"{type(data).__name__}"
    )


class WorstCaseSelector(ForgetSelector):
    """The worst-case forget set of a given size, by the bi-level search of Fan et al.

    Fan, Liu, Hero & Liu, "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine
    Unlearning", ECCV 2024 (arXiv 2403.07362), §4 (the bi-level problem over selection weights and
    its signSGD-unrolled solution), as ``data-wise/main_selmu.py`` of ``OPTML-Group/Unlearn-WorstCase``
    runs it with the fine-tuning lower level (``--unlearn w_FT``, the README's example).

    Each upper iteration ``t = 1..upper_iterations``:

    1. θ ← θ_o (reloaded every iteration, ``main_selmu.py``).
    2. Lower level (``unlearn/FT.py: w_FT_iter``, ``unlearn/impl.py: _w_iterative_unlearn_impl``):
       ``lower_epochs`` passes over D_train in shuffled batches of ``batch_size``, the model in
       train mode, each batch one signSGD step ``θ ← θ − theta_lr · sign(∇_θ Σ_i (1 − w_i)
       CE(θ; z_i))`` (``utils.SignSGD.sign_step``: no momentum, no weight decay).
    3. Upper level (``unlearn/impl.py: optimize_select``): per-sample losses ``ℓ_i = CE(θ_u; z_i)``
       over D_train, then ``w ← Π(w − w_lr (ℓ + 2γw))`` (``mode="hardest"``) or ``w ← Π(w + w_lr
       (ℓ + 2γw))`` (``mode="easiest"``: ``reverse_optimize_select``, gradient ascent on the same
       objective), with ``Π`` the projection onto ``{w ∈ [0, 1]^N, Σw = m}``
       (:func:`project_capped_simplex`).
    4. ``w̄ = top-m(w)``; every ``binarize_every`` iterations ``w ← w̄`` (``--feq_to_bi``; the
       reference caps it at the number of iterations, so with the defaults ``w`` is binarised at
       the last one).

    The upper gradient is ``ℓ + 2γw`` only: signSGD's update ``sign(·)`` is piecewise constant in
    ``w``, so the implicit gradient ``(dθ_u/dw)ᵀ ∇_θ Σ w_i ℓ_i`` is zero almost everywhere and the
    reference drops it (the paper's reason for unrolling with signSGD). The selection is the top
    ``m`` of the final ``w`` (``main_evalmu.py`` binarises ``w[-1]`` the same way). The initial
    ``w`` is a uniformly drawn binary set of ``m`` points (``update_w`` with ``class_to_replace =
    -1``), or ``init="uniform"``: ``m / N`` everywhere (the alternative commented out there).

    What we do differently, and why:

    * The per-sample losses of step 3 are computed in eval mode on un-augmented samples (the
      reference scores them in train mode on augmented ones): the upper level asks how well θ_u
      fits the point, and eval mode makes the answer deterministic. The lower level also sees
      un-augmented samples.
    * The reference's lower-level ``MultiStepLR`` (milestones at pass 91 and 136) never fires with
      ≤ 90 passes and is left out; the bisection is exact (see :func:`project_capped_simplex`);
      ties in top-m go to the lower index.
    * Seeded: the initial set and every shuffle come from one generator seeded with ``seed``, and
      the global RNG (dropout) is seeded inside a forked RNG state, so the same inputs give the
      same set and the caller's RNG is left as it was. θ_o is copied, never modified.

    Step size: from the binary random start a point changes sides only once ``w_lr`` times its
    accumulated loss difference to a chosen point exceeds about 1, so with the code's ``w_lr =
    0.01`` over 10 iterations only points whose losses differ by ~10 nats swap, and on a
    well-fitted model the search returns (nearly) its random start (the paper preset's ``1e-3``
    even more so). The reference's own evaluation example reads weights from a run named
    ``w_lr_10000.0`` (comment at the end of ``main_evalmu.py``): give a large ``w_lr`` or
    ``init="uniform"`` for a search that moves.

    Cost: ``upper_iterations × (lower_epochs + 1)`` passes over D_train, i.e. 110 with the
    defaults (the paper preset: 210) — several trainings of θ_o; cap it with ``lower_epochs``.

    Args:
        mode: ``"hardest"`` (the worst case: the points θ_u still fits best) or ``"easiest"``.
        upper_iterations: upper-level iterations (reference ``--select_epochs``, default 10).
        lower_epochs: passes over D_train per lower level (reference ``--unlearn_steps``, which
            counts passes of ``w_FT_iter``, default 10).
        w_lr: upper-level step size (reference ``--w_lr``, default 0.01).
        theta_lr: lower-level signSGD step size (reference ``--theta_lr``, default 0.01).
        gamma: weight ``γ`` of ``‖w‖²`` (reference ``--gamma``, default 0).
        batch_size: lower-level batch size and evaluation batch size (reference 256).
        binarize_every: replace ``w`` by its top-m binarisation every this many iterations
            (reference ``--feq_to_bi``, default 20, capped at ``upper_iterations``).
        init: initial weights, ``"random"`` (a seeded random binary set, the reference's) or
            ``"uniform"`` (``m / N`` everywhere).
        seed: seed of the initial set, the shuffles and dropout.

    Attributes:
        weights_: ``(N,)`` float64, the final selection weights ``w``.
        objective_: the upper objective ``Σ_i w_i ℓ_i`` after each iteration (the reference's
            ``select_epoch_loss``).
        indices_: ``(m,)`` int64 sorted, the selected forget set.

    Raises (from :meth:`select`):
        ValueError: ``size`` not in ``1..N-1``, a hyper-parameter out of range, or a non-finite
            per-sample loss (the lower level diverged: lower ``theta_lr``).
    """

    def __init__(
        self,
        *,
        mode: Literal["hardest", "easiest"] = "hardest",
        upper_iterations: int = 10,
        lower_epochs: int = 10,
        w_lr: float = 0.01,
        theta_lr: float = 0.01,
        gamma: float = 0.0,
        batch_size: int = 256,
        binarize_every: int = 20,
        init: Literal["random", "uniform"] = "random",
        seed: int = 0,
    ) -> None:
        for name, value in init_arguments(locals()).items():
            setattr(self, name, value)

    @classmethod
    def paper(cls, **changes: Any) -> PaperWorstCaseSelector:
        """The paper's settings (:class:`PaperWorstCaseSelector`), with ``changes`` applied."""
        return PaperWorstCaseSelector(**changes)

    def _check(self, n: int, size: int) -> None:
        if not 0 < int(size) < n:
            raise ValueError(
                f"the worst-case forget set size must be in 1..{n - 1} for {n} training samples, "
                f"got {size}"
            )
        for name in ("upper_iterations", "lower_epochs", "batch_size", "binarize_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("w_lr", "theta_lr"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.mode not in ("hardest", "easiest"):
            raise ValueError(f"mode must be 'hardest' or 'easiest', got {self.mode!r}")
        if self.init not in ("random", "uniform"):
            raise ValueError(f"init must be 'random' or 'uniform', got {self.init!r}")

    def select(self, model: nn.Module, data: Any, *, size: int) -> Tensor:
        """Search the forget set of ``size`` points of D_train (see the class docstring).

        Args:
            model: θ_o (copied; left unchanged).
            data: an :class:`~unlearnkit.data.UnlearningDataModule` (its un-augmented D_train in
                order), a DataLoader of D_train (its dataset is re-batched) or a Dataset yielding
                ``(x, y, ...)``.
            size: ``m``, the forget-set size.

        Returns:
            ``(m,)`` int64 sorted indices into D_train.

        Raises:
            ValueError: see the class docstring.
        """
        dataset = _train_dataset(data)
        n = len(dataset)  # type: ignore[arg-type]
        self._check(n, size)
        m = int(size)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        work = copy.deepcopy(model)
        theta_o = copy.deepcopy(model.state_dict())
        gen = torch.Generator().manual_seed(int(self.seed))
        if self.init == "random":
            w = torch.zeros(n, dtype=torch.float64)
            w[torch.randperm(n, generator=gen)[:m]] = 1.0
        else:
            w = torch.full((n,), m / n, dtype=torch.float64)
        indexed = _Indexed(dataset)
        train_loader = DataLoader(indexed, batch_size=self.batch_size, shuffle=True, generator=gen)
        eval_loader = DataLoader(indexed, batch_size=self.batch_size, shuffle=False)
        every = min(int(self.binarize_every), int(self.upper_iterations))
        sign = -1.0 if self.mode == "hardest" else 1.0
        self.objective_: list[float] = []
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(self.seed))
            for t in range(int(self.upper_iterations)):
                work.load_state_dict(theta_o)
                self._lower(work, w, train_loader, device)
                losses = self._losses(work, eval_loader, device, t)
                w = project_capped_simplex(w + sign * self.w_lr * (losses + 2 * self.gamma * w), m)
                self.objective_.append(float((w * losses).sum()))
                if (t + 1) % every == 0:
                    binary = torch.zeros_like(w)
                    binary[top_m(w, m)] = 1.0
                    w = binary
        self.weights_ = w
        self.indices_ = top_m(w, m)
        return self.indices_.clone()

    def _lower(self, model: nn.Module, w: Tensor, loader: DataLoader, device: torch.device) -> None:
        """``lower_epochs`` signSGD passes on ``Σ_i (1 − w_i) CE(θ; z_i)`` (``w_FT_iter``)."""
        retain_weight = (1.0 - w).to(device=device, dtype=torch.float32)
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        for _ in range(int(self.lower_epochs)):
            for x, y, index in loader:
                x, y = x.to(device), y.to(device)
                per_sample = F.cross_entropy(model(x), y, reduction="none")
                loss = (retain_weight[index.to(device)] * per_sample).sum()
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(params, grads, strict=True):
                        if g is not None:
                            p.add_(g.sign(), alpha=-self.theta_lr)

    def _losses(self, model: nn.Module, loader: DataLoader, device: torch.device, t: int) -> Tensor:
        """Per-sample CE of θ_u over D_train (eval mode, the shared evaluation pass), ``(N,)``
        float64 in D_train order (``loader`` is unshuffled)."""
        losses = collect(model, loader, device=device).losses.double()
        if not torch.isfinite(losses).all():
            bad = int((~torch.isfinite(losses)).nonzero()[0])
            raise ValueError(
                f"worst-case search: the loss of training sample {bad} is not finite after the "
                f"lower level of upper iteration {t + 1}; lower theta_lr (now {self.theta_lr}) "
                "or lower_epochs"
            )
        return losses


class PaperWorstCaseSelector(WorstCaseSelector):
    """:class:`WorstCaseSelector` with the settings the paper reports (``w_lr = 1e-3``,
    ``γ = 1e-4``, 20 upper iterations; the other arguments as the code's defaults).

    Fan et al., ECCV 2024 (arXiv 2403.07362), experiment setup, as quoted in this project's
    issue 12 (not re-read from the paper here). In YAML: ``class_path:
    unlearnkit.vision.worst_case.PaperWorstCaseSelector``. Same arguments as
    :class:`WorstCaseSelector`.
    """

    def __init__(
        self,
        *,
        mode: Literal["hardest", "easiest"] = "hardest",
        upper_iterations: int = 20,
        lower_epochs: int = 10,
        w_lr: float = 1e-3,
        theta_lr: float = 0.01,
        gamma: float = 1e-4,
        batch_size: int = 256,
        binarize_every: int = 20,
        init: Literal["random", "uniform"] = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))


def worst_case_forget_set(model: nn.Module, data: Any, *, size: int, **params: Any) -> Tensor:
    """The worst-case forget set of ``size`` points: ``WorstCaseSelector(**params).select(...)``.

    Args:
        model: θ_o (left unchanged).
        data: a DataModule, DataLoader or Dataset of D_train (see :meth:`WorstCaseSelector.select`).
        size: the forget-set size ``m``.
        **params: :class:`WorstCaseSelector` arguments (``mode``, ``w_lr``, ``seed``, ...).

    Returns:
        ``(m,)`` int64 sorted indices into D_train (the selector's, one code path).

    Raises:
        ValueError: see :class:`WorstCaseSelector`.
        TypeError: an unknown argument in ``params``.
    """
    return WorstCaseSelector(**params).select(model, data, size=size)
