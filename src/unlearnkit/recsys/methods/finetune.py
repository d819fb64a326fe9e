"""Fine-tuning (FT) on the retained graph and retraining from scratch (Retrain) for recommenders.

The classes are ``RecFineTune`` / ``RecRetrain`` (configs: ``unlearnkit.recsys.methods.RecRetrain``),
one name each: a class's name must differ from the vision methods', or the bare
``class_path: FineTune`` of vision configs becomes ambiguous (jsonargparse resolves bare names
over every loaded ``Unlearner`` subclass) as soon as both families are imported in one process.
Reports use the short names (``method_name``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from unlearnkit.base import UnlearnBatch, init_arguments
from unlearnkit.recsys.bpr import bpr_batch_loss
from unlearnkit.recsys.methods.base import RecLossUnlearner
from unlearnkit.reinit import reinitialize


class RecFineTune(RecLossUnlearner):
    """FT: continue BPR training of the original recommender on the retained graph ``D_r``.

    Source: the fine-tuning baseline of recommendation unlearning (e.g. Chen et al.,
    "Recommendation Unlearning", WWW 2022, arXiv:2201.06820; Sinha et al., MMRecUn,
    arXiv:2405.15328, Sec. 4 baselines), the recommender counterpart of Warnecke et al.,
    NDSS 2023 (arXiv:2108.11577). The model propagates over ``D_r`` from the first step; the
    loss is BPR (Rendle et al., UAI 2009, arXiv:1205.2618) with LightGCN's L2 on the batch's
    layer-0 embeddings (He et al., SIGIR 2020, arXiv:2002.02126, Sec. 3.2), negatives drawn
    uniformly among each user's items outside ``D_r``.

    Loss per step: ``mean softplus(s_uj - s_ui) + reg_weight * ||E0_batch||^2 / B`` over retain
    pairs ``(u, i)`` with sampled ``j``.

    Args: see :class:`~unlearnkit.recsys.methods.base.RecLossUnlearner` (defaults: 2 epochs of
        Adam at lr 1e-3, reg 1e-4).

    Raises:
        ValueError: no retain loader.
    """

    method_name: ClassVar[str] = "FineTune"
    streams: ClassVar[tuple[str, ...]] = ("retain",)

    def __init__(
        self,
        *,
        epochs: int = 2,
        lr: float = 1e-3,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 1e-4,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        users, items = batch.retain  # type: ignore[misc]
        neg = self.negatives(users, avoid="retain")
        return bpr_batch_loss(model, users, items, neg, reg_weight=self.reg_weight)


class RecRetrain(RecFineTune):
    """Retrain: re-initialise the recommender and train it with BPR on ``D_r`` — the gold standard.

    Exact unlearning (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021, arXiv:1912.03817;
    the "Gold" model of MMRecUn, arXiv:2405.15328, Sec. 4). Setup sets the graph to ``D_r`` and
    calls :func:`unlearnkit.reinit.reinitialize` with seed ``init_seed`` (``seed`` when ``None``):
    the model's own ``reset_parameters()`` (Xavier-uniform tables for LightGCN and BPR-MF, not
    ``nn.Embedding``'s N(0, 1)), checked to have re-drawn every parameter. The experiment runner
    passes ``init_seed`` from its schedule's ``retrain_init``. The training is LightGCN's: Adam,
    BPR with uniform negatives, L2 on the batch's layer-0 embeddings (arXiv:2002.02126, Sec. 4).
    Use the original model's schedule (the runner passes it).

    Args: see :class:`RecFineTune` (defaults: 40 epochs, Adam lr 1e-2), and
        init_seed: seed of the re-initialisation (``None``: ``seed``).

    Raises:
        ValueError: no retain loader, or a parameter the model's reset leaves untouched.
    """

    method_name: ClassVar[str] = "Retrain"

    def __init__(
        self,
        *,
        epochs: int = 40,
        lr: float = 1e-2,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 1e-4,
        init_seed: int | None = None,
    ) -> None:
        init = init_arguments(locals())
        self.init_seed = init.pop("init_seed")
        super().__init__(**init)

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        reinitialize(model, seed=self.seed if self.init_seed is None else self.init_seed)
