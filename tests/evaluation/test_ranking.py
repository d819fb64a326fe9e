"""Full-ranking top-K metrics and forget-set metrics: hand cases and a slow per-user reference."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.evaluation.ranking import (
    forget_metrics,
    forgotten_pair_ranks,
    hit_rate_at_k,
    membership_auc,
    ndcg_at_k,
    precision_at_k,
    rank_metrics,
    recall_at_k,
    score_divergence,
)
from unlearnkit.recsys.models import LightGCNRecommender

LOG2_3 = math.log2(3)

# 3 users x 5 items (no ties).
SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.1, 0.5, 0.3],  # u0: relevant {1, 2}
        [0.2, 0.1, 0.7, 0.6, 0.0],  # u1: relevant {3}; item 2 seen in training (masked)
        [0.5, 0.4, 0.3, 0.2, 0.1],  # u2: relevant {4}
    ]
)
EVAL = torch.tensor([[0, 0, 1, 2], [1, 2, 3, 4]])
MASK = torch.tensor([[1], [2]])


def dense(edges: torch.Tensor, shape=(3, 5)) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.bool)
    out[edges[0], edges[1]] = True
    return out


def test_metrics_by_hand_at_2():
    truth, mask = dense(EVAL), dense(MASK)
    # u0 ranks 0, 1 | 3, 4, 2: one hit at rank 2 of 2 relevant.
    # u1 with item 2 masked ranks 3, 0 | ...: hit at rank 1 of 1 relevant.
    # u2 ranks 0, 1 | ...: no hit.
    recall = recall_at_k(SCORES, truth, 2, mask=mask)
    assert recall.tolist() == pytest.approx([0.5, 1.0, 0.0])
    ndcg = ndcg_at_k(SCORES, truth, 2, mask=mask)
    assert ndcg.tolist() == pytest.approx([(1 / LOG2_3) / (1 + 1 / LOG2_3), 1.0, 0.0])
    assert precision_at_k(SCORES, truth, 2, mask=mask).tolist() == pytest.approx([0.5, 0.5, 0])
    assert hit_rate_at_k(SCORES, truth, 2, mask=mask).tolist() == [1.0, 1.0, 0.0]
    # without the mask u1's training item takes rank 1 and the hit drops to rank 2
    assert ndcg_at_k(SCORES, truth, 2)[1] == pytest.approx(1 / LOG2_3)

    out = rank_metrics(lambda users: SCORES[users], EVAL, MASK, ks=(2,))
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx(((1 / LOG2_3) / (1 + 1 / LOG2_3) + 1.0) / 3)
    assert out["precision@2"] == pytest.approx(1 / 3)
    assert out["hit_rate@2"] == pytest.approx(2 / 3)


def test_perfect_ranking_of_30_relevant_items():
    scores = torch.linspace(1, 0, 100).unsqueeze(0)  # item j has the j-th highest score
    truth = torch.zeros(1, 100, dtype=torch.bool)
    truth[0, :30] = True
    assert ndcg_at_k(scores, truth, 20).item() == pytest.approx(1.0)
    assert recall_at_k(scores, truth, 20).item() == pytest.approx(20 / 30)
    assert precision_at_k(scores, truth, 20).item() == pytest.approx(1.0)
    edges = torch.stack([torch.zeros(30, dtype=torch.long), torch.arange(30)])
    out = rank_metrics(lambda u: scores.expand(len(u), -1), edges, ks=(10, 20))
    assert out["ndcg@20"] == pytest.approx(1.0) and out["recall@20"] == pytest.approx(20 / 30)
    assert out["ndcg@10"] == pytest.approx(1.0) and out["recall@10"] == pytest.approx(10 / 30)


def test_seen_item_with_top_score_does_not_count():
    scores = torch.tensor([[5.0, 4.0, 1.0]])
    truth = torch.tensor([[True, True, False]])  # item 0 is also a training item
    mask = torch.tensor([[True, False, False]])
    # item 0 is masked: it neither takes a slot nor counts as relevant; item 1 is ranked first
    assert recall_at_k(scores, truth, 1, mask=mask).item() == 1.0
    assert recall_at_k(scores, truth, 1).item() == 0.5
    # fewer unmasked items than k: masked items filling the list never count as hits
    assert hit_rate_at_k(scores, truth, 3, mask=torch.tensor([[True, True, False]])).isnan()


def _slow_metrics(scores, eval_edges, mask_edges, ks):
    """Obviously-correct reference: per user, Python sort and counts."""
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")}
    users = sorted(set(eval_edges[0].tolist()))
    n = 0
    for u in users:
        rel = {int(i) for uu, i in eval_edges.t().tolist() if uu == u}
        seen = {int(i) for uu, i in mask_edges.t().tolist() if uu == u}
        rel -= seen
        if not rel:
            continue
        n += 1
        ranked = sorted(
            (i for i in range(scores.size(1)) if i not in seen), key=lambda i: -float(scores[u, i])
        )
        for k in ks:
            top = ranked[:k]
            hits = [1 if i in rel else 0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
            sums[f"recall@{k}"] += sum(hits) / len(rel)
            sums[f"precision@{k}"] += sum(hits) / k
            sums[f"hit_rate@{k}"] += float(sum(hits) > 0)
            sums[f"ndcg@{k}"] += dcg / idcg
    return {key: v / n for key, v in sums.items()}


def test_vectorised_equals_slow_loop_on_random_data():
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 50, 40
    scores = torch.randn(num_users, num_items, generator=gen, dtype=torch.float64)
    pairs = torch.randperm(num_users * num_items, generator=gen)[:700]
    edges = torch.stack([pairs // num_items, pairs % num_items])
    eval_edges, mask_edges = edges[:, :250], edges[:, 250:]
    ks = (1, 5, 10, 20)
    ref = _slow_metrics(scores, eval_edges, mask_edges, ks)
    for batch_size in (7, 1024):
        ours = rank_metrics(
            lambda u: scores[u], eval_edges, mask_edges, ks=ks, batch_size=batch_size
        )
        assert ours.keys() == ref.keys()
        for key in ref:
            assert ours[key] == pytest.approx(ref[key], rel=1e-12), key


def test_model_source_users_without_eval_items_and_errors():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    users, items = torch.randint(6, (30,), generator=gen), torch.randint(8, (30,), generator=gen)
    train = torch.unique(torch.stack([users, items]), dim=1)
    model = LightGCNRecommender(6, 8, embedding_dim=4).set_graph(train)
    test = torch.tensor([[0, 1, 1, 3], [7, 6, 5, 4]])
    test = test[:, ~torch.isin(test[0] * 8 + test[1], train[0] * 8 + train[1])]
    by_model = rank_metrics(model, test, train, ks=(3,))
    by_fn = rank_metrics(lambda u: model.full_scores(u).detach(), test, train, ks=(3,))
    assert by_model == pytest.approx(by_fn)
    # users without test items are excluded: the mean runs over the NaN-free per-user values
    with torch.no_grad():
        per_user = recall_at_k(
            model.full_scores(torch.arange(6)),
            dense(test, (6, 8)),
            3,
            mask=dense(train, (6, 8)),
        )
    assert int((~per_user.isnan()).sum()) == len(set(test[0].tolist())) < 6
    assert by_model["recall@3"] == pytest.approx(float(per_user.nanmean()))
    with pytest.raises(ValueError, match="unknown user id 6"):
        rank_metrics(model, torch.tensor([[6], [0]]), train)
    with pytest.raises(ValueError, match="unknown item id 8"):
        rank_metrics(model, torch.tensor([[0], [8]]), train)
    with pytest.raises(ValueError, match="unknown item id 5"):
        rank_metrics(lambda u: SCORES[u], torch.tensor([[0], [5]]))
    with pytest.raises(TypeError, match="score"):
        rank_metrics(object(), test)


def test_forgotten_pair_ranks_and_forget_metrics_by_hand():
    fn = lambda users: SCORES[users]  # noqa: E731
    forget = torch.tensor([[0, 0], [3, 2]])
    retain = torch.tensor([[0], [0]])  # u0's item 0 is retained (masked)
    ranks, scores = forgotten_pair_ranks(fn, forget, retain, return_scores=True)
    # (0, 3): only item 1 (0.8) outranks 0.5 once item 0 is masked -> rank 2
    # (0, 2): items 1, 3, 4 outrank 0.1 -> rank 4
    assert ranks.tolist() == [2, 4] and scores.tolist() == pytest.approx([0.5, 0.1])
    assert forgotten_pair_ranks(fn, forget).tolist() == [3, 5]  # nothing masked
    out = forget_metrics(fn, forget, retain, ks=(2,))
    assert out["mean_rank"] == pytest.approx(3.0) and out["mean_score"] == pytest.approx(0.3)
    # top-2 after masking: items 1, 3 -> one of the two forgotten items
    assert out["recall@2"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="empty"):
        forget_metrics(fn, forget[:, :0], retain)


def test_membership_auc_by_hand():
    # pairs (pos, neg): (3,1) (3,2.5) (2,1) win, (2,2.5) loses -> 3/4
    assert membership_auc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.5])) == 0.75
    assert membership_auc([1.0], [1.0]) == 0.5  # a tie counts one half
    with pytest.raises(ValueError, match="at least one"):
        membership_auc(torch.tensor([]), torch.tensor([1.0]))


def test_score_divergence_by_hand():
    a = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # p = (1/2, 1/2)
    b = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)  # q = (3/4, 1/4)
    out = score_divergence(a, b)
    assert out["kl"] == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    m = (0.625, 0.375)
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])
    )
    assert out["js"] == pytest.approx(js, rel=1e-12)
    same = score_divergence(SCORES, SCORES.clone())
    assert same["kl"] == pytest.approx(0.0, abs=1e-15) and same["js"] == pytest.approx(0, abs=1e-15)
    with pytest.raises(ValueError):
        score_divergence(SCORES, SCORES[:2])


def test_duplicates_and_malformed_edges():
    fn = lambda users: SCORES[users]  # noqa: E731
    doubled = torch.cat([EVAL, EVAL[:, :1]], dim=1)  # (0, 1) twice is still one relevant item
    assert rank_metrics(fn, doubled, MASK, ks=(2,)) == pytest.approx(
        rank_metrics(fn, EVAL, MASK, ks=(2,))
    )
    with pytest.raises(TypeError, match="integer"):
        rank_metrics(fn, EVAL.float())
    with pytest.raises(ValueError, match=r"forget_edges: .*shape \(2, E\)"):
        forgotten_pair_ranks(fn, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="negative"):
        rank_metrics(fn, torch.tensor([[-1], [0]]))


# ------------------------------------------------------------------------------------------
# Ties: expected values over uniformly random orders of tied items (McSherry & Najork 2008)
# ------------------------------------------------------------------------------------------
def test_all_equal_scorer_gives_the_same_metrics_for_every_item_id():
    num_items = 100
    flat = lambda users: torch.zeros(len(users), num_items)  # noqa: E731
    users = torch.arange(num_items)
    one_item_each = torch.stack([users, users])  # user u's single test item is item u
    # one test item among 100 equal scores: P(in top 10) = 10 / 100; E[DCG@10] = sum of the 10
    # first discounts / 100; IDCG = 1
    dcg10 = sum(1 / math.log2(p + 1) for p in range(1, 11)) / 100
    truth = torch.eye(num_items, dtype=torch.bool)
    scores = torch.zeros(num_items, num_items)
    assert recall_at_k(scores, truth, 10).tolist() == pytest.approx([0.10] * 100, abs=1e-12)
    assert hit_rate_at_k(scores, truth, 10).tolist() == pytest.approx([0.10] * 100, abs=1e-12)
    assert precision_at_k(scores, truth, 10).tolist() == pytest.approx([0.01] * 100, abs=1e-12)
    assert ndcg_at_k(scores, truth, 10).tolist() == pytest.approx([dcg10] * 100, abs=1e-12)
    out = rank_metrics(flat, one_item_each, ks=(10, 20), batch_size=13)
    assert out["recall@10"] == pytest.approx(0.10, abs=1e-12)
    assert out["recall@20"] == pytest.approx(0.20, abs=1e-12)
    assert out["hit_rate@10"] == pytest.approx(0.10, abs=1e-12)
    assert out["ndcg@10"] == pytest.approx(dcg10, abs=1e-12)
    # expected rank 1 + 99 / 2 for every id; with one other item masked, 1 + 98 / 2
    assert forgotten_pair_ranks(flat, one_item_each).tolist() == [50.5] * 100
    mask = torch.stack([users, (users + 1) % num_items])
    assert forgotten_pair_ranks(flat, one_item_each, mask).tolist() == [50.0] * 100


def test_two_way_tie_straddling_the_cut_off_by_hand():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1], [0.9, 0.5, 0.5, 0.1]], dtype=torch.float64)
    # u0: relevant {2}, tied with item 1 at positions 2..3 -> half the time at position 2.
    # u1: relevant {1, 2}: one of the two is at position 2, the other at 3.
    truth = torch.tensor([[False, False, True, False], [False, True, True, False]])
    g2 = 1 / math.log2(3)
    assert ndcg_at_k(scores, truth, 2).tolist() == pytest.approx(
        [0.5 * g2, g2 / (1 + g2)], rel=1e-12
    )
    assert recall_at_k(scores, truth, 2).tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    assert precision_at_k(scores, truth, 2).tolist() == pytest.approx([0.25, 0.5], rel=1e-12)
    assert hit_rate_at_k(scores, truth, 2).tolist() == pytest.approx([0.5, 1.0], rel=1e-12)
    # at k = 3 the whole tie group is inside: no uncertainty left
    g3 = 1 / math.log2(4)
    assert ndcg_at_k(scores, truth, 3).tolist() == pytest.approx(
        [(g2 + g3) / 2, 1.0 * (g2 + g3) / (1 + g2)], rel=1e-12
    )
    # masking item 1 breaks the tie: item 2 is then surely at position 2
    mask = torch.tensor([[False, True, False, False], [False, False, False, False]])
    assert ndcg_at_k(scores, truth, 2, mask=mask)[0].item() == pytest.approx(g2, rel=1e-12)


def _all_tie_orders_metrics(scores, eval_edges, mask_edges, ks):
    """Slow reference: average the plain metrics over EVERY order of each user's tied items."""
    import itertools

    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")}
    n = 0
    for u in sorted(set(eval_edges[0].tolist())):
        rel = {int(i) for uu, i in eval_edges.t().tolist() if uu == u}
        seen = {int(i) for uu, i in mask_edges.t().tolist() if uu == u}
        rel -= seen
        if not rel:
            continue
        n += 1
        items = [i for i in range(scores.size(1)) if i not in seen]
        levels = sorted({float(scores[u, i]) for i in items}, reverse=True)
        groups = [[i for i in items if float(scores[u, i]) == v] for v in levels]
        orders = [
            [i for group in choice for i in group]
            for choice in itertools.product(*(itertools.permutations(g) for g in groups))
        ]
        for k in ks:
            acc = dict.fromkeys(("recall", "ndcg", "precision", "hit_rate"), 0.0)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
            for ranked in orders:
                hits = [1 if i in rel else 0 for i in ranked[:k]]
                acc["recall"] += sum(hits) / len(rel)
                acc["precision"] += sum(hits) / k
                acc["hit_rate"] += float(sum(hits) > 0)
                acc["ndcg"] += sum(h / math.log2(r + 2) for r, h in enumerate(hits)) / idcg
            for m, v in acc.items():
                sums[f"{m}@{k}"] += v / len(orders)
    return {key: v / n for key, v in sums.items()}


def test_tie_aware_metrics_equal_the_average_over_all_tie_orders():
    gen = torch.Generator().manual_seed(3)
    num_users, num_items = 12, 7
    scores = torch.randint(0, 3, (num_users, num_items), generator=gen).double()  # many ties
    scores[0] = 1.0  # one user with a single 7-way tie
    pairs = torch.randperm(num_users * num_items, generator=gen)[:50]
    edges = torch.stack([pairs // num_items, pairs % num_items])
    eval_edges, mask_edges = edges[:, :30], edges[:, 30:]
    ks = (1, 2, 3, 5, 10)
    ref = _all_tie_orders_metrics(scores, eval_edges, mask_edges, ks)
    for batch_size in (1, 5, 1024):
        ours = rank_metrics(
            lambda u: scores[u], eval_edges, mask_edges, ks=ks, batch_size=batch_size
        )
        for key in ref:
            assert abs(ours[key] - ref[key]) <= 1e-10, (key, ours[key], ref[key])


def test_forgotten_pair_rank_is_the_mean_position_in_its_tie_group():
    scores = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    fn = lambda users: scores.expand(len(users), -1)  # noqa: E731
    forget = torch.tensor([[0, 0], [2, 4]])
    # item 2: one item above, tied with items 1 and 3 -> positions 2..4, mean 3; item 4: rank 5
    assert forgotten_pair_ranks(fn, forget).tolist() == [3.0, 5.0]
    # item 1 masked: positions 2..3 -> 2.5; item 0 masked too: 1.5
    assert forgotten_pair_ranks(fn, forget, torch.tensor([[0], [1]])).tolist() == [2.5, 4.0]
    assert forgotten_pair_ranks(fn, forget, torch.tensor([[0, 0], [0, 1]])).tolist() == [1.5, 3.0]
