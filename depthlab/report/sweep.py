"""A static HTML report of a sweep: which networks trained, which did not, and why.

:func:`write_sweep_report` reads finished :class:`~depthlab.store.base.RunRecord` s (a store's
``runs()``) and writes ``index.html`` with PNG figures beside it. The page needs no network: no
scripts, fonts or style sheets from elsewhere, images are relative links, all text is escaped.

Runs are grouped into *configurations*: runs whose specs agree on every field but ``name`` and
``train.seed``. The fields that differ between runs are the sweep's *axes*. The page shows

* a summary (runs per state, compute time, the axes and their values);
* the trainability phase diagram: the metric over ``arch.depth`` × ``arch.width``, one panel
  per combination of the other axes (a line plot when only one of the two varies);
* for graph networks swept over depth and the data's edge homophily, the oversmoothing and
  heterophily phase diagrams (:mod:`depthlab.report.sweep_graph`);
* configurations ranked by the metric, mean ± sample standard deviation over seeds;
* train-loss curves (mean over seeds, thin lines per seed);
* the diagnose figures and verdicts of runs diagnosed at initialisation, and per configuration
  the predicted P(trains) beside what training reached (predicted vs actual);
* for runs with the ``optimality`` probe, the gap of each trained two-layer network to the
  convex optimum against width (:mod:`depthlab.report.sweep_optimality`);
* failed and diverged runs with their errors.

The metric defaults to ``test_accuracy`` (higher is better) when any run reports it, else
``train_loss`` (lower is better, log colour scale). A configuration's value is the mean over its
COMPLETE runs with a finite metric; a cell with none is marked ``div``, ``fail`` or ``n/a``.

This module writes the page's HTML; :mod:`depthlab.report.sweep_data` groups the runs and
:mod:`depthlab.report.sweep_figures` draws the PNGs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlab.report.html import STYLE
from depthlab.report.sweep_data import (
    DEPTH,
    WIDTH,
    Config,
    choose_metric,
    diagnosed,
    fixed_settings,
    flatten,
    format_value,
    group_configs,
    higher_is_better,
    loss_curve,
    probe_columns,
    probe_value,
    run_label,
    short_axis,
    varying_axes,
)
from depthlab.report.sweep_figures import (
    MAX_DIAGNOSED_PLOTTED,
    curve_figures,
    diagnose_figures,
    phase_heatmaps,
    phase_lines,
    prediction_figure,
)
from depthlab.report.sweep_graph import graph_section
from depthlab.report.sweep_optimality import optimality_section
from depthlab.store.base import RunRecord, RunState

__all__ = ["write_sweep_report"]

#: Rows of the ranking table.
MAX_RANKED = 100

_EXTRA_STYLE = """
.div { color: #a4161a; } .fail { color: #6a4c93; } .muted { color: #777; }
pre { white-space: pre-wrap; font-size: 0.8rem; margin: 0; text-align: left; }
td.l, th.l { text-align: left; }
"""


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h {minutes:02d}m {sec:04.1f}s" if hours else f"{minutes}m {sec:04.1f}s"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table; cells are already escaped. The first ``left`` columns align left."""

    def cls(i: int) -> str:
        return " class='l'" if i < left else ""

    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    return f"<img src='{_esc(path.name)}' alt='{_esc(alt)}'>"


# --------------------------------------------------------------------------- sections


def _summary(
    records: Sequence[RunRecord], axes: dict[str, list[str]], configs: list[Config], metric: str
) -> str:
    counts = [[_esc(s.value), str(sum(r.state == s for r in records))] for s in RunState]
    seconds = sum(r.seconds for r in records if r.seconds is not None and math.isfinite(r.seconds))
    seeds = sorted({r.seed for r in records})
    facts = [
        ["runs", str(len(records))],
        ["configurations", str(len(configs))],
        ["seeds", _esc(", ".join(map(str, seeds)))],
        ["compute time", _esc(_duration(seconds))],
        [
            "metric",
            _esc(f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)"),
        ],
    ]
    axis_rows = [[_esc(a), _esc(", ".join(v))] for a, v in axes.items()]
    fixed = fixed_settings(records, axes)
    return (
        "<h2 id='summary'>Summary</h2>"
        + _table(["", ""], facts)
        + _table(["state", "runs"], counts)
        + (
            _table(["axis", "values"], axis_rows)
            if axis_rows
            else "<p class='muted'>No field varies between the runs.</p>"
        )
        + (f"<p class='muted'>Fixed: {_esc(fixed)}</p>" if fixed else "")
    )


def _phase_section(
    configs: list[Config], axes: dict[str, list[str]], metric: str, out: Path
) -> str:
    head = "<h2 id='phase'>Trainability phase diagram</h2>"
    div = sum(c.status == "div" for c in configs)
    fail = sum(c.status == "fail" for c in configs)
    bad_runs = sum(c.count(RunState.DIVERGED) + c.count(RunState.FAILED) for c in configs)
    note = (
        f"<p>{len(configs)} configurations, of which <span class='div'>{div} diverged</span> "
        f"and <span class='fail'>{fail} failed</span> on every seed (hatched, marked div / "
        f"fail); {bad_runs} runs diverged or failed in all. Cells show the mean "
        f"{_esc(metric)} over the seeds that completed.</p>"
    )
    if DEPTH in axes and WIDTH in axes:
        paths = phase_heatmaps(configs, axes, metric, out)
    elif DEPTH in axes or WIDTH in axes:
        paths = phase_lines(configs, axes, metric, out)
    else:
        rows = [[_esc(c.label), _cell(c, metric)] for c in configs]
        return (
            head
            + "<p class='muted'>Neither arch.depth nor arch.width varies; each configuration:</p>"
            + _table(["configuration", _esc(metric)], rows)
        )
    return head + note + "".join(_img(p, "phase diagram") for p in paths)


def _cell(c: Config, metric: str) -> str:
    if c.status == "ok":
        return _esc(format_value(c.mean, metric))
    return f"<span class='{_esc(c.status)}'>{_esc(c.status)}</span>"


def _ranking(configs: list[Config], axes: dict[str, list[str]], metric: str) -> str:
    sign = -1.0 if higher_is_better(metric) else 1.0
    ranked = sorted(configs, key=lambda c: (not c.values, sign * c.mean if c.values else 0.0))
    rows = []
    for rank, c in enumerate(ranked[:MAX_RANKED], 1):
        value = _cell(c, metric)
        if c.status == "ok" and len(c.values) > 1:
            value += f" ± {_esc(format_value(c.std, metric))}"
        rows.append(
            [str(rank), *(_esc(c.value(a)) for a in axes), value, str(len(c.runs)), _esc(c.states)]
        )
    more = len(ranked) - MAX_RANKED
    return (
        "<h2 id='best'>Best configurations</h2>"
        + _table(
            [
                "rank",
                *(_esc(short_axis(a)) for a in axes),
                _esc(f"{metric} (mean ± std)"),
                "seeds",
                "states",
            ],
            rows,
            left=1 + len(axes),
        )
        + (f"<p class='muted'>{more} more configurations not shown.</p>" if more > 0 else "")
    )


def _diagnose_section(records: Sequence[RunRecord], out: Path) -> str:
    diagnoses = diagnosed(records)
    if not diagnoses:
        return ""
    figures = diagnose_figures(diagnoses, out)
    columns = probe_columns(diagnoses)
    header = ["run", "verdict", *(_esc(label) for _, _, label in columns), "findings"]
    rows = []
    for d in diagnoses:
        cls = "ok" if d.get("verdict") == "trainable" else "bad"
        findings = "; ".join(
            f"{f.get('verdict', '')}: {f.get('evidence', '')}"
            for f in d.get("findings", [])
            if isinstance(f, dict)
        )
        cells = [_esc(format_value(probe_value(d, p, k))) for p, k, _ in columns]
        rows.append(
            [
                _esc(d["name"]),
                f"<span class='{cls}'>{_esc(d.get('verdict', '?'))}</span>",
                *cells,
                _esc(findings or "–"),
            ]
        )
    plotted = (
        f"<p class='muted'>Figures show the first {MAX_DIAGNOSED_PLOTTED} of "
        f"{len(diagnoses)} diagnosed runs.</p>"
        if len(diagnoses) > MAX_DIAGNOSED_PLOTTED
        else ""
    )
    images = "".join(
        f"<h3>{_esc(name)}</h3>{_img(path, f'{name} plot')}" for name, path in figures.items()
    )
    return (
        "<h2 id='diagnose'>Diagnosis at initialisation</h2>"
        + _table(header, rows, left=2)
        + plotted
        + images
    )


def _prediction_section(
    configs: list[Config], axes: dict[str, list[str]], metric: str, out: Path
) -> str:
    """Per configuration: the verdicts and mean P(trains) at init beside the metric reached."""
    rows, points = [], []
    for c in configs:
        pairs = [
            (r, r.probes["diagnose"])
            for r in c.runs
            if isinstance(r.probes.get("diagnose"), dict)
            and isinstance(r.probes["diagnose"].get("p_trains"), int | float)
        ]
        if not pairs:
            continue
        diagnoses = [d for _, d in pairs]
        probs = [float(d["p_trains"]) for d in diagnoses]
        verdicts = sorted({str(d.get("verdict")) for d in diagnoses})
        for r, d in pairs:
            value = r.metrics.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                points.append((float(d["p_trains"]), float(value), str(d.get("verdict"))))
        rows.append(
            [
                *(_esc(c.value(a)) for a in axes),
                _esc(", ".join(verdicts)),
                _esc(f"{sum(probs) / len(probs):.2f}"),
                _esc(", ".join(sorted({str(d.get("decided_by", "?")) for d in diagnoses}))),
                _cell(c, metric),
            ]
        )
    if not rows:
        return ""
    figure = prediction_figure(points, metric, out / "predicted_vs_actual.png") if points else None
    return (
        "<h2 id='predicted'>Predicted vs actual</h2>"
        "<p class='muted'>The verdict and P(trains) at initialisation, for each run's own "
        f"training setup, beside the {_esc(metric)} training reached.</p>"
        + _table(
            [
                *(_esc(short_axis(a)) for a in axes),
                "verdict",
                "P(trains)",
                "decided by",
                _esc(metric),
            ],
            rows,
            left=len(axes) + 1,
        )
        + (_img(figure, "predicted vs actual") if figure else "")
    )


def _problems(records: Sequence[RunRecord]) -> str:
    parts = ["<h2 id='problems'>Failed and diverged runs</h2>"]
    states: tuple[tuple[RunState, str], ...] = (
        (RunState.FAILED, "failed"),
        (RunState.DIVERGED, "diverged"),
    )
    if any(r.state == RunState.STOPPED for r in records):  # a sweep with watch: true
        states += ((RunState.STOPPED, "stopped"),)
    for state, what in states:
        bad = [r for r in records if r.state == state]
        if not bad:
            parts.append(f"<p class='muted'>No run {what}.</p>")
            continue
        rows = [
            [
                _esc(run_label(r)),
                str(r.seed),
                str(_last_epoch(r)),
                f"<pre>{_esc(r.error or '(no error text)')}</pre>",
            ]
            for r in bad
        ]
        parts.append(f"<h3 class='{'fail' if what == 'failed' else 'div'}'>{len(bad)} {what}</h3>")
        parts.append(_table(["run", "seed", "last finite epoch", "error"], rows))
    return "".join(parts)


def _last_epoch(record: RunRecord) -> str:
    curve = loss_curve(record)
    return f"{curve[-1][0]:g}" if curve else "–"


# --------------------------------------------------------------------------- the page


def write_sweep_report(
    records: Sequence[RunRecord],
    out: str | Path,
    *,
    title: str = "depthlab sweep report",
    metric: str | None = None,
) -> Path:
    """Write ``index.html`` and its PNG figures into ``out``; return the page's path.

    ``metric`` is a final metric name (``test_accuracy``, ``val_loss``, ...); by default
    ``test_accuracy`` if any run has it, else ``train_loss``. See the module doc for the page.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = list(records)
    metric = choose_metric(records, metric)
    if records:
        axes = varying_axes([flatten(r.spec) for r in records])
        configs = group_configs(records, list(axes), metric)
        body = _sections(records, axes, configs, metric, out)
    else:
        body = "<h2 id='summary'>Summary</h2><p>No runs: the store is empty.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>{STYLE}{_EXTRA_STYLE}</style></head><body>
<h1>{_esc(title)}</h1>
{body}
<p class="skip">Written by <code>depthlab.report.sweep.write_sweep_report</code>.</p>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _sections(
    records: list[RunRecord],
    axes: dict[str, list[str]],
    configs: list[Config],
    metric: str,
    out: Path,
) -> str:
    return "\n".join(
        [
            _summary(records, axes, configs, metric),
            _phase_section(configs, axes, metric, out),
            graph_section(configs, axes, metric, out),
            _ranking(configs, axes, metric),
            _curves_section(configs, axes, out),
            _diagnose_section(records, out),
            _prediction_section(configs, axes, metric, out),
            optimality_section(records, configs, axes, out),
            _problems(records),
        ]
    )


def _curves_section(configs: list[Config], axes: dict[str, list[str]], out: Path) -> str:
    paths = curve_figures(configs, axes, out)
    head = "<h2 id='curves'>Loss curves</h2>"
    if not paths:
        return head + "<p class='muted'>No run has a finite training loss to plot.</p>"
    return head + "".join(_img(p, "training loss curves") for p in paths)
