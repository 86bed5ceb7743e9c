"""Rich tables for the terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from depthlab import _registry as reg
from depthlab.claims.base import ClaimResult
from depthlab.store.base import RunRecord
from depthlab.train import RunState, TrainResult


def print_results(results: list[TrainResult]) -> None:
    """One row per run: state, final losses and accuracies, time."""
    table = Table(title="depthlab runs")
    for col in (
        "run",
        "state",
        "train loss",
        "train acc",
        "val acc",
        "test loss",
        "test acc",
        "steps",
        "time",
    ):
        table.add_column(col, justify="left" if col in ("run", "state") else "right", no_wrap=True)
    for r in results:
        m = r.metrics
        name = r.spec.name if r.spec is not None and r.spec.name else "run"
        state = (
            r.state.value
            if r.state is RunState.COMPLETE
            else (
                f"[red]{r.state.value}[/red] (step {r.diverged_step})"
                if r.state is RunState.DIVERGED
                else f"[red]{r.state.value}[/red]"
            )
        )
        table.add_row(
            name,
            state,
            _num(m.get("train_loss")),
            _pct(m.get("train_accuracy")),
            _pct(m.get("val_accuracy")),
            _num(m.get("test_loss")),
            _pct(m.get("test_accuracy")),
            str(r.steps),
            f"{r.seconds:.1f}s",
        )
    _console().print(table)


def print_diagnoses(diagnoses: list[dict]) -> None:
    """One row per network: verdict, P(trains) and the headline numbers of the probes that ran
    (a column no diagnosis has a number for is left out, so the table fits); then each
    finding."""
    table = Table(title="depthlab diagnose")
    names = (
        "E[h²] last/first",
        "‖∂L/∂h‖ first/last",
        "χ₁ theory",
        "χ₁ measured",
        "NTK cond.",
        "Hessian λ_max",
    )
    shown = [
        (name, probe, key)
        for name, (probe, key) in zip(names, HEADLINE, strict=True)
        if any(isinstance(_headline(d, probe, key), int | float) for d in diagnoses)
    ]
    for col in ("network", "verdict", "P(trains)", *(name for name, _, _ in shown)):
        table.add_column(
            escape(col), justify="left" if col in ("network", "verdict") else "right", no_wrap=True
        )
    for d in diagnoses:
        verdict = d["verdict"] if d["verdict"] == "trainable" else f"[red]{d['verdict']}[/red]"
        table.add_row(
            d["name"],
            verdict,
            _g(d.get("p_trains")),
            *(
                ("≥ " if _is_bound(d, probe, key) else "") + _g(_headline(d, probe, key))
                for _, probe, key in shown
            ),
        )
    console = _console()
    console.print(table)
    for d in diagnoses:
        for f in d["findings"]:
            console.print(
                f"[bold]{escape(d['name'])}[/bold]: {f['verdict']}: "
                f"{escape(f['evidence'])}. Advice: {escape(f['advice'])}",
                highlight=False,
            )
        for probe, reason in d.get("skipped", {}).items():
            console.print(
                f"[dim]{escape(d['name'])}: {probe} skipped: {escape(reason)}[/dim]",
                highlight=False,
            )
        for probe, error in d.get("failed", {}).items():
            console.print(
                f"[red]{escape(d['name'])}: {probe} failed: {escape(error)}[/red]",
                highlight=False,
            )


def print_predictions(diagnoses: list[dict], chance: float, reference: float) -> None:
    """The verdict at initialisation beside what training made of each network."""
    table = Table(
        title=f"predicted vs actual (trained: ≥ halfway from chance {chance:.1%} "
        f"to the reference {reference:.1%})"
    )
    for col in ("network", "verdict", "P(trains)", "decided by", "test acc", "trained", "agrees"):
        table.add_column(col, justify="left" if col in ("network", "verdict") else "right")
    for d in diagnoses:
        t = d.get("training", {})
        trained = t.get("trained")
        # an undecided answer counts by its lean, as the calibration scores it
        predicted = d["verdict"] == "trainable" or (
            d["verdict"] == "undecided" and (d.get("p_trains") or 0.0) >= 0.5
        )
        agrees = "-" if trained is None else ("yes" if predicted == trained else "[red]no[/red]")
        table.add_row(
            d["name"],
            d["verdict"] if predicted else f"[red]{escape(d['verdict'])}[/red]",
            f"{d.get('p_trains', float('nan')):.2f}",
            str(d.get("decided_by", "-")),
            _pct(t.get("test_accuracy")),
            {True: "yes", False: "no", None: "unclear"}[trained],
            agrees,
        )
    _console().print(table)


HEADLINE = (
    ("signal", "second_moment_ratio"),
    ("gradients", "delta_first_to_last"),
    ("meanfield", "chi1"),
    ("meanfield", "measured_chi1"),
    ("ntk", "condition_number"),
    ("hessian", "top_eigenvalues"),
)


def _headline(d: dict, probe: str, key: str) -> object:
    value = (d.get(probe) or {}).get(key)
    return value[0] if isinstance(value, list) and value else value


def _is_bound(d: dict, probe: str, key: str) -> bool:
    """A value the probe could only bound from below (the NTK's numerical floor)."""
    return bool((d.get(probe) or {}).get(f"{key}_is_bound"))


def _g(v: object) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:.3g}"


def print_registry(kind: str | None) -> None:
    import depthlab.claims  # noqa: F401  (fills the claim registry)
    from depthlab.presets import PRESETS

    registries = {
        "archs": reg.ARCHS,
        "datasets": reg.DATASETS,
        "activations": reg.ACTIVATIONS,
        "inits": reg.INITS,
        "norms": reg.NORMS,
        "techniques": reg.TECHNIQUES,
        "probes": reg.PROBES,
        "claims": reg.CLAIMS,
    }
    console = _console()
    for name in [kind] if kind else [*registries, "presets"]:
        table = Table(title=name, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        if name == "presets":
            for p, fn in PRESETS.items():
                table.add_row(p, (fn.__doc__ or "").strip().splitlines()[0])
        else:
            r = registries[name]
            for item in r.names():
                table.add_row(item, r.doc(item))
        console.print(table)


def print_runs(records: list[RunRecord]) -> None:
    """One row per stored run: name, state, final metrics, time, attempts, error."""
    table = Table(title=f"{len(records)} run(s)")
    for col in ("run", "state", "train loss", "test loss", "test acc", "time", "try", "error"):
        table.add_column(col, justify="left" if col in ("run", "state", "error") else "right")
    for r in records:
        m = r.metrics
        state = r.state.value if r.state is RunState.COMPLETE else f"[red]{r.state.value}[/red]"
        table.add_row(
            escape(str(r.spec.get("name") or r.run_id)),
            state,
            _num(m.get("train_loss")),
            _num(m.get("test_loss")),
            _pct(m.get("test_accuracy")),
            "-" if r.seconds is None else f"{r.seconds:.1f}s",
            str(r.attempt),
            escape(r.error[:80]),
        )
    _console().print(table)


def print_columns(columns: Sequence[str], rows: list[dict[str, Any]], title: str) -> None:
    """A table of exactly ``columns``; floats to four significant digits, blanks as ``-``."""
    table = Table(title=title)
    for col in columns:
        table.add_column(escape(col), overflow="fold")
    for row in rows:
        table.add_row(*(escape("-" if row.get(c) is None else _fmt(row.get(c))) for c in columns))
    _console().print(table)


def print_claims() -> None:
    """One row per claim: name, source paper, statement, whether it reproduces here."""
    from depthlab.claims import claim_names, get_claim

    table = Table(title="depthlab claims (depthlab reproduce NAME --quick)")
    for col in ("claim", "source", "statement", "here"):
        table.add_column(col, overflow="fold")
    for name in claim_names():
        cls = get_claim(name)
        here = "reproduces" if cls.reproduces else "[red]not reproduced[/red]"
        table.add_row(name, escape(cls.paper), escape(cls.statement), here)
    _console().print(table)


def print_claim_result(result: ClaimResult) -> None:
    """Measured against expected, check by check, and the outcome."""
    title = f"{result.claim}{' (negative control)' if result.control else ''}"
    table = Table(title=f"{title}: {'quick' if result.quick else 'full'} mode, seed {result.seed}")
    for col in ("check", "measured", "expected", ""):
        table.add_column(col, overflow="fold")
    for c in result.checks:
        table.add_row(
            escape(c.name),
            escape(_fmt(c.measured)),
            escape(c.expected),
            "[green]ok[/green]" if c.ok else "[red]FAIL[/red]",
        )
    console = _console()
    if result.evidence.table:
        rows = result.evidence.table
        detail = Table(title="measured")
        cols = list(dict.fromkeys(k for row in rows for k in row))
        for col in cols:
            detail.add_column(escape(str(col)), overflow="fold")
        for row in rows:
            detail.add_row(*(escape(_fmt(row.get(col, ""))) for col in cols))
        console.print(detail)
    console.print(table)
    for note in result.evidence.notes:
        console.print(escape(note))
    outcome = "HELD" if result.passed else "NOT HELD"
    console.print(f"{result.claim}: {outcome} in {result.seconds:.1f} s", highlight=False)
    if result.figure is not None:
        console.print(f"plot: {result.figure}", highlight=False)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _console() -> Console:
    # Piped output has no terminal width; do not squeeze tables into 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
