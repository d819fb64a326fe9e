"""E2URec ported to graph recommenders: LoRA on the embedding tables, two teachers."""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from unlearnkit.base import UnlearnBatch, init_arguments
from unlearnkit.recsys.bpr import bpr_train_epoch
from unlearnkit.recsys.methods.base import RecLossUnlearner, pair_scores

__all__ = ["E2URec", "LoRAEmbeddingDelta", "forgetting_teacher_scores"]


def forgetting_teacher_scores(original: Tensor, augmented: Tensor, alpha: float = 2.0) -> Tensor:
    """Scores of E2URec's forgetting teacher: ``z_F = z_O - alpha * ReLU(z_A - z_O)``.

    Wang et al., "Towards Efficient and Effective Unlearning of Large Language Models for
    Recommendation" (E2URec), Frontiers of Computer Science 2025, arXiv:2403.03536, Sec. 3
    (forgetting teacher): ``A`` is the original model trained further on the forget data, so
    ``z_A - z_O`` is what the forget data add; subtracting ``alpha`` times its positive part
    gives logits of a model that never saw them.

    Args:
        original: the original model's scores ``z_O``.
        augmented: the augmented model's scores ``z_A`` (same shape).
        alpha: strength of the subtraction.

    Returns:
        ``z_F``, same shape.

    Shapes:
        Any, equal shapes (e.g. ``(B, I)`` float user x item scores).

    Raises:
        ValueError: the shapes differ.
    """
    if original.shape != augmented.shape:
        raise ValueError(
            f"original and augmented scores must have the same shape, got "
            f"{tuple(original.shape)} and {tuple(augmented.shape)}"
        )
    return original - alpha * torch.relu(augmented - original)


class LoRAEmbeddingDelta(nn.Module):
    """A low-rank update of an embedding table, as a ``torch.nn.utils.parametrize`` map.

    Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022,
    arXiv:2106.09685, Sec. 4.1, applied to an embedding table ``W (N, D)``:
    ``W' = W + (alpha / rank) * A B`` with ``A (N, rank)`` initialised to zero (so ``W' = W`` at
    the start) and ``B (rank, D)`` standard normal. Only ``A`` and ``B`` are trained.

    Args:
        num_embeddings: rows ``N``.
        embedding_dim: columns ``D``.
        rank: the rank ``r``.
        alpha: LoRA scaling numerator (scaling ``alpha / rank``).
        generator: random generator for ``B``.

    Raises:
        ValueError: ``rank < 1``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        rank: int = 16,
        alpha: float = 32.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if int(rank) < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.scaling = float(alpha) / int(rank)
        self.lora_A = nn.Parameter(torch.zeros(num_embeddings, int(rank)))
        self.lora_B = nn.Parameter(torch.randn(int(rank), embedding_dim, generator=generator))

    def forward(self, weight: Tensor) -> Tensor:
        """``W + scaling * A B``; shapes ``(N, D)`` in and out."""
        return weight + self.scaling * (self.lora_A @ self.lora_B).to(weight.dtype)


def _kl_bernoulli(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """Mean over pairs of ``KL(Bern(sigma(teacher)) || Bern(sigma(student)))`` (nats)."""
    p_log, p_log_not = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    q_log, q_log_not = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    kl = p_log.exp() * (p_log - q_log) + p_log_not.exp() * (p_log_not - q_log_not)
    return kl.mean()


def _kl_rows(teacher_logits: Tensor, student_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over rows of ``KL(softmax(teacher) || softmax(student))`` (nats).

    Entries where ``mask`` is True are left out of both distributions (renormalised over the
    rest).
    """
    if mask is not None:
        teacher_logits = teacher_logits.masked_fill(mask, float("-inf"))
        student_logits = student_logits.masked_fill(mask, float("-inf"))
    log_t = F.log_softmax(teacher_logits, dim=-1)
    log_s = F.log_softmax(student_logits, dim=-1)
    terms = log_t.exp() * (log_t - log_s)
    if mask is not None:
        terms = terms.masked_fill(mask, 0.0)
    return terms.sum(-1).mean()


class E2URec(RecLossUnlearner):
    """E2URec for graph recommenders: frozen original + LoRA, a forgetting and a remembering teacher.

    Wang, Lin, Chen, Yang, Tang, Zhang & Yu, "Towards Efficient and Effective Unlearning of Large
    Language Models for Recommendation", Frontiers of Computer Science 2025, arXiv:2403.03536,
    Sec. 3, ported from LLM recommenders to LightGCN / BPR-MF:

    - the original model's parameters are frozen; only LoRA factors of every embedding table
      (:class:`LoRAEmbeddingDelta`, rank ``rank``) are trained (LoRA on the LLM's attention in
      the paper); they are merged into the tables at the end;
    - the *augmented* model ``A`` is the original trained ``aux_epochs`` more BPR epochs on the
      forget pairs; the *forgetting teacher* scores are ``z_F = z_O - alpha * ReLU(z_A - z_O)``
      (:func:`forgetting_teacher_scores`); the *remembering teacher* is the original ``O``;
    - the teachers propagate over ``D_r``, like the student: teacher scores computed over the
      full graph would carry the forgotten edges back into the student (and did, in our trials:
      on item requests the student then re-ranked the removed items near the top);
    - ``distribution="user"`` (default): a user's "logits" are its scores for every item, turned
      into a distribution over items by a softmax (the LLM's token distribution in the paper);
      in the remembering KL a retained user's forgotten pairs (interaction requests) are left out
      of both distributions. ``distribution="pair"``: per (user, item) Bernoulli ``sigma(z)``, as
      the LLM's yes/no answer, on the batch's pairs and their sampled negatives (forgets more,
      keeps less utility on MovieLens).

    Loss per step (forget users and retain pairs of the batch)::

        (1 - beta) * [BPR(retain pairs) + KL(p_O || p_S) over the retain users]
            + beta * KL(p_F || p_S) over the forget users

    with ``beta = 0.4`` (0.6 / 0.4 as in the authors' setting). An epoch is one pass over the
    forget loader with as many random retain batches (``epoch_over = "forget"``). ``O`` and ``A``
    are frozen, so their embeddings are computed once; teacher scores cost one matrix product
    per batch.

    Args:
        rank: LoRA rank.
        lora_alpha: LoRA scaling numerator (scaling ``lora_alpha / rank``; 32 as in the
            authors' code with rank 16).
        alpha: forgetting-teacher strength.
        beta: weight of the forgetting KL term (the remembering terms get ``1 - beta``).
        aux_epochs: BPR epochs on the forget pairs that make the augmented model ``A``.
        aux_lr: Adam learning rate of those epochs.
        aux_batch_size: BPR triples per step of those epochs (forget sets are small: the default
            makes most epochs one step).
        distribution: ``"user"`` or ``"pair"`` (see above).
        kl_users: the remembering KL of a step covers at most this many of the batch's retain
            users (a seeded draw; ``distribution="user"``), which bounds its ``(users, I)``
            softmax.
        (others: see :class:`~unlearnkit.recsys.methods.base.RecLossUnlearner`; defaults 3
        epochs, Adam lr 0.02, L2 1e-4 on the BPR batch; chosen on MovieLens, see
        benchmarks/RESULTS.md)

    Attributes:
        trained_parameters_: LoRA parameters trained, ``rank * (N + D)`` per table of ``N`` rows
            (the full model has :func:`~unlearnkit.recsys.module.count_parameters` of them).

    Raises:
        ValueError: no retain loader; ``beta`` outside [0, 1] or ``alpha < 0`` (at setup); a
            model without ``nn.Embedding`` tables.
    """

    streams: ClassVar[tuple[str, ...]] = ("forget", "retain")
    epoch_over: ClassVar[Literal["longest", "forget"]] = "forget"

    def __init__(
        self,
        *,
        rank: int = 16,
        lora_alpha: float = 32.0,
        alpha: float = 2.0,
        beta: float = 0.4,
        aux_epochs: int = 5,
        aux_lr: float = 0.1,
        aux_batch_size: int = 4096,
        distribution: Literal["user", "pair"] = "user",
        kl_users: int = 256,
        epochs: int = 3,
        lr: float = 0.02,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 1e-4,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    # -- setup: teachers, augmented model, adapters ---------------------------------------
    @torch.no_grad()
    def _frozen_embeddings(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        was = model.training
        model.eval()
        user_emb, item_emb = model.embeddings()
        model.train(was)
        return user_emb.detach().clone(), item_emb.detach().clone()

    def _augmented(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        """Train a copy of the original on the forget pairs (original graph); its embeddings."""
        aux = copy.deepcopy(model)
        for p in aux.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(aux.parameters(), lr=self.aux_lr)
        gen = torch.Generator().manual_seed(int(self.seed) + 1)
        for _ in range(int(self.aux_epochs)):
            bpr_train_epoch(
                aux,
                optimizer,
                self.forget_edges_,
                batch_size=max(1, int(self.aux_batch_size)),
                generator=gen,
                reg_weight=self.reg_weight,
                seen=self.train_edges_,
            )
        return self._frozen_embeddings(aux)

    def setup(self, model: nn.Module) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"E2URec beta must be in [0, 1], got {self.beta}")
        if self.alpha < 0:
            raise ValueError(f"E2URec alpha must be >= 0, got {self.alpha}")
        tables = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Embedding)]
        if not tables:
            raise ValueError("E2URec needs a model with nn.Embedding tables to adapt with LoRA")
        # The base class switches the graph to D_r first: the teachers propagate over D_r too, so
        # the forgotten edges shape neither the student nor its targets.
        super().setup(model)
        self.teacher_ = self._frozen_embeddings(model)
        self.augmented_ = self._augmented(model)
        self._requires_grad = {id(p): p.requires_grad for p in model.parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(self.seed))
        self.adapters_: list[tuple[nn.Embedding, LoRAEmbeddingDelta]] = []
        for _, table in tables:
            delta = LoRAEmbeddingDelta(
                table.num_embeddings,
                table.embedding_dim,
                rank=self.rank,
                alpha=self.lora_alpha,
                generator=gen,
            ).to(table.weight.device)
            parametrize.register_parametrization(table, "weight", delta)
            self.adapters_.append((table, delta))

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Only the LoRA factors."""
        return [p for _, delta in getattr(self, "adapters_", []) for p in delta.parameters()]

    def finish(self, model: nn.Module) -> None:
        """Merge the LoRA updates into the tables, unfreeze, and set the graph to ``D_r``."""
        if getattr(self, "_finished", True):
            return
        for table, _ in getattr(self, "adapters_", []):
            if parametrize.is_parametrized(table, "weight"):
                parametrize.remove_parametrizations(table, "weight", leave_parametrized=True)
        self.adapters_ = []
        flags = getattr(self, "_requires_grad", {})
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), True))
        super().finish(model)

    # -- the loss -------------------------------------------------------------------------------
    def _teacher_logits(self, users: Tensor) -> tuple[Tensor, Tensor]:
        (tu, ti), (au, ai) = self.teacher_, self.augmented_
        users = users.to(tu.device)
        return tu[users] @ ti.t(), au[users] @ ai.t()

    def _pair_teacher(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        (tu, ti), (au, ai) = self.teacher_, self.augmented_
        return pair_scores(tu, ti, users, items), pair_scores(au, ai, users, items)

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        if self.distribution == "pair":
            return self._pair_loss(model, batch)
        return self._user_loss(model, batch)

    def _pair_loss(self, model: nn.Module, batch: UnlearnBatch) -> Tensor:
        (fu, fi), (ru, ri) = batch.forget, batch.retain  # type: ignore[misc]
        user_emb, item_emb = model.embeddings()
        rj = self.negatives(ru, avoid="retain")
        fj = self.negatives(fu, avoid="train")
        bpr, s_ri, s_rj = self.retain_bpr(model, user_emb, item_emb, ru, ri, rj)
        users, items = torch.cat([ru, ru]), torch.cat([ri, rj])
        z_o, _ = self._pair_teacher(users, items)
        remember = _kl_bernoulli(z_o, torch.cat([s_ri, s_rj]))
        users, items = torch.cat([fu, fu]), torch.cat([fi, fj])
        z_o, z_a = self._pair_teacher(users, items)
        z_f = forgetting_teacher_scores(z_o, z_a, self.alpha)
        forget = _kl_bernoulli(z_f, pair_scores(user_emb, item_emb, users, items))
        return (1.0 - self.beta) * (bpr + remember) + self.beta * forget

    def _forgotten_mask(self, users: Tensor) -> Tensor:
        """``(B, I)`` bool: True at the forgotten pairs of ``users`` (sorted, unique)."""
        forget = self.forget_edges_
        row_of = torch.full((self.num_users_,), -1, dtype=torch.long)
        row_of[users.cpu()] = torch.arange(users.numel())
        rows = row_of[forget[0]]
        keep = rows >= 0
        mask = torch.zeros(users.numel(), self.num_items_, dtype=torch.bool)
        mask[rows[keep], forget[1][keep]] = True
        return mask.to(users.device)

    def _user_loss(self, model: nn.Module, batch: UnlearnBatch) -> Tensor:
        (fu, _), (ru, ri) = batch.forget, batch.retain  # type: ignore[misc]
        user_emb, item_emb = model.embeddings()
        # Remembering: BPR on retained pairs + KL(original || student) on retained users.
        rj = self.negatives(ru, avoid="retain")
        bpr, _, _ = self.retain_bpr(model, user_emb, item_emb, ru, ri, rj)
        retain_users = torch.unique(ru)
        if retain_users.numel() > self.kl_users:  # a seeded draw keeps the step cheap
            pick = torch.randperm(retain_users.numel(), generator=self.generator_)
            retain_users = retain_users[pick[: self.kl_users].sort().values]
        z_o, _ = self._teacher_logits(retain_users)
        mask = self._forgotten_mask(retain_users)
        remember = _kl_rows(
            z_o, user_emb[retain_users] @ item_emb.t(), mask if bool(mask.any()) else None
        )
        # Forgetting: KL(forgetting teacher || student) on the forget users.
        forget_users = torch.unique(fu)
        z_o_f, z_a_f = self._teacher_logits(forget_users)
        z_f = forgetting_teacher_scores(z_o_f, z_a_f, self.alpha)
        forget = _kl_rows(z_f, user_emb[forget_users] @ item_emb.t())
        return (1.0 - self.beta) * (bpr + remember) + self.beta * forget
