"""Every ``unlearnkit`` command of the README, run as written (in a fresh working directory).

The commands are read from the README itself (its ``bash`` blocks and the first code span of
each commands-table row), so a command added to the README is either run here or has to be added
to :data:`SKIPPED` with its reason: the test fails on any command in neither list. Two commands
get a shorter schedule (:data:`SHORTER`); the path they take is the same.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from unlearnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands that are not run here, with the reason (printed when the test runs).
SKIPPED = {
    "unlearnkit run -c configs/experiments/fashion_mnist_class.yaml": (
        "needs ../shared/data/fashion-mnist (tests/test_cli.py runs it when present)"
    ),
    "unlearnkit run -c exp.yaml --trainer '{accelerator: gpu, devices: 2, strategy: ddp}'": (
        "needs 2 GPUs and names a placeholder exp.yaml (DDP on 2 CPU processes: tests/test_cli.py)"
    ),
    "unlearnkit fit -c ... --model.checkpoint original.pt": (
        "a form with `...`; the README's bash block runs its complete instance"
    ),
    "unlearnkit test -c ... --model.checkpoint FILE.pt": (
        "a form with FILE.pt; the README's bash block runs its complete instance"
    ),
    "unlearnkit reproduce ssd_fullclass_fmnist": "needs ../shared/data/fashion-mnist",
    "unlearnkit reproduce ssd_fullclass_fmnist --smoke": (
        "needs ../shared/data/fashion-mnist (tests/reproduce/ runs the smoke grid)"
    ),
    "unlearnkit reproduce baselines_fmnist_random": (
        "needs ../shared/data/fashion-mnist and ~30 min (tests/reproduce/ runs its smoke grid)"
    ),
    "unlearnkit reproduce worstcase_fmnist": (
        "needs ../shared/data/fashion-mnist and ~40 min (tests/reproduce/ runs its smoke grid)"
    ),
    "unlearnkit reproduce iau_cifar10": (
        "needs ../shared/data/cifar10-jpeg-q75.tar.gz and ~1 h (tests/reproduce/ runs its smoke grid)"
    ),
    "unlearnkit reproduce recsys_movielens --seeds 0 1 2": (
        "three seeds of the full recommender table: many minutes (its path: tests/reproduce/)"
    ),
}

#: Options appended to keep the test short: the default experiment trains 30 epochs (about a
#: minute at one thread with its methods), the recommender 40; the path is the same.
SHORTER = {
    "unlearnkit run": ["--training.epochs", "5"],
    "unlearnkit tune --grid '{FineTune: {lr: [0.01, 0.05]}}'": ["--training.epochs", "5"],
    "unlearnkit run -c configs/experiments/movielens_users.yaml": ["--training.epochs", "1"],
}

#: The commands run, in this order (`unlearnkit run` is also the Quick start's).
RUN = [
    "unlearnkit run",
    "unlearnkit run -c configs/experiments/movielens_users.yaml",
    "unlearnkit run --print_config",
    "unlearnkit train --out original.pt",
    "unlearnkit fit -c configs/trainer/cpu.yaml -c configs/data/digits.yaml "
    "-c configs/model/small_cnn.yaml -c configs/method/gradient_ascent.yaml "
    "--trainer.max_epochs 5 --model.checkpoint original.pt",
    "unlearnkit test -c configs/trainer/cpu.yaml -c configs/data/digits.yaml "
    "-c configs/model/small_cnn.yaml -c configs/method/gradient_ascent.yaml "
    '--model.checkpoint "$(ls -d runs/*-fit | tail -1)/unlearned.pt"',
    "unlearnkit reproduce --list",
    "unlearnkit tune --grid '{FineTune: {lr: [0.01, 0.05]}}'",
]

LATEST_FIT = "$(ls -d runs/*-fit | tail -1)"


def readme_commands(text: str) -> list[str]:
    """The ``unlearnkit`` commands of a README, in order, each once.

    From ``bash`` blocks: every ``&&``-separated part of a line whose program is ``unlearnkit``
    (``.venv/bin/unlearnkit`` too), without its trailing ``# comment``. From tables: the first
    code span of a row's first cell when it starts with ``unlearnkit``.
    """
    found: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for part in re.sub(r"\s+#.*$", "", line).split("&&"):
                words = part.split(maxsplit=1)
                if words and Path(words[0]).name == "unlearnkit":
                    found.append(" ".join(["unlearnkit", *words[1:]]).strip())
    for line in text.splitlines():
        if line.startswith("| `unlearnkit "):
            found.append(re.findall(r"`([^`]*)`", line.split(" | ")[0])[0])
    return list(dict.fromkeys(" ".join(c.split()) for c in found))


def test_readme_lists_only_commands_this_test_knows():
    commands = readme_commands(README.read_text())
    unknown = [c for c in commands if c not in RUN and c not in SKIPPED]
    assert unknown == [], "a README command neither run nor skipped here: add it to RUN/SKIPPED"
    assert sorted(c for c in commands if c in RUN) == sorted(RUN)  # every one is run
    assert sorted(c for c in commands if c in SKIPPED) == sorted(SKIPPED)  # no stale skip


def test_readme_commands_run_as_written(tmp_path, monkeypatch, capsys):
    with capsys.disabled():
        print("".join(f"\nskipped: {c}  ({r})" for c, r in SKIPPED.items()))
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    outputs = {}
    for command in RUN:
        if LATEST_FIT in command:  # the shell's $(...): the newest fit run directory
            command_line = command.replace(
                LATEST_FIT, sorted(map(str, Path("runs").glob("*-fit")))[-1]
            )
        else:
            command_line = command
        assert "$" not in command_line
        words = shlex.split(command_line)[1:] + SHORTER.get(command, [])
        capsys.readouterr()
        try:
            code = main(words)
        except SystemExit as exit:  # --print_config prints and exits, as jsonargparse does
            code = exit.code
        assert code == 0, command
        outputs[command] = capsys.readouterr().out

    reports = sorted(Path("runs").glob("*/report.json"))
    assert len(reports) == 2  # the digits run and the recommender run
    digits = json.loads(reports[0].read_text())
    assert {r["method"] for r in digits["rows"]} >= {"retrain", "original", "FineTune"}
    printed = yaml.safe_load(outputs["unlearnkit run --print_config"])
    assert printed["training"]["epochs"] == 30 and printed["data"]["init_args"]["batch_size"] == 64
    assert Path("original.pt").is_file()
    (fit,) = Path("runs").glob("*-fit")
    metrics = json.loads((fit / "metrics.json").read_text())["metrics"]
    assert f"forget/acc      │ {metrics['forget/acc']:.4f}" in outputs[RUN[5]]
    assert not Path("config.yaml").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```bash\npython3 -m venv .venv && .venv/bin/unlearnkit run\n```", ["unlearnkit run"]),
        (
            "```bash\nunlearnkit reproduce --list     # the tables\n```",
            ["unlearnkit reproduce --list"],
        ),
        ("| `unlearnkit run -c x.yaml` (`_y`) | z |", ["unlearnkit run -c x.yaml"]),
        ("```python\nunlearnkit run\n```\n| `pip` | x |", []),
    ],
)
def test_readme_commands_are_read_from_bash_blocks_and_table_rows(text, expected):
    assert readme_commands(text) == expected
