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
      - {row: retrain, metric: forget/ua, request: "worst_case 10 %",
         of_request: "random 10 % (seed 0)", at_most_ratio: 0.5, claim: "..."}
      - {row: RandomLabel, metric: gap/avg, request: "worst_case 10 %",
         of_request: "random 10 % (seed 0)", at_least_ratio: 2.0, claim: "..."}
    smoke:               # overrides of --smoke (a tiny run of the whole path, for CI)
      data: {train_limit: 2000, test_limit: 500}
      training: {epochs: 1}
      seeds: [0]
      max_requests: 1

A check compares the row's mean over seeds of its per-seed mean over the forget requests, or
with ``request:`` (a request's label, see below) the row's mean over seeds in that request alone.
``within``, ``at_most_ratio`` (row / reference <= value) and ``at_least_ratio`` (>= value) need a
reference: ``of_row`` (another row, in the same request) and/or ``of_request`` (the same row, or
``of_row``, in another request; it needs ``request``). ``among_smallest`` with ``request`` ranks
within that request.

A forget request is named by its label, the one the report prints: ``name:`` of the
``grid.forget`` entry when given, else :attr:`unlearnkit.data.ForgetSpec.label` (e.g. ``random
10 % (seed 0)``, ``worst_case 10 %``, ``class 0``); the labels of a grid must differ.

``<name>.csv`` — the paper's numbers, one cell per line, columns
``table,setting,row,metric,paper_value,source,primary,setting_matches,note``, optionally with a
``request`` column after ``setting``
(``table,setting,request,row,metric,paper_value,source,primary,setting_matches,note``):
``setting`` is the arch the cell is compared with; ``request``, when not empty, is the label of
the forget request whose mean ± std over seeds the cell is compared with (empty or absent: the
mean over the table's requests, the main table's cell); ``paper_value`` is in the units our
table prints (percent for accuracies and attack rates, seconds for times) or empty when the
number could not be read (the report then prints "n/a (not available offline)"); ``source``
names the paper and table and, for a filled cell, where the number was read (URL or repository
file); ``primary`` is ``yes`` (the paper or its authors' repository) or ``no`` (a third party's
report) for a filled cell and empty for an empty one; ``setting_matches`` is ``yes`` or ``no``
and ``note`` says what differs (data set, architecture, schedule). At most one cell per
(setting, request, row, metric).

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
#: The header of a CSV whose cells may name a forget request (the optional ``request`` column).
CSV_COLUMNS_WITH_REQUEST = (*CSV_COLUMNS[:2], "request", *CSV_COLUMNS[2:])
_CHECK_KINDS = (
    "at_most",
    "at_least",
    "within",
    "at_most_ratio",
    "at_least_ratio",
    "among_smallest",
)
#: The check kinds that compare the row with a reference (of_row and/or of_request).
_REFERENCE_KINDS = ("within", "at_most_ratio", "at_least_ratio")


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
        request: the label of the forget request the cell is compared with, or None for the
            mean over the table's requests.
    """

    setting: str
    row: str
    metric: str
    value: float | None
    source: str
    setting_matches: bool
    note: str
    primary: bool | None = None
    request: str | None = None


@dataclass
class TableSpec:
    """A parsed table spec plus its paper cells (see the module docstring for the format).

    ``requests`` are the labels of the ``grid.forget`` entries, in order (the report's request
    names, used by the CSV's ``request`` column and the checks' ``request``/``of_request``).

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
    requests: list[str] = field(default_factory=list)

    @property
    def filled_cells(self) -> list[PaperCell]:
        """The paper cells that hold a number."""
        return [c for c in self.paper_cells if c.value is not None]

    def paper_cell(
        self, setting: str, row: str, metric: str, request: str | None = None
    ) -> PaperCell | None:
        """The paper's cell for (arch, row, metric) and forget request (None: the mean over the
        requests), if the CSV has one."""
        for cell in self.paper_cells:
            if (cell.setting, cell.request, cell.row, cell.metric) == (
                setting,
                request,
                row,
                metric,
            ):
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
    spec.requests = _request_labels(spec.forget, path)
    for check in spec.checks:
        _check_check(check, spec.requests, path)
    spec.paper_cells = _load_cells(tables_dir() / f"{name}.csv", spec)
    return spec


def _request_labels(forget: list[Any], path: Path) -> list[str]:
    """The labels of the grid's forget requests (distinct, else a ValueError)."""
    from unlearnkit.data import ForgetSpec

    labels = []
    for entry in forget:
        if not isinstance(entry, dict):
            raise ValueError(
                f"table spec {path}: each grid.forget entry must be a mapping, got {entry!r}"
            )
        try:
            labels.append(ForgetSpec(**entry).label)
        except TypeError as err:
            raise ValueError(f"table spec {path}: bad grid.forget entry {entry}: {err}") from None
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"table spec {path}: grid.forget has several requests labelled "
            f"{', '.join(map(repr, repeated))}; give each a distinct name: (e.g. name: req_a)"
        )
    return labels


def _valid_requests(requests: list[str]) -> str:
    return ", ".join(map(repr, requests)) or "none (grid.forget is empty)"


def _check_check(check: Any, requests: list[str], path: Path) -> None:
    """Validate one trend check of the spec (see the module docstring)."""
    if not isinstance(check, dict):
        raise ValueError(f"table spec {path}: each check must be a mapping, got {check!r}")
    kinds = [k for k in _CHECK_KINDS if k in check]
    if len(kinds) != 1 or "row" not in check or "metric" not in check:
        raise ValueError(
            f"table spec {path}: each check needs row, metric and exactly one of {_CHECK_KINDS}, "
            f"got {check}"
        )
    kind = kinds[0]
    for key in ("request", "of_request"):
        if key in check and check[key] not in requests:
            raise ValueError(
                f"table spec {path}: check {check} names {key} {check[key]!r}, which is not a "
                f"forget request of grid.forget; valid requests: {_valid_requests(requests)}"
            )
    if "of_request" in check:
        if kind not in _REFERENCE_KINDS:
            raise ValueError(
                f"table spec {path}: check {check}: of_request needs a comparison with a "
                f"reference ({', '.join(_REFERENCE_KINDS)}), not {kind}"
            )
        if "request" not in check:
            raise ValueError(
                f"table spec {path}: check {check} has of_request but no request; name the "
                "request the row is read in (request: ...)"
            )
        if (
            check["of_request"] == check["request"]
            and check.get("of_row", check["row"]) == (check["row"])
        ):
            raise ValueError(
                f"table spec {path}: check {check} compares the row with itself; give another "
                "of_request or an of_row"
            )
    if kind in _REFERENCE_KINDS and "of_row" not in check and "of_request" not in check:
        raise ValueError(f"table spec {path}: check {check} needs of_row or of_request")
    if kind == "among_smallest" and not (
        isinstance(check["among_smallest"], int) and check["among_smallest"] >= 1
    ):
        raise ValueError(f"table spec {path}: among_smallest must be an integer >= 1: {check}")


def _load_cells(path: Path, spec: TableSpec) -> list[PaperCell]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) not in (CSV_COLUMNS, CSV_COLUMNS_WITH_REQUEST):
            raise ValueError(
                f"{path}: the header must be {','.join(CSV_COLUMNS)} or, with a request column, "
                f"{','.join(CSV_COLUMNS_WITH_REQUEST)}"
            )
        cells = []
        seen: set[tuple[str, str | None, str, str]] = set()
        for line, rec in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if rec["table"] != spec.name:
                raise ValueError(f"{where}: table {rec['table']!r} is not {spec.name!r}")
            if rec["row"] not in spec.rows or rec["metric"] not in spec.columns:
                raise ValueError(
                    f"{where}: row {rec['row']!r} / metric {rec['metric']!r} not in the spec"
                )
            request = (rec.get("request") or "").strip() or None
            if request is not None and request not in spec.requests:
                raise ValueError(
                    f"{where}: request {request!r} is not a forget request of the spec's "
                    f"grid.forget; valid requests: {_valid_requests(spec.requests)} "
                    "(or leave it empty for the mean over the requests)"
                )
            key = (rec["setting"], request, rec["row"], rec["metric"])
            if key in seen:
                raise ValueError(
                    f"{where}: a second cell for setting {key[0]!r}, request {request!r}, row "
                    f"{key[2]!r}, metric {key[3]!r}; keep one"
                )
            seen.add(key)
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
                    request=request,
                )
            )
    return cells
