"""`RecLossUnlearner`: the shared base of iterative recommender unlearning methods.

It turns the forget / retain loaders into edge sets, validates them against the model's training
graph, samples BPR negatives, runs the loop through :class:`~unlearnkit.recsys.module.RecUnlearningModule`
and, in every case, finishes with ``model.set_graph(retain_edges)``: after unlearning, the
forgotten interactions no longer take part in message passing, in either direction (He et al.,
"LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 3.1: the normalized adjacency is rebuilt from
``D_r``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.base import LossUnlearner, init_arguments
from unlearnkit.datasets.interactions import check_edges
from unlearnkit.recsys.bpr import (
    _sample_unseen,  # bpr.sample_negatives' sampler
    _seen_keys,
    bpr_loss,
)
from unlearnkit.recsys.data import edge_loader
from unlearnkit.recsys.graph import remove_edges

__all__ = ["RecLossUnlearner", "loader_edges", "pair_scores", "triple_scores"]


def loader_edges(loader: DataLoader | None) -> Tensor:
    """The ``(2, E)`` int64 (user, item) pairs a loader iterates over.

    Read from ``loader.dataset.edges`` (:class:`~unlearnkit.recsys.data.EdgeDataset`), from the
    two tensors of a ``TensorDataset(users, items)``, or else by iterating the loader once.

    Args:
        loader: a loader of ``(users (B,), items (B,))`` batches, or ``None``.

    Returns:
        The pairs (``(2, 0)`` for ``None``).

    Raises:
        TypeError: the batches are not (users, items) integer tensors.
    """
    if loader is None:
        return torch.empty(2, 0, dtype=torch.long)
    dataset = getattr(loader, "dataset", None)
    edges = getattr(dataset, "edges", None)
    if isinstance(edges, Tensor):
        return edges
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return torch.stack([dataset.tensors[0].long(), dataset.tensors[1].long()])
    users, items = [], []
    for batch in loader:
        if not (isinstance(batch, (tuple, list, Tensor)) and len(batch) >= 2):
            raise TypeError(
                "recommender loaders must yield (users, items) batches; wrap edges in "
                "unlearnkit.recsys.data.EdgeDataset"
            )
        users.append(torch.as_tensor(batch[0]).long().flatten())
        items.append(torch.as_tensor(batch[1]).long().flatten())
    if not users:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.stack([torch.cat(users), torch.cat(items)])


def pair_scores(user_emb: Tensor, item_emb: Tensor, users: Tensor, items: Tensor) -> Tensor:
    """Dot-product scores ``<e_u, e_i>`` of (user, item) pairs from final embeddings.

    Args:
        user_emb: ``(U, D)`` float user representations.
        item_emb: ``(I, D)`` float item representations.
        users: ``(B,)`` int64 user ids.
        items: ``(B,)`` int64 item ids.

    Returns:
        ``(B,)`` float scores.
    """
    return (user_emb[users] * item_emb[items]).sum(-1)


def triple_scores(
    user_emb: Tensor, item_emb: Tensor, users: Tensor, pos: Tensor, neg: Tensor
) -> tuple[Tensor, Tensor]:
    """Scores ``(s_ui, s_uj)`` of BPR triples ``(u, i, j)`` from final embeddings.

    Rendle et al., "BPR", UAI 2009, arXiv:1205.2618, Sec. 4: the pairwise loss compares the
    observed pair ``(u, i)`` with the sampled one ``(u, j)``.

    Args:
        user_emb: ``(U, D)`` float user representations.
        item_emb: ``(I, D)`` float item representations.
        users: ``(B,)`` int64 user ids ``u``.
        pos: ``(B,)`` int64 observed (or forgotten) items ``i``.
        neg: ``(B,)`` int64 sampled items ``j``.

    Returns:
        ``(pos_scores (B,), neg_scores (B,))`` float.
    """
    return pair_scores(user_emb, item_emb, users, pos), pair_scores(user_emb, item_emb, users, neg)


def _loader_batch_size(loader: DataLoader) -> int:
    """Pairs per batch of a loader (automatic batching, or a BatchSampler as its sampler)."""
    for sampler in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        size = getattr(sampler, "batch_size", None)
        if size:
            return int(size)
    return int(loader.batch_size or 1)


class RecLossUnlearner(LossUnlearner):
    """An iterative recommender unlearning method (subclasses write :meth:`loss`).

    The model must be a dot-product recommender of :mod:`unlearnkit.recsys.models`
    (``set_graph``, ``graph_edges``, ``embeddings``, ``ego_embeddings``) whose graph holds the
    training interactions ``D_train`` (``model.set_graph(train_edges)``). Loaders yield
    ``(users (B,), items (B,))`` int64 pairs (:func:`~unlearnkit.recsys.data.edge_loader`).

    What :meth:`unlearn` does:

    1. checks the inputs: every forgotten pair must be an edge of the model's graph (and ids in
       range), else a one-line ``ValueError``;
    2. the retain edges are ``retain.dataset.edges`` or, without a retain loader, the model's
       graph minus the forgotten pairs;
    3. :meth:`setup` switches the model's graph to the retain edges (the model trains under the
       graph it will be served with), and seeds the negative sampler;
    4. ``epochs`` passes through Lightning; with ``epoch_over = "forget"`` an epoch is one pass
       over the forget loader, with as many retain batches drawn at random (methods whose retain
       term only anchors utility need not sweep all of ``D_r``, which is what makes them faster
       than retraining);
    5. :meth:`finish` (also on errors): ``model.set_graph(retain_edges)``.

    Args:
        epochs: passes (see ``epoch_over``).
        lr: learning rate.
        optimizer: ``"adam"`` (LightGCN's optimizer) or ``"sgd"``.
        momentum: SGD momentum.
        weight_decay: optimizer weight decay (0: use ``reg_weight`` instead).
        lr_schedule: ``"constant"`` or ``"cosine"``.
        seed: seeds the loaders' shuffling and the negative sampler.
        reg_weight: L2 on the batch's layer-0 embeddings, LightGCN's ``lambda`` (Sec. 3.2).
        **method_params: a subclass's own hyper-parameters, stored unchanged as attributes.

    Attributes:
        forget_edges_: ``(2, F)`` forgotten pairs of the last run.
        retain_edges_: ``(2, R)`` retained pairs (the model's graph afterwards).
        train_edges_: ``(2, E)`` the model's graph before unlearning.
        trained_parameters_: number of scalar parameters the optimizer updated.
    """

    #: Name in reports (defaults to the class name).
    method_name: ClassVar[str | None] = None
    #: Which loader sets the epoch length: ``"longest"`` (Lightning's ``max_size_cycle``) or
    #: ``"forget"`` (retain batches are drawn at random to match the forget loader).
    epoch_over: ClassVar[Literal["longest", "forget"]] = "longest"

    def __init__(
        self,
        *,
        epochs: int = 1,
        lr: float = 1e-3,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 1e-4,
        **method_params: Any,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    # -- preparation ----------------------------------------------------------------------
    def _check_model(self, model: nn.Module) -> None:
        for attr in ("set_graph", "graph_edges", "embeddings", "ego_embeddings", "num_items"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"{type(self).__name__} needs a recommender from unlearnkit.recsys.models "
                    f"(LightGCNRecommender, MFRecommender); {type(model).__name__} has no {attr!r}"
                )

    def is_prepared(self) -> bool:
        """Whether :meth:`prepare` ran for the current fit."""
        return getattr(self, "_prepared", False)

    def prepare(self, model: nn.Module, forget_edges: Tensor, retain_edges: Tensor) -> None:
        """Record the edge sets of this run (called before the optimizer is built).

        Args:
            model: the recommender; its current graph is recorded as ``train_edges_``.
            forget_edges: ``(2, F)`` forgotten pairs (``F`` may be 0 when training from scratch).
            retain_edges: ``(2, R)`` pairs the model keeps (its graph afterwards).

        Raises:
            TypeError: not a recommender.
            ValueError: an id out of range.
        """
        self._check_model(model)
        num_users, num_items = int(model.num_users), int(model.num_items)
        for name, edges in (("forget", forget_edges), ("retain", retain_edges)):
            try:
                check_edges(edges, num_users, num_items)
            except ValueError as err:
                raise ValueError(f"{type(self).__name__}: {name} edges: {err}") from None
        self.forget_edges_ = forget_edges.detach().long().cpu()
        self.retain_edges_ = retain_edges.detach().long().cpu()
        self.train_edges_ = model.graph_edges.detach().long().cpu().clone()
        self.num_users_, self.num_items_ = num_users, num_items
        self._prepared = True
        self._finished = False

    def setup(self, model: nn.Module) -> None:
        """Seed the negative sampler and switch the model's graph to the retain edges."""
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        self._seen: dict[str, tuple[Tensor, Tensor]] = {}
        model.set_graph(self.retain_edges_)

    def finish(self, model: nn.Module) -> None:
        """End of a run (also after an error): the model propagates over ``D_r`` only."""
        if getattr(self, "_finished", True):
            return
        self._finished = True
        self._prepared = False
        model.set_graph(self.retain_edges_)
        model.eval()

    # -- helpers for losses -----------------------------------------------------------------
    def negatives(self, users: Tensor, *, avoid: Literal["train", "retain"] = "retain") -> Tensor:
        """One negative item per user, uniform among the items the user has not interacted with.

        Args:
            users: user ids, ``(B,)`` int64.
            avoid: ``"retain"`` (the retained graph: forgotten items may be drawn) or ``"train"``
                (the graph before unlearning: never a forgotten or retained item).

        Returns:
            ``(B,)`` int64 item ids (Rendle et al., UAI 2009, Sec. 4.3 sampling; seeded by
            ``seed``).
        """
        # bpr.sample_negatives' own sampler, with the sorted user*I+item keys built once per run
        # instead of once per batch (that was a quarter of a ReverseBPR step).
        if avoid not in self._seen:
            edges = self.retain_edges_ if avoid == "retain" else self.train_edges_
            self._seen[avoid] = _seen_keys(edges, self.num_items_)
        keys, counts = self._seen[avoid]
        return _sample_unseen(users.cpu(), keys, counts, self.num_items_, self.generator_).to(
            users.device
        )

    def retain_bpr(
        self,
        model: nn.Module,
        user_emb: Tensor,
        item_emb: Tensor,
        users: Tensor,
        pos: Tensor,
        neg: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """BPR loss of a batch of triples from the step's final embeddings, with LightGCN's L2.

        BPR (Rendle et al., UAI 2009, arXiv:1205.2618, Sec. 4) plus ``reg_weight`` times the
        squared layer-0 rows of the triples over ``B`` (He et al., SIGIR 2020, arXiv:2002.02126,
        Sec. 3.2); as :func:`~unlearnkit.recsys.bpr.bpr_batch_loss`, but reusing embeddings the
        step propagated once for its other terms.

        Args:
            model: the recommender (its ``ego_embeddings()`` give the layer-0 rows).
            user_emb: ``(U, D)`` final user embeddings of this step.
            item_emb: ``(I, D)`` final item embeddings of this step.
            users: ``(B,)`` int64 user ids.
            pos: ``(B,)`` int64 observed items.
            neg: ``(B,)`` int64 sampled negatives.

        Returns:
            ``(loss, pos_scores (B,), neg_scores (B,))``.

        Raises:
            ValueError: an empty batch.
        """
        reg = None
        if self.reg_weight:
            user0, item0 = model.ego_embeddings()
            reg = (user0[users], item0[pos], item0[neg])
        pos_s, neg_s = triple_scores(user_emb, item_emb, users, pos, neg)
        return bpr_loss(pos_s, neg_s, reg_embeddings=reg, reg_weight=self.reg_weight), pos_s, neg_s

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The method's optimizer; records how many parameters it updates."""
        optimizer = super().configure_optimizer(model)
        self.trained_parameters_ = sum(
            p.numel() for group in optimizer.param_groups for p in group["params"]
        )
        return optimizer

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """Every parameter that requires grad (E2URec: only its LoRA factors)."""
        return [p for p in model.parameters() if p.requires_grad]

    # -- running ------------------------------------------------------------------------------
    def _loaders(
        self, forget: DataLoader | None, retain: DataLoader | None
    ) -> dict[str, DataLoader | None]:
        if (
            self.epoch_over == "forget"
            and forget is not None
            and retain is not None
            and "retain" in self.streams
            and "forget" in self.streams
        ):
            batch = _loader_batch_size(retain)
            retain = edge_loader(
                loader_edges(retain), batch, shuffle=True, num_samples=len(forget) * batch
            )
        return {"forget": forget, "retain": retain}

    def fit(
        self,
        model: nn.Module,
        loaders: Mapping[str, DataLoader | None],
        *,
        trainer: Any | None = None,
    ) -> nn.Module:
        """Run the loop on ``model`` in place without the unlearning checks.

        Used to train the original model (``FineTune`` on ``D_train``) and the retrained one
        (``Retrain`` on ``D_r``); :meth:`unlearn` calls it after validating its inputs. Edges are
        read from the loaders; a missing forget loader means nothing is forgotten.

        Args:
            model: the recommender (its graph is set to the retain edges at setup).
            loaders: ``{"forget": ..., "retain": ...}``.
            trainer: optional Lightning ``Trainer`` (``max_epochs == epochs``).

        Returns:
            ``model``.
        """
        from unlearnkit.recsys.module import fit_rec_method

        forget, retain = loaders.get("forget"), loaders.get("retain")
        if forget is not None:
            self._forget_batch_size = _loader_batch_size(forget)
        if not self.is_prepared():
            self.prepare(model, loader_edges(forget), loader_edges(retain))
        try:
            fit_rec_method(self, model, self._loaders(forget, retain), trainer=trainer)
        finally:
            self.finish(model)
        return model

    def apply(
        self,
        model: nn.Module,
        loaders: Mapping[str, DataLoader],
        *,
        trainer: Any | None = None,
    ) -> nn.Module:
        """Forget the pairs of ``loaders["forget"]`` in place (see the class docstring).

        Called by :meth:`~unlearnkit.base.Unlearner.unlearn` (``unlearn(model, forget, retain)``)
        and :meth:`~unlearnkit.base.Unlearner.unlearn_from` (a ``RecDataModule``) with the
        declared streams' loaders over (user, item) pairs.

        Args:
            model: the original recommender, graph = ``D_train``; modified in place.
            loaders: ``forget`` (D_f pairs) and, when declared, ``retain`` (D_r pairs).
            trainer: optional Lightning ``Trainer`` with ``max_epochs == epochs``.

        Returns:
            ``model``, now propagating over ``D_r`` only.

        Raises:
            TypeError: ``model`` is not a recommender.
            ValueError: an unknown user/item id, or a forgotten pair that is not an edge of the
                model's graph.
        """
        forget, retain = loaders["forget"], loaders.get("retain")
        self._check_model(model)
        forget_edges = loader_edges(forget)
        name = type(self).__name__
        try:
            check_edges(forget_edges, int(model.num_users), int(model.num_items))
        except ValueError as err:
            raise ValueError(f"{name}: forget set: {err}") from None
        try:
            without = remove_edges(model.graph_edges, forget_edges)
        except ValueError as err:
            hint = "" if model.graph_edges.numel() else " (the model has no graph: call set_graph)"
            raise ValueError(f"{name}: {err}{hint}") from None
        retain_edges = loader_edges(retain) if retain is not None else without
        self.prepare(model, forget_edges, retain_edges)
        return self.fit(model, {"forget": forget, "retain": retain}, trainer=trainer)
