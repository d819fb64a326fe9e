"""Table specs (YAML) and paper targets (CSV) shipped as package data under ``reproduce/tables``.

A table ``<name>`` is two files:

``<name>.yaml`` — the spec::

    title: one line
    paper: the source paper (title, venue, arXiv id)
    notes: free text printed under the table (what differs from the paper, and why)
    paper_comparison: true   # false when no paper number for this setting could be read (the
                             # CSV then only names the cells; the report prints them as n/a)
    experiment:          # an `unlearnkit run` config without forget/arch/seed (the grid sets them)
      data: {class_path: ..., init_args: {...}}
      training: {...}
      methods: [{class_path: Retrain}, {class_path: SSD}, ...]
    grid:
      forget: [{kind: class, classes: [0]}, ...]   # forget requests, each run in turn
      seeds: [0, 1, 2]
      archs: [small_cnn]              # run by default
      gpu_archs: [resnet18_cifar]     # also run with --all_archs (too slow on a CPU)
    rows: [original, retrain, FineTune, SSD, LFSSD]        # report rows, in order
    columns: [retain/acc, forget/acc, mia/entropy_lr, ...] # metric keys, in order
    checks:              # the paper's claimed trend, checked on our numbers
      - {row: SSD, metric: forget/acc, at_most: 0.01, claim: "..."}
      - {row: SSD, metric: retain/acc, of_row: original, within: 0.03, claim: "..."}
      - {row: SSD, metric: time/unlearn_s, of_row: retrain, at_most_ratio: 0.05, claim: "..."}
      - {row: SalUn, metric: gap/avg, among_smallest: 3, claim: "..."}  # rank among the
                         # unlearning methods' rows (original and retrain excluded), 1 = smallest
    smoke:               # overrides of --smoke (a tiny run of the whole path, for CI)
      data: {train_limit: 2000, test_limit: 500}
      training: {epochs: 1}
      seeds: [0]
      max_requests: 1

``<name>.csv`` — the paper's numbers, one cell per line, columns
``table,setting,row,metric,paper_value,source,primary,setting_matches,note``: ``setting`` is the
arch the cell is compared with; ``paper_value`` is in the units our table prints (percent for
accuracies and attack rates, seconds for times) or empty when the number could not be read
(the report then prints "n/a (not available offline)"); ``source`` names the paper and table and,
for a filled cell, where the number was read (URL or repository file); ``primary`` is ``yes``
(the paper or its authors' repository) or ``no`` (a third party's report) for a filled cell and
empty for an empty one; ``setting_matches`` is ``yes`` or ``no`` and ``note`` says what differs
(data set, architecture, schedule).

A table with ``paper_comparison: true`` (the default) must have at least one filled cell.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PaperCell", "TableSpec", "list_tables", "load_table", "tables_dir"]

CSV_COLUMNS = (
    "table",
    "setting",
    "row",
    "metric",
    "paper_value",
    "source",
    "primary",
    "setting_matches",
    "note",
)
_CHECK_KINDS = ("at_most", "at_least", "within", "at_most_ratio", "among_smallest")


def tables_dir() -> Path:
    """The package-data folder holding ``<table>.yaml`` and ``<table>.csv``."""
    return Path(str(resources.files("unlearnkit") / "reproduce" / "tables"))


def list_tables() -> list[str]:
    """Names of the shipped tables, sorted."""
    return sorted(p.stem for p in tables_dir().glob("*.yaml"))


@dataclass(frozen=True)
class PaperCell:
    """One number of the paper (a line of ``<table>.csv``).

    Attributes:
        setting: our arch it is compared with (e.g. ``small_cnn``).
        row: report row (``original``, ``retrain``, ``SSD``, ...).
        metric: metric key (``forget/acc``, ...).
        value: the paper's number in display units (percent / seconds), or ``None`` if unknown.
        source: paper and table number.
        setting_matches: whether our data/arch/schedule equal the paper's.
        note: what differs.
        primary: for a filled cell, whether its source is the paper or its authors' code (True)
            or a third party's report (False); None for an empty cell.
    """

    setting: str
    row: str
    metric: str
    value: float | None
    source: str
    setting_matches: bool
    note: str
    primary: bool | None = None


@dataclass
class TableSpec:
    """A parsed table spec plus its paper cells (see the module docstring for the format).

    Raises (from :func:`load_table`):
        ValueError: a malformed spec or CSV (the message names the file and the field).
    """

    name: str
    title: str
    paper: str
    notes: str
    experiment: dict[str, Any]
    forget: list[dict[str, Any]]
    seeds: list[int]
    archs: list[str]
    gpu_archs: list[str]
    rows: list[str]
    columns: list[str]
    checks: list[dict[str, Any]]
    smoke: dict[str, Any]
    paper_cells: list[PaperCell] = field(default_factory=list)
    paper_comparison: bool = True

    @property
    def filled_cells(self) -> list[PaperCell]:
        """The paper cells that hold a number."""
        return [c for c in self.paper_cells if c.value is not None]

    def paper_cell(self, setting: str, row: str, metric: str) -> PaperCell | None:
        """The paper's cell for (arch, row, metric), if the CSV has one."""
        for cell in self.paper_cells:
            if (cell.setting, cell.row, cell.metric) == (setting, row, metric):
                return cell
        return None


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in doc:
        raise ValueError(f"table spec {where} lacks the field {key!r}")
    value = doc[key]
    if not isinstance(value, kind):
        raise ValueError(
            f"table spec {where}: {key!r} must be a {kind}, got {type(value).__name__}"
        )
    return value


def load_table(name: str) -> TableSpec:
    """Load ``<name>.yaml`` and ``<name>.csv`` from the package data.

    Args:
        name: a table name from :func:`list_tables`.

    Returns:
        The :class:`TableSpec` with its paper cells.

    Raises:
        ValueError: unknown table (the message lists the known ones) or malformed files.
    """
    path = tables_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown table {name!r}; available: {', '.join(list_tables())} "
            "(`unlearnkit reproduce --list`)"
        )
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"table spec {path} must be a YAML mapping")
    grid = _require(doc, "grid", dict, path)
    experiment = _require(doc, "experiment", dict, path)
    for key in ("forget", "arch", "seed"):
        if key in experiment:
            raise ValueError(f"table spec {path}: set {key!r} in grid:, not in experiment:")
    spec = TableSpec(
        name=name,
        title=str(_require(doc, "title", str, path)),
        paper=str(_require(doc, "paper", str, path)),
        notes=str(doc.get("notes", "")).strip(),
        experiment=experiment,
        forget=list(_require(grid, "forget", list, path)),
        seeds=[int(s) for s in _require(grid, "seeds", list, path)],
        archs=[str(a) for a in _require(grid, "archs", list, path)],
        gpu_archs=[str(a) for a in grid.get("gpu_archs", [])],
        rows=[str(r) for r in _require(doc, "rows", list, path)],
        columns=[str(c) for c in _require(doc, "columns", list, path)],
        checks=list(doc.get("checks", [])),
        smoke=dict(doc.get("smoke", {})),
        paper_comparison=doc.get("paper_comparison", True),
    )
    if not isinstance(spec.paper_comparison, bool):
        raise ValueError(f"table spec {path}: 'paper_comparison' must be true or false")
    for check in spec.checks:
        kinds = [k for k in _CHECK_KINDS if k in check]
        if len(kinds) != 1 or "row" not in check or "metric" not in check:
            raise ValueError(
                f"table spec {path}: each check needs row, metric and exactly one of {_CHECK_KINDS}, "
                f"got {check}"
            )
        if kinds[0] in ("within", "at_most_ratio") and "of_row" not in check:
            raise ValueError(f"table spec {path}: check {check} needs of_row")
        if kinds[0] == "among_smallest" and not (
            isinstance(check["among_smallest"], int) and check["among_smallest"] >= 1
        ):
            raise ValueError(f"table spec {path}: among_smallest must be an integer >= 1: {check}")
    spec.paper_cells = _load_cells(tables_dir() / f"{name}.csv", spec)
    return spec


def _load_cells(path: Path, spec: TableSpec) -> list[PaperCell]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: the header must be {','.join(CSV_COLUMNS)}")
        cells = []
        for line, rec in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if rec["table"] != spec.name:
                raise ValueError(f"{where}: table {rec['table']!r} is not {spec.name!r}")
            if rec["row"] not in spec.rows or rec["metric"] not in spec.columns:
                raise ValueError(
                    f"{where}: row {rec['row']!r} / metric {rec['metric']!r} not in the spec"
                )
            if rec["setting_matches"] not in ("yes", "no"):
                raise ValueError(f"{where}: setting_matches must be yes or no")
            if not rec["source"].strip():
                raise ValueError(f"{where}: source is empty; name the paper and its table")
            raw = rec["paper_value"].strip()
            value = float(raw) if raw else None
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{where}: paper_value must be a finite number or empty")
            allowed = ("yes", "no") if value is not None else ("",)
            if rec["primary"] not in allowed:
                raise ValueError(
                    f"{where}: primary must be {' or '.join(map(repr, allowed))} for "
                    f"{'a filled' if value is not None else 'an empty'} cell, got {rec['primary']!r}"
                )
            cells.append(
                PaperCell(
                    setting=rec["setting"],
                    row=rec["row"],
                    metric=rec["metric"],
                    value=value,
                    source=rec["source"],
                    setting_matches=rec["setting_matches"] == "yes",
                    note=rec["note"],
                    primary=None if value is None else rec["primary"] == "yes",
                )
            )
    return cells
