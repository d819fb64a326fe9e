"""Recommender DataModules: the options they share through ``**kwargs`` reach the parser and loaders."""

from __future__ import annotations

import pytest
import torch
from jsonargparse import ArgumentParser

from unlearnkit.datasets.movielens import load_movielens_100k
from unlearnkit.recsys.data import (
    LightGCNTxtDataModule,
    MovieLens1MDataModule,
    MovieLens100KDataModule,
    RecDataModule,
)

# 12 users x 10 items, all rated 5: every pair is a positive; seeds give different splits
RATINGS = [(u, i, 5) for u in range(1, 13) for i in range(10, 20)]


def parser() -> ArgumentParser:
    p = ArgumentParser(exit_on_error=False)
    p.add_argument("--data", type=RecDataModule)
    return p


def test_base_and_movielens_options_parse_through_kwargs():
    p = parser()
    argv = ["--data", "unlearnkit.recsys.data.MovieLens1MDataModule", "--data.root", "/nowhere"]
    cfg = p.parse_args([*argv, "--data.k", "3", "--data.batch_size", "7", "--data.seed", "4"])
    data = p.instantiate(cfg).data
    assert isinstance(data, MovieLens1MDataModule)
    assert (data.root, data.download, data.k, data.threshold) == ("/nowhere", False, 3, 4.0)
    assert (data.batch_size, data.forget_batch_size, data.eval_batch_size, data.seed) == (
        7,
        512,
        1024,
        4,
    )
    assert data.data_key() == {
        "k": 3,
        "threshold": 4.0,
        "split_seed": 0,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
    }
    with pytest.raises(Exception, match="bogus"):
        p.parse_args([*argv, "--data.bogus", "1"])
    cfg = p.parse_args(
        ["--data", "unlearnkit.recsys.data.LightGCNTxtDataModule", "--data.root", "/x"]
        + ["--data.forget_batch_size", "9"]
    )
    txt = p.instantiate(cfg).data
    assert isinstance(txt, LightGCNTxtDataModule)
    assert (txt.root, txt.val_fraction, txt.forget_batch_size, txt.batch_size) == (
        "/x",
        0.1,
        9,
        2048,
    )


def test_movielens_100k_module_loads_with_its_options(tmp_path):
    lines = [f"{u}\t{i}\t{r}\t0" for u, i, r in RATINGS]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    module = MovieLens100KDataModule(root=str(tmp_path), k=2, split_seed=1, batch_size=7)
    direct = load_movielens_100k(tmp_path, k=2, seed=1)
    assert not torch.equal(direct.train_edges, load_movielens_100k(tmp_path, k=2).train_edges)
    torch.testing.assert_close(module.train_edges, direct.train_edges)  # split_seed -> seed
    assert (module.num_users, module.num_items, module.batch_size) == (12, 10, 7)
    key = module.cache_key()
    assert (key["dataset"], key["k"], key["split_seed"]) == ("movielens-100k", 2, 1)
