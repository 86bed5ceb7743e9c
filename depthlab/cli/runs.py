"""``depthlab runs``: a store's runs as a table, CSV, JSON lines or parquet.

Every format but ``table`` writes the columns of ``depthlab.load_runs(store).to_pandas()``
(see :mod:`depthlab.results`), so a file written here and a DataFrame read in Python agree.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from depthlab.cli.errors import fail

FORMATS = ("table", "csv", "jsonl", "parquet")


def runs(
    store: Annotated[Path, typer.Option(help="The run store (SQLite file).")],
    state: Annotated[
        str | None,
        typer.Option(
            help="Only runs in this state: PENDING, RUNNING, COMPLETE, FAILED, DIVERGED, STOPPED."
        ),
    ] = None,
    format: Annotated[  # noqa: A002 - the option's name
        str,
        typer.Option(
            "--format", help="table | csv | jsonl | parquet (parquet needs --out and pyarrow)."
        ),
    ] = "table",
    csv: Annotated[bool, typer.Option("--csv", help="Same as --format csv.")] = False,
    sweep: Annotated[
        Path | None,
        typer.Option(help="Only the runs of this sweep file; its axes are the axis columns."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="Columns to keep, in order, comma-separated: arch.depth,state,..."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout (parquet: required).")
    ] = None,
) -> None:
    """List the runs in a store: axes, state, verdict, final metrics, probe numbers, time, error.

    One row per run. --format csv, jsonl and parquet write every column of
    depthlab.load_runs(STORE).to_pandas(); the table shows the main ones."""
    from depthlab.results import load_runs
    from depthlab.train import RunState

    chosen = "csv" if csv else format
    if chosen not in FORMATS:
        fail(f"unknown format {chosen!r}; choices: {', '.join(FORMATS)}")
    if csv and format not in ("table", "csv"):
        fail(f"--csv and --format {format} disagree; give one of them")
    picked = None
    if state is not None:
        valid = [s.value for s in RunState]
        if state.upper() not in valid:
            fail(f"unknown state {state!r}; choices: {', '.join(valid)}")
        picked = RunState(state.upper())
    if not store.is_file():
        fail(f"no run store at {str(store)!r} (depthlab sweep SWEEP.yaml --store FILE makes one)")
    if chosen == "parquet":
        if out is None:
            fail("--format parquet writes a binary file: give --out FILE.parquet")
        from depthlab._optional import require

        require("pyarrow", "--format parquet")  # before any work, as one line
    table = load_runs(store, sweep, state=picked)
    if columns is not None:
        table = table.select([c.strip() for c in columns.split(",") if c.strip()])
    if chosen == "table":
        _print_table(table, full=columns is not None)
        return
    if chosen == "parquet":
        assert out is not None
        table.write_parquet(out)
        print(f"wrote {len(table)} run(s) to {out}", file=sys.stderr)
        return
    write = table.write_csv if chosen == "csv" else table.write_jsonl
    if out is None:
        write(sys.stdout)
        return
    with out.open("w", newline="") as fh:
        write(fh)
    print(f"wrote {len(table)} run(s) to {out}", file=sys.stderr)


def _print_table(table: object, *, full: bool) -> None:
    """The chosen columns (``--columns``), or the classic summary of each run."""
    from depthlab.cli.tables import print_columns, print_runs
    from depthlab.results import Runs

    assert isinstance(table, Runs)
    if full:
        print_columns(table.columns, table.to_dicts(), title=f"{len(table)} run(s)")
    else:
        print_runs(list(table.records))
