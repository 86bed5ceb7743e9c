"""The sweep report's PNG figures: phase diagrams, loss curves and the diagnose figures.

The phase diagram is a depth × width heatmap of the metric, one panel per combination of the
other axes (a line plot when only one of depth and width varies). Loss curves show the train
loss against epoch, mean over seeds with thin lines per seed. A figure holds at most
:data:`PANELS_PER_FIGURE` panels; more are split over ``phase_1.png``, ``phase_2.png``, ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from depthlab.report.figures import FIGURES, pyplot
from depthlab.report.sweep_data import (
    DEPTH,
    WIDTH,
    Config,
    Key,
    format_value,
    higher_is_better,
    loss_curve,
    mean_curve,
    short_axis,
)
from depthlab.store.base import RunState

__all__ = [
    "MAX_DIAGNOSED_PLOTTED",
    "PANELS_PER_FIGURE",
    "curve_figures",
    "diagnose_figures",
    "phase_heatmaps",
    "phase_lines",
]

#: Panels per figure before a figure is split (phase diagrams and loss curves).
PANELS_PER_FIGURE = 12
#: Runs whose diagnoses share the diagnose figures (all of them are in the verdict table).
MAX_DIAGNOSED_PLOTTED = 10

Panel = tuple[Key, list[Config]]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _panels(configs: list[Config], panel_axes: list[str]) -> dict[Key, list[Config]]:
    """Configurations split by their values on ``panel_axes`` (in grid order)."""
    panels: dict[Key, list[Config]] = {}
    for c in configs:
        panels.setdefault(tuple(c.value(a) for a in panel_axes), []).append(c)
    return panels


def _plain(text: str) -> str:
    """Text for matplotlib: a ``$`` in a user's value is a dollar sign, not mathtext."""
    return text.replace("$", r"\$")


def _panel_title(panel_axes: list[str], key: Key) -> str:
    return _plain(", ".join(f"{short_axis(a)}={v}" for a, v in zip(panel_axes, key, strict=True)))


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _grid(plt: Any, n: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, layout="constrained"
    )
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _panel_figures(
    plt: Any,
    panels: list[Panel],
    out: Path,
    stem: str,
    size: tuple[float, float],
    draw: Callable[[Any, Key, list[Config]], Any],
    title: str,
    finish: Callable[[Any, list[Any], list[Any]], None] | None = None,
) -> list[Path]:
    """Grids of panels, :data:`PANELS_PER_FIGURE` a figure, saved as ``{stem}[_n].png``.

    ``draw(ax, key, configs)`` fills one panel of ``size`` inches; ``finish(fig, axes, drawn)``
    gets the figure, its panels and what ``draw`` returned for each, before the title is set.
    """
    paths = []
    for n, chunk in enumerate(_chunks(panels, PANELS_PER_FIGURE)):
        fig, flat = _grid(plt, len(chunk), size)
        drawn = [draw(ax, key, cells) for ax, (key, cells) in zip(flat, chunk, strict=True)]
        if finish is not None:
            finish(fig, flat, drawn)
        fig.suptitle(title)
        name = f"{stem}_{n + 1}.png" if len(panels) > PANELS_PER_FIGURE else f"{stem}.png"
        paths.append(_save(fig, plt, out / name))
    return paths


def _norm(configs: list[Config], metric: str) -> Any:
    from matplotlib.colors import LogNorm, Normalize

    values = [c.mean for c in configs if c.values]
    if not higher_is_better(metric) and "loss" in metric:
        positive = [v for v in values if v > 0]
        if positive and min(positive) < max(positive):
            return LogNorm(min(positive), max(positive))
        if positive:
            return LogNorm(min(positive) / 2, min(positive) * 2)
    if values and min(values) < max(values):
        return Normalize(min(values), max(values))
    centre = values[0] if values else 0.0
    return Normalize(centre - 0.5, centre + 0.5)


def phase_heatmaps(
    configs: list[Config],
    axes: dict[str, list[str]],
    metric: str,
    out: Path,
    *,
    rows: str = DEPTH,
    cols: str = WIDTH,
    stem: str = "phase",
    title: str = "",
) -> list[Path]:
    """``rows`` × ``cols`` heatmaps of the metric (depth × width unless asked otherwise), one
    panel per combination of the other axes."""
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = pyplot()
    panel_axes = [a for a in axes if a not in (rows, cols)]
    depths, widths = axes[rows], axes[cols]
    norm = _norm(configs, metric)
    cmap = plt.get_cmap("viridis" if higher_is_better(metric) else "viridis_r")
    cmap = cmap.with_extremes(bad="#f2f2f2")

    def draw(ax: Any, key: Key, cells: list[Config]) -> Any:
        grid = [[math.nan] * len(widths) for _ in depths]
        by_cell = {(c.value(rows), c.value(cols)): c for c in cells}
        for i, d in enumerate(depths):
            for j, w in enumerate(widths):
                c = by_cell.get((d, w))
                if c is not None and c.values:
                    grid[i][j] = c.mean
        image = ax.imshow(
            np.ma.masked_invalid(np.array(grid, dtype=float)),
            cmap=cmap,
            norm=norm,
            aspect="auto",
            origin="lower",
        )
        for (d, w), c in by_cell.items():
            i, j = depths.index(d), widths.index(w)
            if c.status != "ok":
                colour = {"div": "#a4161a", "fail": "#6a4c93"}.get(c.status, "#999999")
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", ec=colour, lw=0)
                )
                text = c.status
            else:
                text = format_value(c.mean, metric).replace("–", "")
                bad = c.count(RunState.DIVERGED) + c.count(RunState.FAILED)
                text += f"\n({bad} bad)" if bad else ""
            rgba = cmap(norm(c.mean)) if c.values else (1, 1, 1, 1)
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
        rotation = 30 if len(widths) > 4 else 0
        ax.set_xticks(range(len(widths)), [_plain(w) for w in widths], rotation=rotation)
        ax.set_yticks(range(len(depths)), [_plain(d) for d in depths])
        ax.set_xlabel(short_axis(cols))
        ax.set_ylabel(short_axis(rows))
        ax.set_title(_panel_title(panel_axes, key) or _plain(metric), fontsize=9)
        return image

    def colorbar(fig: Any, flat: list[Any], images: list[Any]) -> None:
        if images:
            fig.colorbar(images[-1], ax=flat, label=_plain(metric), shrink=0.8)

    panels = list(_panels(configs, panel_axes).items())
    size = (1.2 + 0.9 * len(widths), 1.0 + 0.55 * len(depths))
    title = _plain(title or f"Trainability: {metric} over {short_axis(rows)} × {short_axis(cols)}")
    return _panel_figures(plt, panels, out, stem, size, draw, title, colorbar)


def phase_lines(
    configs: list[Config], axes: dict[str, list[str]], metric: str, out: Path
) -> list[Path]:
    """Only one of depth and width varies: the metric along it, one line per other combination."""
    plt = pyplot()
    along = DEPTH if DEPTH in axes else WIDTH
    ticks = axes[along]
    line_axes = [a for a in axes if a != along]
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for key, cells in _panels(configs, line_axes).items():
        xs = [ticks.index(c.value(along)) for c in cells]
        ys = [c.mean for c in cells]
        (line,) = ax.plot(xs, ys, marker="o", label=_panel_title(line_axes, key) or _plain(metric))
        for x, c in zip(xs, cells, strict=True):
            if c.status != "ok":
                ax.annotate(
                    c.status,
                    (x, 0.02),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    color=line.get_color(),
                    fontsize=8,
                )
    ax.set_xticks(range(len(ticks)), [_plain(t) for t in ticks])
    ax.set_xlabel(short_axis(along))
    ax.set_ylabel(_plain(metric))
    if "loss" in metric and any(c.mean > 0 for c in configs if c.values):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0] and line_axes:
        ax.legend(fontsize=8)
    ax.set_title(_plain(f"{metric} over {short_axis(along)}"))
    return [_save(fig, plt, out / "phase.png")]


def curve_figures(configs: list[Config], axes: dict[str, list[str]], out: Path) -> list[Path]:
    """Train loss against epoch; one panel per combination of the axes other than depth/width."""
    plt = pyplot()
    panel_axes = [a for a in axes if a not in (DEPTH, WIDTH)]
    line_axes = [a for a in axes if a in (DEPTH, WIDTH)]
    panels = [
        (key, cells)
        for key, cells in _panels(configs, panel_axes).items()
        if any(loss_curve(r) for c in cells for r in c.runs)
    ]
    if not panels:
        return []

    def draw(ax: Any, key: Key, cells: list[Config]) -> None:
        colours = plt.get_cmap("viridis")
        drew = False
        for k, c in enumerate(cells):
            colour = colours(k / max(len(cells) - 1, 1) * 0.9)
            curves = [curve for r in c.runs if (curve := loss_curve(r))]
            for curve in curves if len(curves) > 1 else []:
                ax.plot(*zip(*curve, strict=True), color=colour, lw=0.6, alpha=0.35)
            mean = mean_curve(curves)
            if mean:
                label = _panel_title(line_axes, tuple(c.value(a) for a in line_axes))
                marker = "." if len(mean) <= 30 else None
                ax.plot(
                    *zip(*mean, strict=True),
                    color=colour,
                    lw=1.6,
                    marker=marker,
                    label=label or None,
                )
                drew = True
            for r in c.runs:  # where a diverged run stopped being finite
                curve = loss_curve(r)
                if r.state == RunState.DIVERGED and curve:
                    ax.plot(*curve[-1], marker="x", color="#a4161a", ms=8)
        if drew:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax.set_title(_panel_title(panel_axes, key) or "all configurations", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)

    title = "Training loss (mean over seeds; × where a run diverged)"
    return _panel_figures(plt, panels, out, "curves", (5.0, 3.6), draw, title)


def diagnose_figures(diagnoses: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """The diagnose figures of the first :data:`MAX_DIAGNOSED_PLOTTED` diagnoses, by name."""
    written = {}
    shown = diagnoses[:MAX_DIAGNOSED_PLOTTED]
    for name, figure in FIGURES.items():
        try:
            path = figure(shown, out / f"diagnose_{name}.png")
        except (KeyError, TypeError, ValueError, IndexError):
            path = None  # a diagnosis from another version of a probe: its table row stays
        if path is not None:
            written[name] = path
    return written


def prediction_figure(points: list[tuple[float, float, str]], metric: str, path: Path) -> Path:
    """P(trains) at initialisation against the metric training reached, one dot per run
    (colour: the verdict was *trainable* or not)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
    for ok, colour, label in ((True, "#2a9d8f", "trainable"), (False, "#a4161a", "won't train")):
        xs = [p for p, _, v in points if (v == "trainable") == ok]
        ys = [m for _, m, v in points if (v == "trainable") == ok]
        if xs:
            ax.scatter(xs, ys, s=18, c=colour, label=label, alpha=0.8)
    ax.axvline(0.5, color="#777", lw=0.8, ls="--")
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("predicted P(trains) at initialisation")
    ax.set_ylabel(_plain(metric))
    ax.legend(loc="best", fontsize=8)
    return _save(fig, plt, path)
