"""Dot-product recommenders for graph-recommender unlearning: LightGCN and BPR-MF.

Both models share one API, which unlearning methods and the ranking evaluation rely on:

- ``set_graph(train_edges)``: (re)build the propagation graph from the current training
  interactions; unlearning calls it with the retain edges so forgotten pairs vanish from message
  passing in both directions.
- ``ego_embeddings()``: layer-0 user and item representations (the inputs to propagation; what
  the BPR L2 term regularizes).
- ``embeddings()``: final user and item representations; scores are their dot products.
- ``score(users, items)`` and ``full_scores(users)``.

Embedding tables are ``nn.Embedding`` modules (``lightgcn.embedding`` for LightGCN, holding users
then items; ``user_embedding`` / ``item_embedding`` for MF) so adapters can wrap them later.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from unlearnkit.datasets.interactions import check_edges
from unlearnkit.recsys.graph import (
    bipartite_adjacency,
    bipartite_edge_index,
    symmetric_csr_matmul,
)


def _lightgcn_class() -> type:
    """torch_geometric's ``LightGCN``, imported on first use (the import takes seconds)."""
    with warnings.catch_warnings():
        # torch_geometric emits a FutureWarning about torch.jit.script on import (harmless).
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        from torch_geometric.nn.models import LightGCN

    return LightGCN


__all__ = ["DotProductRecommender", "LightGCNRecommender", "MFRecommender"]


class DotProductRecommender(nn.Module, ABC):
    """Common base of the recommenders: ids checks, item side features and scoring.

    Subclasses implement :meth:`_user_table`, :meth:`_item_table` and :meth:`embeddings`.

    Args:
        num_users: Number of users ``U`` (contiguous ids ``0..U-1``).
        num_items: Number of items ``I`` (contiguous ids ``0..I-1``).
        embedding_dim: Embedding width ``D``.
        item_features: Optional item side features. When given, the layer-0 item representation
            is ``e_i + W f_i`` with a learned bias-free linear projection ``W`` (``D x F``),
            stored as the non-persistent buffer ``item_features`` and parameter
            ``item_projection.weight``.

    Shapes:
        item_features: ``(I, F)`` float.

    Raises:
        ValueError: If a size is not positive or ``item_features`` has the wrong shape.
        TypeError: If ``item_features`` is not a floating tensor.
    """

    arch: ClassVar[str] = "dot"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        embedding_dim: int = 64,
        item_features: Tensor | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_users", num_users),
            ("num_items", num_items),
            ("embedding_dim", embedding_dim),
        ):
            if int(value) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.embedding_dim = int(embedding_dim)
        self.item_projection: nn.Linear | None = None
        if item_features is not None:
            if not isinstance(item_features, Tensor) or not item_features.is_floating_point():
                raise TypeError(
                    "item_features must be a floating torch.Tensor of shape (num_items, F); "
                    "build one with unlearnkit.datasets.movielens.item_side_features"
                )
            if item_features.dim() != 2 or item_features.size(0) != num_items:
                raise ValueError(
                    f"item_features must have shape (num_items={num_items}, F), got "
                    f"{tuple(item_features.shape)}; align rows with the contiguous item ids"
                )
            self.register_buffer("item_features", item_features.detach().clone(), persistent=False)
            self.item_projection = nn.Linear(item_features.size(1), embedding_dim, bias=False)
            nn.init.xavier_uniform_(self.item_projection.weight)
        else:
            self.item_features = None
        self.register_buffer("graph_edges", torch.empty(2, 0, dtype=torch.long), persistent=False)

    def reset_parameters(self) -> None:
        """Re-initialise with the model's own init: the projection ``W`` with Xavier-uniform.

        Subclasses extend it to their embedding tables; used by
        :func:`unlearnkit.reinit.reinitialize` (retraining from scratch).
        """
        if self.item_projection is not None:
            nn.init.xavier_uniform_(self.item_projection.weight)

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _user_table(self) -> Tensor:
        """Layer-0 user embedding table ``(U, D)``."""

    @abstractmethod
    def _item_table(self) -> Tensor:
        """Layer-0 item representation ``(I, D)`` (embedding plus projected side features)."""

    @abstractmethod
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final user and item representations (see subclasses)."""

    # -- shared ---------------------------------------------------------------------------------
    def set_graph(self, train_edges: Tensor) -> DotProductRecommender:
        """Store the training interactions; graph models also rebuild their propagation graph.

        Args:
            train_edges: Current training (retained) interactions.

        Returns:
            ``self``.

        Shapes:
            train_edges: ``(2, E)`` int64 (user, item) pairs.

        Raises:
            TypeError: If ``train_edges`` is not an integer tensor.
            ValueError: If it has the wrong shape or ids out of range.
        """
        check_edges(train_edges, self.num_users, self.num_items)
        self.graph_edges = train_edges.detach().long().to(self.graph_edges.device)
        return self

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        """Layer-0 representations: the embedding rows (+ projected side features for items).

        Returns:
            ``(user_emb, item_emb)``.

        Shapes:
            ``(U, D)`` and ``(I, D)``, float.
        """
        items = self._item_table()
        if self.item_projection is not None:
            feats = self.item_features.to(dtype=items.dtype)
            items = items + self.item_projection(feats)
        return self._user_table(), items

    def _check_ids(self, ids: Tensor, bound: int, name: str) -> Tensor:
        if not isinstance(ids, Tensor):
            ids = torch.as_tensor(ids)
        if ids.dtype.is_floating_point:
            raise TypeError(f"{name} ids must be integers, got dtype {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise ValueError(f"unknown {name} id {bad}: valid ids are 0..{bound - 1}")
        return ids.long()

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """Preference scores ``<e_u, e_i>`` of (user, item) pairs.

        Args:
            users: User ids.
            items: Item ids, paired element-wise with ``users``.

        Returns:
            Scores (unnormalized logits of preference).

        Shapes:
            users, items: ``(B,)`` int64. Returns ``(B,)`` float.

        Raises:
            ValueError: On an unknown id or mismatched lengths.
            RuntimeError: If a graph model has no graph yet (call ``set_graph`` first).
        """
        users = self._check_ids(users, self.num_users, "user")
        items = self._check_ids(items, self.num_items, "item")
        if users.shape != items.shape:
            raise ValueError(
                f"users and items must have the same shape, got {tuple(users.shape)} and "
                f"{tuple(items.shape)}"
            )
        user_emb, item_emb = self.embeddings()
        return (user_emb[users] * item_emb[items]).sum(-1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Alias of :meth:`score`."""
        return self.score(users, items)

    def full_scores(self, users: Tensor) -> Tensor:
        """Scores of the given users against every item.

        Args:
            users: User ids.

        Returns:
            Score matrix, row ``b`` for ``users[b]``.

        Shapes:
            users: ``(B,)`` int64. Returns ``(B, I)`` float.

        Raises:
            ValueError: On an unknown user id.
            RuntimeError: If a graph model has no graph yet (call ``set_graph`` first).
        """
        users = self._check_ids(users, self.num_users, "user")
        user_emb, item_emb = self.embeddings()
        return user_emb[users] @ item_emb.t()


class LightGCNRecommender(DotProductRecommender):
    """LightGCN on the user-item bipartite graph, wrapping ``torch_geometric``'s ``LightGCN``.

    He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation", SIGIR 2020, arXiv:2002.02126, Sec. 3.1 (light graph convolution, layer
    combination with ``alpha_k = 1/(K+1)``, inner-product prediction).

    The parameters are those of :class:`torch_geometric.nn.models.LightGCN` (``lightgcn.embedding``
    with users in rows ``0..U-1`` and items in rows ``U..U+I-1``; ``lightgcn.alpha`` buffer). Two
    propagation paths give the same numbers:

    - ``"csr"`` (default): ``x_{k+1} = Â x_k`` with the cached normalized CSR adjacency from
      :func:`~unlearnkit.recsys.graph.bipartite_adjacency` via ``torch.sparse.mm``, whose backward
      reuses ``Â`` (symmetric) instead of transposing it;
    - ``"edge_index"``: PyG's own ``LGConv`` message passing over the undirected ``edge_index``
      (normalization recomputed at every layer, as PyG does).

    With ``item_features`` (the feature-aware variant, a light counterpart of multimodal
    recommenders), the layer-0 item representation is ``e_i + W f_i`` before propagation.

    Args:
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        embedding_dim: Embedding width ``D``.
        num_layers: Number of propagation layers ``K`` (0 gives a matrix factorization).
        propagation: ``"csr"`` or ``"edge_index"``.
        item_features: Optional item side features, see :class:`DotProductRecommender`.

    Shapes:
        item_features: ``(I, F)`` float.

    Raises:
        ValueError: On a bad size, ``num_layers < 0`` or unknown ``propagation``.
        TypeError: If ``item_features`` is not a floating tensor.
    """

    arch: ClassVar[str] = "lightgcn"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        embedding_dim: int = 64,
        num_layers: int = 3,
        propagation: Literal["csr", "edge_index"] = "csr",
        item_features: Tensor | None = None,
    ) -> None:
        super().__init__(
            num_users, num_items, embedding_dim=embedding_dim, item_features=item_features
        )
        if int(num_layers) < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if propagation not in ("csr", "edge_index"):
            raise ValueError(f"propagation must be 'csr' or 'edge_index', got {propagation!r}")
        self.num_layers = int(num_layers)
        self.propagation = propagation
        self.lightgcn = _lightgcn_class()(num_users + num_items, embedding_dim, num_layers)
        # Graph state, rebuilt by set_graph; non-persistent so checkpoints stay graph-free and
        # deepcopy/.to() work (a sparse CSR tensor cannot be deep-copied, its parts can).
        self.register_buffer("edge_index", torch.empty(2, 0, dtype=torch.long), persistent=False)
        self.register_buffer("adj_crow", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("adj_col", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("adj_values", torch.empty(0), persistent=False)
        self.has_graph = False

    def reset_parameters(self) -> None:
        """Re-initialise with LightGCN's own init: Xavier-uniform table (PyG's ``LightGCN``).

        Also the projection of :class:`DotProductRecommender` and the layer weights
        ``alpha_k = 1/(K+1)`` (a buffer, constant). The graph is kept.
        """
        super().reset_parameters()
        self.lightgcn.reset_parameters()
        self.lightgcn.alpha.fill_(1.0 / (self.num_layers + 1))

    def _user_table(self) -> Tensor:
        return self.lightgcn.embedding.weight[: self.num_users]

    def _item_table(self) -> Tensor:
        return self.lightgcn.embedding.weight[self.num_users :]

    def set_graph(self, train_edges: Tensor) -> LightGCNRecommender:
        """Build and cache the propagation graph of ``train_edges`` (both directions).

        Args:
            train_edges: Current training (retained) interactions; duplicates are merged.

        Returns:
            ``self``.

        Shapes:
            train_edges: ``(2, E)`` int64 (user, item) pairs.

        Raises:
            TypeError: If ``train_edges`` is not an integer tensor.
            ValueError: If it has the wrong shape or ids out of range.
        """
        super().set_graph(train_edges)
        edges = train_edges.detach().long().cpu()
        device = self.lightgcn.embedding.weight.device
        dtype = self.lightgcn.embedding.weight.dtype
        if self.propagation == "csr":
            adj = bipartite_adjacency(edges, self.num_users, self.num_items, dtype=dtype)
            self.adj_crow = adj.crow_indices().to(device)
            self.adj_col = adj.col_indices().to(device)
            self.adj_values = adj.values().to(device)
        else:
            self.edge_index = bipartite_edge_index(edges, self.num_users, self.num_items).to(device)
        self.has_graph = True
        return self

    def adjacency(self) -> Tensor:
        """The cached normalized adjacency as a sparse CSR tensor (``csr`` propagation only).

        Returns:
            ``Â``, on the model's device and dtype.

        Shapes:
            ``(U + I, U + I)`` sparse CSR float.

        Raises:
            RuntimeError: If no graph is set or the model propagates with ``edge_index``.
        """
        if not self.has_graph or self.propagation != "csr":
            raise RuntimeError(
                "no CSR adjacency: call set_graph(train_edges) on a model with propagation='csr'"
            )
        n = self.num_users + self.num_items
        with warnings.catch_warnings():  # torch's "Sparse CSR tensor support is in beta"
            warnings.filterwarnings("ignore", message=r"Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self.adj_crow, self.adj_col, self.adj_values, (n, n), check_invariants=False
            )

    def propagate(self, x: Tensor) -> Tensor:
        """Layer combination ``sum_k alpha_k Â^k x`` of node features (LightGCN, Sec. 3.1).

        Args:
            x: Layer-0 node representations, users then items.

        Returns:
            The combined representation.

        Shapes:
            x: ``(U + I, D)`` float. Returns ``(U + I, D)``.

        Raises:
            RuntimeError: If no graph is set (call ``set_graph`` first).
        """
        if not self.has_graph:
            raise RuntimeError("no graph: call set_graph(train_edges) before scoring or training")
        alpha = self.lightgcn.alpha.to(x.dtype)
        out = x * alpha[0]
        if self.propagation == "csr":
            for k in range(self.num_layers):
                x = symmetric_csr_matmul(self.adj_crow, self.adj_col, self.adj_values, x)
                out = out + x * alpha[k + 1]
        else:
            for k, conv in enumerate(self.lightgcn.convs):
                x = conv(x, self.edge_index)
                out = out + x * alpha[k + 1]
        return out

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final LightGCN user and item representations.

        Returns:
            ``(user_emb, item_emb)``.

        Shapes:
            ``(U, D)`` and ``(I, D)``, float.

        Raises:
            RuntimeError: If no graph is set (call ``set_graph`` first).
        """
        user0, item0 = self.ego_embeddings()
        out = self.propagate(torch.cat([user0, item0], dim=0))
        return out[: self.num_users], out[self.num_users :]


class MFRecommender(DotProductRecommender):
    """Matrix factorization trained with BPR (BPR-MF), the standard non-graph baseline.

    Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009,
    arXiv:1205.2618 (BPR applied to matrix factorization, ``x_ui = <w_u, h_i>``).

    ``set_graph`` only records the training edges (there is no propagation), so the API matches
    :class:`LightGCNRecommender`.

    Args:
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        embedding_dim: Embedding width ``D``.
        item_features: Optional item side features, see :class:`DotProductRecommender`.

    Shapes:
        item_features: ``(I, F)`` float.

    Raises:
        ValueError: On a bad size or feature shape.
        TypeError: If ``item_features`` is not a floating tensor.
    """

    arch: ClassVar[str] = "mf"

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        embedding_dim: int = 64,
        item_features: Tensor | None = None,
    ) -> None:
        super().__init__(
            num_users, num_items, embedding_dim=embedding_dim, item_features=item_features
        )
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def reset_parameters(self) -> None:
        """Re-initialise with the model's own init: Xavier-uniform user and item tables.

        ``std = sqrt(2 / (n + D))`` per table (``n`` rows), not ``nn.Embedding``'s N(0, 1), and
        the projection of :class:`DotProductRecommender`.
        """
        super().reset_parameters()
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def _user_table(self) -> Tensor:
        return self.user_embedding.weight

    def _item_table(self) -> Tensor:
        return self.item_embedding.weight

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """User and item factors (layer 0 is final for MF).

        Returns:
            ``(user_emb, item_emb)``.

        Shapes:
            ``(U, D)`` and ``(I, D)``, float.
        """
        return self.ego_embeddings()
