"""Test helpers: tiny synthetic data and models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def blobs(n_per_class: int = 60, num_classes: int = 3, dim: int = 8, seed: int = 0):
    """Well-separated Gaussian blobs: x (N, dim) float32, y (N,) int64."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen) * 0.8
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + torch.randn(len(y), dim, generator=gen)
    return x, y


class TinyMLP(nn.Module):
    arch = "tiny_mlp"

    def __init__(self, dim: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# -- recommenders (tests/recsys) ------------------------------------------------------------
def tiny_graph(num_users: int = 16, num_items: int = 12, seed: int = 0) -> torch.Tensor:
    """Two taste communities: users < U/2 like items < I/2 + 1, the others the rest (+1).

    Each such pair is kept with probability 0.7 (seeded); returns ``(2, E)`` int64 edges.
    """
    gen = torch.Generator().manual_seed(seed)
    pairs = []
    for u in range(num_users):
        items = (
            range(0, num_items // 2 + 1)
            if u < num_users // 2
            else range(num_items // 2 - 1, num_items)
        )
        pairs += [(u, i) for i in items if torch.rand(1, generator=gen) < 0.7]
    return torch.tensor(pairs).t().contiguous()


def trained_lightgcn(
    edges: torch.Tensor, num_users: int = 16, num_items: int = 12, *, epochs: int = 30
):
    """A 2-layer, 8-dim LightGCN (seed 0) trained with BPR on ``edges``, in eval mode."""
    from unlearnkit.recsys.bpr import train_bpr
    from unlearnkit.recsys.models import LightGCNRecommender

    torch.manual_seed(0)
    model = LightGCNRecommender(num_users, num_items, embedding_dim=8, num_layers=2)
    train_bpr(model, edges, epochs=epochs, lr=0.05, batch_size=64, seed=0)
    return model.eval()


# -- `unlearnkit run` end to end (tests/test_cli.py, tests/recsys/test_experiment.py) --------
def snapshot(path: Path) -> dict[str, int]:
    """Every path under ``path`` with its modification time (``{}`` when absent)."""
    return {str(p): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


def run_args(tmp_path: Path, base: dict, **over) -> list[str]:
    """Write ``{**base, **over}`` to ``tmp_path/exp.yaml``; the ``unlearnkit run`` words for it.

    The run goes to ``tmp_path/runs``, its models to the cache ``tmp_path/cache``.
    """
    import yaml

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({**base, **over}))
    runs, cache = str(tmp_path / "runs"), str(tmp_path / "cache")
    return ["run", "-c", str(config), "--output", runs, "--cache_dir", cache]


def run_logged(caplog, args: list[str]) -> str:
    """Run ``unlearnkit <args>``, which must exit 0; return what the ``unlearnkit`` loggers said."""
    from unlearnkit.cli import main

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main(args) == 0
    return caplog.text


def first_run(caplog, tmp_path: Path, base: dict) -> tuple[list[str], Path, dict]:
    """Run ``base`` as :func:`run_args` into an empty cache (it must train the original).

    Returns:
        The ``unlearnkit`` words, the run directory and its ``report.json``.
    """
    args = run_args(tmp_path, base)
    assert "cache miss: training the original" in run_logged(caplog, args)
    (run,) = (tmp_path / "runs").iterdir()
    return args, run, json.loads((run / "report.json").read_text())


def row_names(report: dict) -> list[str]:
    """The ``method`` of each row of a ``report.json``, in order."""
    return [row["method"] for row in report["rows"]]


def assert_second_run_hits_cache(caplog, args: list[str], first_run: Path) -> None:
    """Running ``args`` again loads both models from the cache into a new run directory."""
    report = json.loads((first_run / "report.json").read_text())
    text = run_logged(caplog, args)
    assert "cache hit: loaded the original" in text
    assert "cache hit: loaded the retrained" in text
    assert len(list(first_run.parent.iterdir())) == 2  # a new run dir; the first one untouched
    assert json.loads((first_run / "report.json").read_text()) == report


def run_failing(tmp_path: Path, capsys, base: dict, watch: Path, **over) -> tuple[int, list[str]]:
    """Run the config ``{**base, **over}`` as :func:`run_args`; it must change nothing.

    Asserts that no path under ``watch`` was added or touched and that no run directory was
    left in ``tmp_path/runs``.

    Returns:
        The exit code and the lines written to stderr.
    """
    from unlearnkit.cli import main

    args = run_args(tmp_path, base, **over)
    before = snapshot(watch)
    code = main(args)
    assert snapshot(watch) == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    return code, capsys.readouterr().err.strip().splitlines()


# -- conformance: hyperparameters ------------------------------------------------------------
_OTHER_CHOICE = {
    "optimizer": {"sgd": "adam", "adam": "sgd"},
    "lr_schedule": {"constant": "cosine", "cosine": "constant"},
    "importance": {"batch_empirical": "per_sample"},
    "loss": {"cross_entropy": "l2_output", "l2_output": "cross_entropy"},
    "order": {"by_label": "as_given", "reference": "by_label"},
    "distribution": {"user": "pair"},
    "solver": {"woodfisher": "cg"},
}


def non_default_kwargs(cls: type) -> dict:
    """A non-default value for every keyword of ``cls.__init__`` that has a default.

    Numbers are moved (int + 1, float halved or 0.25 when 0), booleans flipped, known string
    choices swapped, ``cache_dir=None`` becomes a path: so "the argument is stored as given" is a
    check that a constructor ignoring or overriding an argument fails.
    """
    import inspect

    out = {}
    for key, param in inspect.signature(cls.__init__).parameters.items():
        d = param.default
        if key == "self" or d is inspect.Parameter.empty:
            continue
        if isinstance(d, bool):
            out[key] = not d
        elif isinstance(d, int):
            out[key] = d + 1
        elif isinstance(d, float):
            out[key] = d / 2 if d else 0.25
        elif isinstance(d, str):
            out[key] = _OTHER_CHOICE[key][d]
        elif key == "init_seed":
            out[key] = 7
        elif key == "cache_dir":
            out[key] = "/tmp/unlearnkit-test-not-written"
        elif key == "layers":
            out[key] = ["head"]
        elif key in ("input_mean", "input_std"):
            out[key] = (0.5,)
        else:
            raise AssertionError(f"{cls.__name__}: no non-default value for {key}={d!r}")
    return out


def _reads_undeclared_retain() -> type:
    from typing import ClassVar

    from unlearnkit.base import LossUnlearner

    class ReadsUndeclaredRetain(LossUnlearner):
        """A method (for the CLI tests) whose loss reads D_r without declaring it."""

        streams: ClassVar[tuple[str, ...]] = ("forget",)

        def __init__(self, *, epochs: int = 1, seed: int = 0) -> None:
            super().__init__(epochs=epochs, seed=seed)

        def loss(self, model, batch, *, epoch):
            x, y = batch.retain
            return model(x).sum()

    ReadsUndeclaredRetain.__module__ = __name__
    return ReadsUndeclaredRetain


ReadsUndeclaredRetain = _reads_undeclared_retain()
