"""Tests of the thread policy: env handling, precedence, validation, and torch state (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit import threads as th
from unlearnkit.threads import configure_threads, default_threads, parse_threads

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV_VARS = (*th.THREAD_ENV_VARS, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _run(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with only ``env`` of the thread variables set; it prints
    one JSON line, returned parsed."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    base["PYTHONPATH"] = SRC + os.pathsep + base.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_leaves_one_core_free() -> None:
    assert default_threads(1) == 1
    assert default_threads(2) == 1
    assert default_threads(8) == 7
    assert 1 <= default_threads() <= max(1, th.available_cores())


def test_none_uses_default_and_sets_env_and_passive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(th, "available_cores", lambda: 4)
    env: dict[str, str] = {}
    assert configure_threads(None, environ=env) == 3
    assert env == {
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "3",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def test_user_omp_num_threads_is_respected() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert configure_threads(None, environ=env) == 3
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3"
    nested = {"OMP_NUM_THREADS": "4,2", "MKL_NUM_THREADS": "2"}
    assert configure_threads(None, environ=nested) == 4
    assert nested["OMP_NUM_THREADS"] == "4,2"  # left as the user wrote it
    assert nested["MKL_NUM_THREADS"] == "2"  # and so is MKL's


def test_explicit_value_wins_over_env() -> None:
    env = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    assert configure_threads(2, environ=env) == 2
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"


def test_user_wait_policy_is_respected() -> None:
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    configure_threads(1, environ=env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    spin = {"GOMP_SPINCOUNT": "300000"}
    configure_threads(1, environ=spin)
    assert "OMP_WAIT_POLICY" not in spin


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "0", "two", "", None])
def test_parse_threads_rejects_bad_values(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        parse_threads(bad)


@pytest.mark.parametrize("bad", [0, -2, 2.0, False, "x"])
def test_configure_rejects_bad_threads(bad: object) -> None:
    env: dict[str, str] = {}
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        configure_threads(bad, environ=env)  # type: ignore[arg-type]
    assert env == {}  # nothing changed on error


@pytest.mark.parametrize("bad", ["abc", "0", "-1"])
def test_configure_rejects_bad_env(bad: str) -> None:
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        configure_threads(None, environ={"OMP_NUM_THREADS": bad})


def test_parse_threads_accepts_ints_and_strings() -> None:
    assert parse_threads(3) == 3
    assert parse_threads(" 5 ") == 5
    assert parse_threads("4,2") == 4


def test_before_torch_import_sets_pool_and_wait_policy() -> None:
    got = _run(
        "import json, os; from unlearnkit.threads import configure_threads;"
        "n = configure_threads(1); import torch;"
        "print(json.dumps([n, torch.get_num_threads(), os.environ['OMP_WAIT_POLICY']]))"
    )
    assert got == [1, 1, "PASSIVE"]


def test_after_torch_import_sets_torch_threads() -> None:
    got = _run(
        "import json, torch; torch.set_num_threads(2);"
        "from unlearnkit.threads import configure_threads; n = configure_threads(1);"
        "print(json.dumps([n, torch.get_num_threads(), torch.get_num_interop_threads()]))"
    )
    assert got == [1, 1, 1]


def test_after_torch_work_interop_pool_left_alone() -> None:
    got = _run(
        "import json, torch; torch.set_num_interop_threads(2);"
        "from unlearnkit.threads import configure_threads; n = configure_threads(1);"
        "print(json.dumps([n, torch.get_num_threads(), torch.get_num_interop_threads()]))"
    )
    assert got == [1, 1, 2]


def test_user_env_reaches_torch() -> None:
    got = _run(
        "import json; from unlearnkit.threads import configure_threads;"
        "n = configure_threads(None); import torch;"
        "print(json.dumps([n, torch.get_num_threads()]))",
        OMP_NUM_THREADS="2",
    )
    assert got == [2, 2]


CLI_HELP = """
import contextlib, io, json, os, sys
import unlearnkit.cli as cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main(["run", "--help"])
    except SystemExit:
        pass
import torch
print(json.dumps([os.environ["OMP_WAIT_POLICY"], os.environ["MKL_NUM_THREADS"], torch.get_num_threads()]))
"""


def test_cli_main_applies_policy() -> None:
    assert _run(CLI_HELP, OMP_NUM_THREADS="1") == ["PASSIVE", "1", 1]


def test_lightning_subcommands_take_threads_out_of_argv():
    from unlearnkit.cli import _lightning_threads

    argv = ["fit", "-c", "a.yaml", "--threads", "1", "--model.checkpoint", "o.pt"]
    assert _lightning_threads(argv) == (["fit", "-c", "a.yaml", "--model.checkpoint", "o.pt"], "1")
    assert _lightning_threads(["test", "--threads=2"]) == (["test"], "2")
    assert _lightning_threads(["run", "--threads", "1"]) == (["run", "--threads", "1"], None)
    with pytest.raises(ValueError, match="--threads needs a number"):
        _lightning_threads(["fit", "--threads"])
