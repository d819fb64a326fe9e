"""Paper-table reproduction: table specs (YAML) and paper targets (CSV) shipped as package data,
run by ``unlearnkit reproduce <table>`` through the same code as ``unlearnkit run``."""

from unlearnkit.reproduce.runner import (
    ReproduceOptions,
    aggregate,
    format_report,
    run_table,
)
from unlearnkit.reproduce.tables import TableSpec, list_tables, load_table

__all__ = [
    "ReproduceOptions",
    "TableSpec",
    "aggregate",
    "format_report",
    "list_tables",
    "load_table",
    "run_table",
]
