"""The sweep report's width-vs-gap section: where training reaches the global optimum.

Runs of a sweep with the ``optimality`` probe carry, under ``probes["optimality"]``, the
objective their two-layer network reached on the penalised objective and the convex optimum of
the same data (Pilanci & Ergen 2020; ``depthlab.convex.gap``). The section plots the gap,
trained − optimum, against ``arch.width``, one dot per run and the mean over seeds per width
(one line per combination of the other axes), and tabulates every run with whether its optimum
is certified. An uncertified optimum is an upper bound on the true one, so its gap is a lower
bound on the true gap; those points are drawn hollow and say so.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlab.report.sweep_data import WIDTH, Config, format_value, short_axis
from depthlab.store.base import RunRecord

__all__ = ["GapPoint", "gap_points", "optimality_section", "width_gap_figure"]

#: (width, gap, certified, label of the other axes, run name)
GapPoint = tuple[int, float, bool, str, str]


def _width(record: RunRecord) -> int | None:
    width = record.spec.get("arch", {}).get("width")
    if isinstance(width, list | tuple):
        width = width[0] if len(width) == 1 else None
    return int(width) if isinstance(width, int) else None


def gap_points(configs: list[Config], axes: dict[str, list[str]]) -> list[GapPoint]:
    """One point per run whose optimality record has a finite gap and a single width."""
    others = [a for a in axes if a != WIDTH]
    points: list[GapPoint] = []
    for c in configs:
        label = ", ".join(f"{short_axis(a)}={c.value(a)}" for a in others) or "all runs"
        for r in c.runs:
            opt = r.probes.get("optimality")
            width = _width(r)
            if not isinstance(opt, dict) or width is None:
                continue
            gap = opt.get("gap")
            if isinstance(gap, int | float) and math.isfinite(gap):
                name = str(r.spec.get("name") or r.run_id)
                points.append((width, float(gap), bool(opt.get("certified")), label, name))
    return points


def width_gap_figure(points: list[GapPoint], path: Path) -> Path:
    """Gap against width: dots per run (filled when certified), the mean per width as a line."""
    from depthlab.report.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), layout="constrained")
    labels = sorted({p[3] for p in points})
    for i, label in enumerate(labels):
        colour = f"C{i % 10}"
        mine = [p for p in points if p[3] == label]
        widths = sorted({p[0] for p in mine})
        means = [statistics.fmean(p[1] for p in mine if p[0] == w) for w in widths]
        ax.plot(widths, means, "-", color=colour, lw=1.2, label=label.replace("$", r"\$"))
        for certified in (True, False):
            sel = [p for p in mine if p[2] == certified]
            if sel:
                ax.scatter(
                    [p[0] for p in sel],
                    [p[1] for p in sel],
                    s=20,
                    facecolors=colour if certified else "none",
                    edgecolors=colour,
                )
    ax.axhline(0.0, color="#777", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_yscale("symlog", linthresh=1e-6)
    if min(p[1] for p in points) >= 0:
        ax.set_ylim(bottom=0.0)  # no negative gap to show: keep the axis to what is there
    ax.set_xlabel("width (hidden neurons)")
    ax.set_ylabel("gap: trained − optimum")
    ax.set_title("width vs gap (hollow: optimum not certified)", fontsize=9)
    if len(labels) > 1:
        ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _number(value: Any) -> str:
    return format_value(float(value)) if isinstance(value, int | float) else "–"


def optimality_section(
    records: Sequence[RunRecord], configs: list[Config], axes: dict[str, list[str]], out: Path
) -> str:
    """The section's HTML ('' when no run carries an optimality record)."""
    carrying = [r for r in records if isinstance(r.probes.get("optimality"), dict)]
    if not carrying:
        return ""
    points = gap_points(configs, axes)
    rows = []
    for r in carrying:
        opt: dict[str, Any] = r.probes["optimality"]
        name = html.escape(str(r.spec.get("name") or r.run_id))
        if "error" in opt:
            rows.append(
                f"<tr><td class='l'>{name}</td><td>{_width(r) or '–'}</td>"
                f"<td colspan='4' class='l fail'>{html.escape(str(opt['error']))}</td></tr>"
            )
            continue
        cert = "yes" if opt.get("certified") else "no (upper bound only)"
        cells = [_number(opt.get(k)) for k in ("trained_objective", "upper_bound", "gap")]
        rows.append(
            f"<tr><td class='l'>{name}</td><td>{_width(r) or '–'}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + f"<td>{cert}</td></tr>"
        )
    header = (
        "<tr><th class='l'>run</th><th>width</th><th>trained objective</th>"
        "<th>convex optimum</th><th>gap</th><th>certified</th></tr>"
    )
    figure = ""
    if points:
        path = width_gap_figure(points, out / "width_gap.png")
        figure = f"<img src='{html.escape(path.name)}' alt='width vs optimality gap'>"
    else:
        figure = "<p class='muted'>No run has a finite gap to plot.</p>"
    return (
        "<h2 id='optimality'>Width vs optimality gap</h2>"
        "<p>Each two-layer network trained on (1/(2N))‖f(X) − y‖² + (λ/2)‖θ‖², λ = the run's "
        "weight decay, against the global optimum of its convex program on the same data "
        "(Pilanci &amp; Ergen 2020). Gap 0: training reached the optimum.</p>"
        + figure
        + f"<table>{header}{''.join(rows)}</table>"
    )
