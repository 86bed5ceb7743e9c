"""The sweep report's graph section: oversmoothing and heterophily phase diagrams.

Shown when the runs vary the data's edge homophily (``data.homophily``, the CSBM's) and the
depth. The *oversmoothing* diagram draws the metric over depth, one line per architecture
(the combinations of the other axes, such as ``arch.family``), one panel per homophily: a
curve that falls with depth is a network that oversmooths. The *heterophily* diagram is a
depth × homophily heatmap per architecture: which families keep their accuracy on the
heterophilic (low-homophily) side.
"""

from __future__ import annotations

import html
from pathlib import Path

from depthlab.report.figures import pyplot
from depthlab.report.sweep_data import DEPTH, Config, format_value, short_axis
from depthlab.report.sweep_figures import phase_heatmaps

HOMOPHILY = "data.homophily"

__all__ = ["HOMOPHILY", "graph_section"]


def _plain(text: str) -> str:
    return text.replace("$", r"\$")


def oversmoothing_lines(
    configs: list[Config], axes: dict[str, list[str]], metric: str, out: Path
) -> Path:
    """Metric over depth, one line per combination of the axes other than depth and homophily,
    one panel per homophily value."""
    plt = pyplot()
    levels = axes[HOMOPHILY]
    depths = axes[DEPTH]
    others = [a for a in axes if a not in (DEPTH, HOMOPHILY)]
    ncols = min(4, len(levels))
    nrows = -(-len(levels) // ncols)
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, layout="constrained"
    )
    flat = [ax for row in grid for ax in row]
    for ax, level in zip(flat, levels, strict=False):
        lines: dict[tuple[str, ...], list[tuple[int, float]]] = {}
        for c in configs:
            if c.value(HOMOPHILY) != level or not c.values:
                continue
            key = tuple(c.value(a) for a in others)
            lines.setdefault(key, []).append((depths.index(c.value(DEPTH)), c.mean))
        for key, points in sorted(lines.items()):
            points.sort()
            label = ", ".join(f"{short_axis(a)}={v}" for a, v in zip(others, key, strict=True))
            ax.plot(*zip(*points, strict=True), marker="o", label=_plain(label or metric))
        ax.set_xticks(range(len(depths)), depths)
        ax.set_xlabel("depth")
        ax.set_ylabel(_plain(metric))
        ax.set_title(f"edge homophily {level}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in flat[len(levels) :]:
        ax.axis("off")
    if flat[0].get_legend_handles_labels()[0]:
        flat[0].legend(fontsize=7)
    fig.suptitle(_plain(f"Oversmoothing: {metric} over depth"))
    path = out / "oversmoothing.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def graph_section(configs: list[Config], axes: dict[str, list[str]], metric: str, out: Path) -> str:
    """The HTML of the graph section, or "" when homophily and depth do not both vary."""
    if HOMOPHILY not in axes or DEPTH not in axes:
        return ""
    lines = oversmoothing_lines(configs, axes, metric, out)
    heat = phase_heatmaps(
        configs,
        axes,
        metric,
        out,
        rows=DEPTH,
        cols=HOMOPHILY,
        stem="heterophily",
        title=f"Heterophily: {metric} over depth × edge homophily",
    )
    best = max((c for c in configs if c.values), key=lambda c: c.mean, default=None)
    note = (
        f"<p>Best: {html.escape(best.label)} ({html.escape(format_value(best.mean, metric))}).</p>"
        if best is not None
        else ""
    )
    images = "".join(
        f"<img src='{html.escape(p.name)}' alt='{html.escape(alt)}'>"
        for p, alt in [(lines, "oversmoothing diagram")]
        + [(h, "heterophily diagram") for h in heat]
    )
    return (
        "<h2 id='graphs'>Graph networks: oversmoothing and heterophily</h2>"
        "<p>Left to right, depth grows; a curve that falls with depth oversmooths. The heatmaps "
        "show each architecture over depth and the data's edge homophily (low: neighbours "
        "tend to differ).</p>" + note + images
    )
