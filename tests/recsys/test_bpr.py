"""BPR loss, negative sampling, epoch batches and the plain training loop."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.evaluation.ranking import rank_metrics
from unlearnkit.recsys.bpr import (
    bpr_batch_loss,
    bpr_epoch_batches,
    bpr_loss,
    sample_negatives,
    seen_item_csr,
    train_bpr,
)
from unlearnkit.recsys.models import LightGCNRecommender, MFRecommender


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bpr_loss_by_hand_two_users_three_items():
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    users, pos, neg = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), torch.tensor([2, 0, 0])
    loss = bpr_loss(scores[users, pos], scores[users, neg])
    # -log sigma(2 - (-1)), -log sigma(1 - 0), -log sigma(3 - 0)
    expected = (softplus(-3.0) + softplus(-1.0) + softplus(-3.0)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert float(loss) == pytest.approx(0.1368121302219, rel=1e-10)
    with pytest.raises(ValueError, match="same shape"):
        bpr_loss(scores[0], scores[0, :2])


def test_bpr_batch_loss_with_l2_by_hand():
    mf = MFRecommender(2, 3, embedding_dim=1).double()
    with torch.no_grad():
        mf.user_embedding.weight.copy_(torch.tensor([[1.0], [2.0]]))
        mf.item_embedding.weight.copy_(torch.tensor([[1.0], [0.0], [-1.0]]))
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([2, 1])
    # scores: u0 -> (1, 0, -1), u1 -> (2, 0, -2); both triples have pos - neg = 2
    plain = bpr_batch_loss(mf, users, pos, neg, reg_weight=0.0)
    assert plain.item() == pytest.approx(softplus(-2.0), rel=1e-12)
    # L2: lambda * (|u|^2 + |p|^2 + |n|^2) / B = 0.1 * ((1 + 4) + (1 + 1) + (1 + 0)) / 2 = 0.4
    reg = bpr_batch_loss(mf, users, pos, neg, reg_weight=0.1)
    assert reg.item() == pytest.approx(softplus(-2.0) + 0.4, rel=1e-12)
    reg.backward()
    # d/d(diff) softplus(-diff) = -sigma(-2) per triple, / B = 2; diff_0 = u0 (i0 - i2),
    # diff_1 = u1 (i0 - i1); the L2 term adds lambda * 2 e / B for every occurrence of e.
    s = 1.0 / (1.0 + math.exp(2.0))  # sigma(-2)
    grad_users = [-s / 2 * 2 + 0.1 * 1.0, -s / 2 * 1 + 0.1 * 2.0]
    grad_items = [-s / 2 * (1 + 2) + 0.1 * 2.0, s / 2 * 2 + 0.0, s / 2 * 1 - 0.1]
    torch.testing.assert_close(
        mf.user_embedding.weight.grad.flatten(),
        torch.tensor(grad_users, dtype=torch.float64),
        rtol=1e-12,
        atol=1e-15,
    )
    torch.testing.assert_close(
        mf.item_embedding.weight.grad.flatten(),
        torch.tensor(grad_items, dtype=torch.float64),
        rtol=1e-12,
        atol=1e-15,
    )


SEEN = torch.tensor([[0, 0, 0, 1, 2, 2, 2, 2, 2], [0, 2, 4, 5, 0, 1, 2, 3, 4]])  # 3 users, 6 items


def test_sample_negatives_never_hits_seen_and_is_uniform():
    users = torch.tensor([0, 1, 2]).repeat_interleave(3000)
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(users, SEEN, 6, gen)
    seen = {(int(u), int(i)) for u, i in SEEN.t()}
    assert not any((int(u), int(i)) in seen for u, i in zip(users, neg, strict=True))
    for user, unseen in ((0, [1, 3, 5]), (1, [0, 1, 2, 3, 4]), (2, [5])):
        counts = torch.bincount(neg[users == user], minlength=6)
        assert sorted(torch.nonzero(counts).flatten().tolist()) == unseen
        expected = 3000 / len(unseen)
        assert (counts[unseen].double() - expected).abs().max() < 0.1 * expected
    # the CSR form of the seen set gives the very same draws
    csr = seen_item_csr(SEEN, 3, 6)
    again = sample_negatives(users, csr, 6, torch.Generator().manual_seed(0))
    assert torch.equal(again, neg)


def test_sample_negatives_user_with_every_item():
    full = torch.tensor([[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="user 0 has interacted with all 2 items"):
        sample_negatives(torch.tensor([0]), full, 2)


def test_epoch_batches_cover_every_edge_once():
    gen = torch.Generator().manual_seed(1)
    batches = list(bpr_epoch_batches(SEEN, 4, gen, num_items=6))
    assert [b[0].numel() for b in batches] == [4, 4, 1]
    users = torch.cat([b[0] for b in batches])
    pos = torch.cat([b[1] for b in batches])
    neg = torch.cat([b[2] for b in batches])
    assert sorted(zip(users.tolist(), pos.tolist(), strict=True)) == sorted(
        zip(SEEN[0].tolist(), SEEN[1].tolist(), strict=True)
    )
    seen = {(int(u), int(i)) for u, i in SEEN.t()}
    assert not any((int(u), int(i)) in seen for u, i in zip(users, neg, strict=True))
    with pytest.raises(ValueError, match="batch_size"):
        next(bpr_epoch_batches(SEEN, 0, gen, num_items=6))


def _communities(seed: int = 0):
    """20 users x 20 items in two communities; 6 train + 2 test items per user, in-community."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for u in range(20):
        base = 0 if u < 10 else 10
        items = (base + torch.randperm(10, generator=gen)[:8]).tolist()
        train += [(u, i) for i in items[:6]]
        test += [(u, i) for i in items[6:]]
    return torch.tensor(train).t(), torch.tensor(test).t()


@pytest.mark.parametrize("arch", ["lightgcn", "mf"])
def test_train_bpr_learns_communities(arch):
    train, test = _communities()
    torch.manual_seed(0)
    make = {
        "lightgcn": lambda: LightGCNRecommender(20, 20, embedding_dim=8, num_layers=2),
        "mf": lambda: MFRecommender(20, 20, embedding_dim=8),
    }[arch]
    model = make()
    init_state = {k: v.clone() for k, v in model.state_dict().items()}
    before = rank_metrics(model.set_graph(train), test, train, ks=(4,))["recall@4"]
    train_bpr(model, train, epochs=40, lr=0.05, batch_size=32, seed=0)
    after = rank_metrics(model, test, train, ks=(4,))["recall@4"]
    # the 4 unseen in-community items fill the top 4 once communities are learned (LightGCN
    # reaches 1.0, MF 0.85: BPR also samples the unseen in-community items as negatives)
    assert before < 0.6 and after >= 0.8
    # same init + same seed -> same parameters
    twin = make()
    twin.load_state_dict(init_state)
    train_bpr(twin, train, epochs=40, lr=0.05, batch_size=32, seed=0)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
