"""``unlearnkit reproduce <table> [--seeds ...] [--smoke] [--list]``: regenerate a paper table.

Runs the table's grid (architectures × forget requests × seeds) through the same code as
``unlearnkit run`` (originals and retrained models come from the model cache when present),
prints a Markdown table of mean ± std beside the paper's numbers and the differences, checks the
paper's claimed trend, and writes ``table.md`` and ``results.json`` (plus each run's own report)
into a new run directory.
"""

from __future__ import annotations

import json
import logging

import yaml
from jsonargparse import ArgumentParser

from unlearnkit.reproduce.runner import ReproduceOptions, run_table
from unlearnkit.reproduce.tables import list_tables, load_table

__all__ = ["reproduce_command", "reproduce_parser"]

log = logging.getLogger(__name__)


def reproduce_parser() -> ArgumentParser:
    """The ``unlearnkit reproduce`` argument parser (every option explained in ``--help``)."""
    p = ArgumentParser(
        prog="unlearnkit reproduce",
        description="Regenerate a paper table: run its grid (methods x forget requests x seeds) "
        "with the `unlearnkit run` machinery, print mean ± std beside the paper's numbers and "
        "the difference, and write table.md / results.json to a new run directory.",
    )
    p.add_argument("table", nargs="?", help="table name (see --list)")
    p.add_argument("--list", action="store_true", help="list the tables and exit")
    p.add_argument(
        "--seeds", type=int, nargs="+", help="seeds to run (default: the table's, e.g. 0 1 2)"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny run of the whole path (data subset, 1 epoch, 1 seed, 1 request) for CI",
    )
    p.add_argument(
        "--archs",
        nargs="+",
        help="architectures to run (default: the table's CPU archs; see --all_archs)",
    )
    p.add_argument(
        "--all_archs",
        action="store_true",
        help="also run the table's GPU architectures (e.g. resnet18_cifar)",
    )
    p.add_argument("--max_requests", type=int, help="run only the first N forget requests")
    p.add_argument(
        "--train_limit",
        type=int,
        help="train on a seeded subset of N samples (marked in the output)",
    )
    p.add_argument("--test_limit", type=int, help="evaluate on a seeded subset of N test samples")
    p.add_argument("--data_root", help="data location (overrides the table's data.init_args.root)")
    p.add_argument(
        "--output", default="runs", help="parent of the new run directory (default: runs)"
    )
    p.add_argument(
        "--cache_dir",
        help="model and importance cache (default $UNLEARNKIT_CACHE or ~/.cache/unlearnkit/cache)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: OMP_NUM_THREADS, else cores - 1, the suite's "
        "thread policy); 1 avoids oversubscription on a busy shared machine",
    )
    p.add_argument(
        "--trainer",
        default="{}",
        help="extra lightning.Trainer arguments as YAML, e.g. '{accelerator: gpu, devices: 1}'",
    )
    p.add_argument(
        "--training",
        default="{}",
        help="fields of the table's training schedule to replace, as YAML, e.g. "
        "'{gradient_restriction: 0}' (marked in the output: not the table's setting)",
    )
    return p


def _list() -> str:
    lines = [
        "| table | title | archs (CPU) | GPU archs | seeds | requests |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for name in list_tables():
        spec = load_table(name)
        lines.append(
            f"| {name} | {spec.title} | {', '.join(spec.archs)} | {', '.join(spec.gpu_archs) or '—'} "
            f"| {' '.join(map(str, spec.seeds))} | {len(spec.forget)} |"
        )
    return "\n".join(lines)


def reproduce_command(argv: list[str]) -> int:
    """Parse ``argv`` (the words after ``reproduce``), run the table, print it.

    Returns:
        0 on success (argparse exits with 2 on malformed options).

    Raises:
        ValueError: unknown table or bad option values. FileNotFoundError: data missing.
    """
    args = reproduce_parser().parse_args(argv)
    if args.list:
        print(_list())
        return 0
    if not args.table:
        raise ValueError(
            "name a table, e.g. `unlearnkit reproduce ssd_fullclass_fmnist`; see --list"
        )
    spec = load_table(args.table)
    if args.threads is not None:
        from unlearnkit.threads import configure_threads

        configure_threads(args.threads)
    trainer = yaml.safe_load(args.trainer) or {}
    if not isinstance(trainer, dict):
        raise ValueError(f"--trainer must be a YAML mapping, got {args.trainer!r}")
    from unlearnkit.module import check_trainer_arguments

    check_trainer_arguments(trainer)  # a missing GPU: one line, before any work
    training = yaml.safe_load(args.training) or {}  # a non-mapping: refused by build_config
    archs = args.archs
    if args.all_archs:
        archs = list(dict.fromkeys([*(archs or spec.archs), *spec.gpu_archs]))
    options = ReproduceOptions(
        seeds=args.seeds,
        archs=archs,
        smoke=args.smoke,
        max_requests=args.max_requests,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        data_root=args.data_root,
        output=args.output,
        cache_dir=args.cache_dir,
        trainer=trainer,
        training=training,
    )
    markdown, run_dir = run_table(spec, options)
    print(markdown)
    print(f"written to {run_dir} (table.md, results.json)")
    log.debug("options: %s", json.dumps(vars(args), default=str))
    return 0
