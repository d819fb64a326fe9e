"""Interaction data: implicit conversion, k-core, per-user split, MovieLens / LightGCN loaders."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest
import torch

from unlearnkit.datasets import movielens as ml
from unlearnkit.datasets.interactions import (
    InteractionData,
    compact_ids,
    implicit_from_ratings,
    k_core,
    load_lightgcn_txt,
    split_per_user,
)
from unlearnkit.datasets.movielens import (
    MOVIELENS_GENRES,
    item_side_features,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_small,
)


def pairs(edges: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in edges.t()}


# --- implicit feedback ---------------------------------------------------------------------
def test_implicit_from_ratings_threshold_inclusive_and_forms_agree():
    users, items, ratings = [5, 5, 7, 7, 7], [1, 2, 1, 3, 3], [4.0, 3.5, 5.0, 4.0, 1.0]
    expected = {(5, 1), (7, 1), (7, 3)}  # (7, 3) rated twice: one positive copy
    table = {"userId": users, "movieId": items, "rating": ratings}
    by_table = implicit_from_ratings(table, 4.0)
    assert by_table.dtype == torch.long and by_table.shape == (2, 3)
    assert pairs(by_table) == expected
    assert torch.equal(implicit_from_ratings((users, items, ratings), 4.0), by_table)
    arr = np.stack([users, items, ratings], axis=1)
    assert torch.equal(implicit_from_ratings(arr, 4.0), by_table)
    assert pairs(implicit_from_ratings(arr, 4.5)) == {(7, 1)}


def test_implicit_from_ratings_errors():
    with pytest.raises(ValueError, match="lacks column"):
        implicit_from_ratings({"userId": [1], "movieId": [1]})
    with pytest.raises(ValueError, match="integers"):
        implicit_from_ratings(([1.5], [1], [5.0]))
    with pytest.raises(TypeError, match="ratings must be"):
        implicit_from_ratings("ratings.csv")


# --- k-core ----------------------------------------------------------------------------------
def test_k_core_cascade_by_hand():
    # users 0,1: items 0,1,2; user 2: items 0,1; user 3: item 3; user 4: items 3,4.
    # k=2, round 1 drops (3,3) [user 3 has 1 edge] and (4,4) [item 4 has 1 edge]; then user 4 and
    # item 3 are left with one edge each, so round 2 drops (4,3). 8 edges survive.
    edges = torch.tensor(
        [[0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4], [0, 1, 2, 0, 1, 2, 0, 1, 3, 3, 4]], dtype=torch.long
    )
    kept = k_core(edges, k=2)
    assert pairs(kept) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1)}
    # k=3: user 2 and item 2 fall, then users 0 and 1 keep only 2 items each: nothing survives.
    assert kept.shape == (2, 8) and k_core(edges, k=3).shape == (2, 0)
    # duplicates are merged before counting degrees
    assert k_core(torch.tensor([[0, 0], [1, 1]]), k=2).shape == (2, 0)


def test_compact_ids_maps_back():
    edges = torch.tensor([[100, 7, 100], [50, 50, 3]])
    compact, users, items = compact_ids(edges)
    assert users.tolist() == [7, 100] and items.tolist() == [3, 50]
    assert torch.equal(torch.stack([users[compact[0]], items[compact[1]]]), edges)


# --- per-user split ------------------------------------------------------------------------
def _toy_edges() -> torch.Tensor:
    users = [0] * 10 + [1] * 5 + [2] + [3] * 2 + [4] * 3
    items = [*range(10), *range(5), 0, 0, 1, 0, 1, 2]
    return torch.tensor([users, items], dtype=torch.long)


def test_split_per_user_counts_disjoint_and_seeded():
    edges = _toy_edges()
    train, val, test = split_per_user(edges, val_fraction=0.1, test_fraction=0.2, seed=0)
    # n=10 -> 2 test, 1 val; n=5 -> 1 test, 1 val (0.5 rounds up); n=1, 2 -> all train;
    # n=3 -> 1 test (0.6 -> 1), 0 val.
    assert torch.bincount(train[0], minlength=5).tolist() == [7, 3, 1, 2, 2]
    assert torch.bincount(val[0], minlength=5).tolist() == [1, 1, 0, 0, 0]
    assert torch.bincount(test[0], minlength=5).tolist() == [2, 1, 0, 0, 1]
    sets = [pairs(train), pairs(val), pairs(test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sets[0] | sets[1] | sets[2] == pairs(edges)
    again = split_per_user(edges, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again, (train, val, test), strict=True))
    others = [pairs(split_per_user(edges, seed=s)[2]) for s in range(1, 6)]
    assert any(o != sets[2] for o in others)  # the seed changes which items are held out


def test_split_per_user_rejects_bad_fractions():
    with pytest.raises(ValueError, match="test_fraction"):
        split_per_user(_toy_edges(), test_fraction=1.0)
    with pytest.raises(ValueError, match="< 1"):
        split_per_user(_toy_edges(), val_fraction=0.5, test_fraction=0.5)


def test_interaction_data_validates():
    e = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="unknown item id 1"):
        InteractionData(1, 1, e, e[:, :0], e[:, :0], torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(TypeError, match="integer"):
        InteractionData(1, 2, e.float(), e, e, torch.tensor([0]), torch.tensor([0, 1]))


def test_interaction_data_rejects_duplicated_and_shared_pairs():
    ids2, ids3 = torch.arange(2), torch.arange(3)
    none = torch.empty(2, 0, dtype=torch.long)
    # (0, 1) twice in train: forgetting interaction 0 would leave its copy in D_r
    twice = torch.tensor([[0, 1, 0], [1, 2, 1]])
    with pytest.raises(ValueError, match=r"train_edges .*\(user 0, item 1\) more than once"):
        InteractionData(2, 3, twice, none, none, ids2, ids3)
    with pytest.raises(ValueError, match=r"test_edges .*\(user 1, item 2\).*torch\.unique"):
        InteractionData(2, 3, none, none, torch.tensor([[1, 1], [2, 2]]), ids2, ids3)
    train, test = torch.tensor([[0, 1], [1, 2]]), torch.tensor([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"\(user 0, item 1\) is in both train_edges and test"):
        InteractionData(2, 3, train, none, test, ids2, ids3)
    with pytest.raises(ValueError, match=r"\(user 1, item 2\) is in both val_edges and test"):
        InteractionData(2, 3, none, train, torch.tensor([[1], [2]]), ids2, ids3)
    # the same pairs once each, in disjoint splits, are accepted
    ok = InteractionData(2, 3, train, none, torch.tensor([[1], [0]]), ids2, ids3)
    assert ok.stats()["edges"] == 3


def test_load_lightgcn_txt_merges_repeats_and_train_test_overlap(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 1 2\n1 0\n")  # (0, 1) listed twice
    (tmp_path / "test.txt").write_text("0 2 3 3\n1 4\n")  # (0, 2) also in train, (0, 3) twice
    data = load_lightgcn_txt(tmp_path, val_fraction=0.0)
    assert pairs(data.train_edges) == {(0, 1), (0, 2), (1, 0)}
    assert data.train_edges.size(1) == 3
    assert data.test_edges.tolist() == [[0, 1], [3, 4]]  # (0, 2) stays a training pair only


# --- vendored MovieLens --------------------------------------------------------------------
def test_vendored_movielens_counts():
    with ml._open_text(None, "ratings.csv.gz") as f:
        table = ml._read_ratings_csv(f)
    assert table.shape == (100_004, 4)
    assert len(np.unique(table[:, 0])) == 671 and len(np.unique(table[:, 1])) == 9066
    assert implicit_from_ratings(table, 4.0).shape == (2, 51_568)

    data = load_movielens_small()
    assert data.stats() == {
        "users": 659,
        "items": 2078,
        "train": 31_056,
        "val": 4_473,
        "test": 8_884,
        "edges": 44_413,
    }
    every = torch.cat([data.train_edges, data.val_edges, data.test_edges], dim=1)
    assert torch.bincount(every[0]).min() >= 5 and torch.bincount(every[1]).min() >= 5
    assert torch.bincount(data.train_edges[0], minlength=data.num_users).min() >= 1
    # raw ids in increasing order (user 1 has only 3 ratings >= 4 and falls out of the 5-core)
    assert bool((data.user_ids.diff() > 0).all()) and bool((data.item_ids.diff() > 0).all())
    assert data.user_ids[0] == 2 and data.item_ids[0] == 1
    eval_edges, mask = data.eval_split("test")
    assert eval_edges is data.test_edges and mask.size(1) == 31_056 + 4_473
    again = load_movielens_small()
    assert torch.equal(again.test_edges, data.test_edges)
    assert not torch.equal(load_movielens_small(seed=1).test_edges, data.test_edges)


def test_item_side_features_vendored():
    data = load_movielens_small()
    feats, names = item_side_features(data.item_ids, max_title_features=50, return_names=True)
    assert feats.dtype == torch.float32 and feats.shape == (data.num_items, 19 + 1 + 50)
    assert len(names) == feats.size(1) and names[:2] == ["genre=Action", "genre=Adventure"]
    toy_story = int((data.item_ids == 1).nonzero())  # Adventure|Animation|Children|Comedy|Fantasy
    g = dict(zip(MOVIELENS_GENRES, feats[toy_story, :19].tolist(), strict=True))
    assert g["Animation"] == 1 and g["Children"] == 1 and g["Fantasy"] == 1
    assert g["Drama"] == 0 and sum(g.values()) == 5
    year = feats[:, 19]
    assert year.min() == 0 and year.max() == 1
    title = feats[:, 20:]
    assert torch.allclose(title.norm(dim=1)[title.norm(dim=1) > 0], torch.ones(1), atol=1e-5)
    with_feats = load_movielens_small(item_features=True, max_title_features=10)
    assert with_feats.item_features.shape == (data.num_items, 30)


def test_item_side_features_official_layout(tmp_path):
    # ml-latest layout: no year column, year as a title suffix, quoted commas.
    path = tmp_path / "movies.csv"
    path.write_text(
        "movieId,title,genres\n"
        '10,"Usual Suspects, The (1995)",Crime|Mystery|Thriller\n'
        "20,Heat (1975),Action|Crime\n"
        "30,Unknown Film,(no genres listed)\n",
        encoding="utf-8",
    )
    feats, names = item_side_features([20, 10, 30, 99], path, return_names=True)
    crime = MOVIELENS_GENRES.index("Crime")
    assert feats[:, crime].tolist() == [1, 1, 0, 0]
    assert feats[2, :19].sum() == 0 and feats[3].sum() == pytest.approx(0.5)
    assert feats[:, 19].tolist() == pytest.approx([0.0, 1.0, 0.5, 0.5])  # 1975, 1995, mean, mean
    assert "title=heat" in names and "title=1995" not in names  # the year suffix is stripped
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        item_side_features([1], tmp_path / "nope.csv")


# --- MovieLens 100K / 1M / LightGCN text loaders on written fixtures -------------------------
_RATINGS = [  # user, item, rating: users 1-3 each like items 10, 11; user 4 likes only item 12
    (1, 10, 5),
    (1, 11, 4),
    (1, 12, 2),
    (2, 10, 4),
    (2, 11, 5),
    (3, 10, 4),
    (3, 11, 4),
    (3, 13, 1),
    (4, 12, 5),
]


def _check_fixture_data(data: InteractionData) -> None:
    # threshold 4 keeps 7 positives; the 2-core drops (4, 12): users 1-3 x items 10-11 remain.
    assert data.num_users == 3 and data.num_items == 2
    assert data.user_ids.tolist() == [1, 2, 3] and data.item_ids.tolist() == [10, 11]
    every = torch.cat([data.train_edges, data.val_edges, data.test_edges], dim=1)
    assert pairs(every) == {(u, i) for u in range(3) for i in range(2)}


def test_load_movielens_100k_fixture(tmp_path):
    lines = [f"{u}\t{i}\t{r}\t88125000{j}" for j, (u, i, r) in enumerate(_RATINGS)]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    data = load_movielens_100k(tmp_path, k=2)
    _check_fixture_data(data)
    assert data.name == "movielens-100k"  # part of the model-cache keys
    nested = tmp_path / "nested"
    (nested / "ml-100k").mkdir(parents=True)
    (nested / "ml-100k" / "u.data").write_text("\n".join(lines))
    _check_fixture_data(load_movielens_100k(nested, k=2))


def test_default_root_is_unlearnkit_data(tmp_path, monkeypatch):
    (tmp_path / "ml-100k").mkdir()
    lines = [f"{u}\t{i}\t{r}\t0" for u, i, r in _RATINGS]
    (tmp_path / "ml-100k" / "u.data").write_text("\n".join(lines))
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    _check_fixture_data(load_movielens_100k(k=2))


def test_load_movielens_1m_fixture(tmp_path):
    lines = [f"{u}::{i}::{r}::97830000{j}" for j, (u, i, r) in enumerate(_RATINGS)]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    data = load_movielens_1m(tmp_path, k=2)
    _check_fixture_data(data)
    assert data.name == "movielens-1m"


def test_missing_movielens_files_explain_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"u\.data.*grouplens\.org.*download=True"):
        load_movielens_100k(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat.*grouplens\.org"):
        load_movielens_1m(tmp_path)


def test_movielens_download_from_official_layout(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "ml-100k.zip"
    archive.parent.mkdir()
    lines = [f"{u}\t{i}\t{r}\t0" for u, i, r in _RATINGS]
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "\n".join(lines) + "\n")
        zf.writestr("ml-100k/README", "fixture")
    monkeypatch.setitem(ml.MOVIELENS_URLS, "ml-100k", archive.as_uri())
    root = tmp_path / "root"
    _check_fixture_data(load_movielens_100k(root, k=2, download=True))
    assert sorted(p.name for p in root.rglob("*")) == ["ml-100k", "u.data"]  # no temp left over


def test_load_lightgcn_txt_fixture(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1 2 3 4 5 6 7 8 9\n1 2 3\n2 4\n")
    (tmp_path / "test.txt").write_text("0 10\n1 4 5\n2\n")
    data = load_lightgcn_txt(tmp_path, val_fraction=0.1, seed=3)
    assert data.num_users == 3 and data.num_items == 11 and data.name == tmp_path.name
    assert pairs(data.test_edges) == {(0, 10), (1, 4), (1, 5)}  # their test split as-is
    assert torch.bincount(data.val_edges[0], minlength=3).tolist() == [1, 0, 0]
    assert pairs(data.train_edges) | pairs(data.val_edges) == {
        *((0, i) for i in range(10)),
        (1, 2),
        (1, 3),
        (2, 4),
    }
    assert torch.equal(data.item_ids, torch.arange(11))
    (tmp_path / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*kuandeng/LightGCN"):
        load_lightgcn_txt(tmp_path)


def test_gzip_movies_path_is_read(tmp_path):
    path = tmp_path / "movies.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("movieId,title,year,genres\n5,Film,2000,Drama|War\n")
    feats = item_side_features(torch.tensor([5]), path, max_title_features=0)
    assert feats.shape == (1, 20) and feats[0, MOVIELENS_GENRES.index("War")] == 1
