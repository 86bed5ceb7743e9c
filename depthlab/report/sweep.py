"""A static HTML report of a sweep: which networks trained, which did not, and why.

:func:`write_sweep_report` reads finished :class:`~depthlab.store.base.RunRecord` s (a store's
``runs()``) and writes ``index.html`` with PNG figures beside it. The page needs no network: no
scripts, fonts or style sheets from elsewhere, images are relative links, all text is escaped.

Runs are grouped into *configurations*: runs whose specs agree on every field but ``name`` and
``train.seed``. The fields that differ between runs are the sweep's *axes*. The page shows

* a summary (runs per state, compute time, the axes and their values);
* the trainability phase diagram: the metric over ``arch.depth`` × ``arch.width``, one panel
  per combination of the other axes (a line plot when only one of the two varies);
* configurations ranked by the metric, mean ± sample standard deviation over seeds;
* train-loss curves (mean over seeds, thin lines per seed);
* the diagnose figures and verdicts of runs diagnosed at initialisation;
* failed and diverged runs with their errors.

The metric defaults to ``test_accuracy`` (higher is better) when any run reports it, else
``train_loss`` (lower is better, log colour scale). A configuration's value is the mean over its
COMPLETE runs with a finite metric; a cell with none is marked ``div``, ``fail`` or ``n/a``.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlab.report.figures import FIGURES
from depthlab.report.html import COLUMNS, STYLE
from depthlab.store.base import RunRecord, RunState

__all__ = ["write_sweep_report"]

DEPTH, WIDTH = "arch.depth", "arch.width"
#: Fields that tell runs of one configuration apart; never axes.
IGNORED = frozenset({"name", "train.seed"})
#: Panels per figure before a figure is split (phase diagrams and loss curves).
PANELS_PER_FIGURE = 12
#: Runs whose diagnoses share the diagnose figures (all of them are in the verdict table).
MAX_DIAGNOSED_PLOTTED = 10
#: Rows of the ranking table.
MAX_RANKED = 100

_EXTRA_STYLE = """
.div { color: #a4161a; } .fail { color: #6a4c93; } .muted { color: #777; }
pre { white-space: pre-wrap; font-size: 0.8rem; margin: 0; text-align: left; }
td.l, th.l { text-align: left; }
"""

Key = tuple[str, ...]


# --------------------------------------------------------------------------- grouping


def _flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in spec.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, f"{path}."))
        else:
            flat[path] = v
    return flat


def _canon(value: Any) -> str:
    """A value as a hashable, comparable label: strings bare, everything else compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then everything else in text order."""
    try:
        number = float(label)
    except ValueError:
        return (1, 0.0, label)
    return (0, number, label) if math.isfinite(number) else (1, 0.0, label)


def _axes(flats: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each field whose value differs between runs, with its sorted distinct values."""
    paths: list[str] = []
    for flat in flats:
        paths += [p for p in flat if p not in paths]
    axes = {}
    for path in paths:
        if path in IGNORED:
            continue
        values = {_canon(flat.get(path)) for flat in flats}
        if len(values) > 1:
            axes[path] = sorted(values, key=_sort_key)
    return axes


class _Config:
    """Runs of one configuration (all seeds) and their aggregate metric."""

    def __init__(self, key: Key, axes: list[str]) -> None:
        self.key, self.axes = key, axes
        self.runs: list[RunRecord] = []
        self.values: list[float] = []

    def value(self, axis: str) -> str:
        return self.key[self.axes.index(axis)]

    @property
    def label(self) -> str:
        return (
            ", ".join(f"{_short(a)}={v}" for a, v in zip(self.axes, self.key, strict=True))
            or "all runs"
        )

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    def count(self, state: RunState) -> int:
        return sum(r.state == state for r in self.runs)

    @property
    def status(self) -> str:
        """``ok`` if any seed has a value, else what went wrong with the runs."""
        if self.values:
            return "ok"
        if self.count(RunState.DIVERGED):
            return "div"
        if self.count(RunState.FAILED):
            return "fail"
        return "n/a"

    @property
    def states(self) -> str:
        return ", ".join(f"{self.count(s)} {s.value}" for s in RunState if self.count(s))


def _short(axis: str) -> str:
    return axis.split(".", 1)[-1]


def _metric_value(record: RunRecord, metric: str) -> float:
    if record.state != RunState.COMPLETE:
        return math.nan
    value = record.metrics.get(metric, math.nan)
    return value if math.isfinite(value) else math.nan


def _group(records: Sequence[RunRecord], axes: list[str], metric: str) -> list[_Config]:
    configs: dict[Key, _Config] = {}
    for record in records:
        flat = _flatten(record.spec)
        key = tuple(_canon(flat.get(a)) for a in axes)
        config = configs.setdefault(key, _Config(key, axes))
        config.runs.append(record)
        value = _metric_value(record, metric)
        if not math.isnan(value):
            config.values.append(value)
    return sorted(
        configs.values(), key=lambda c: [_sort_key(v) for v in c.key]
    )  # grid order, numbers numerically


def _choose_metric(records: Sequence[RunRecord], metric: str | None) -> str:
    if metric:
        return metric
    if any("test_accuracy" in r.metrics for r in records):
        return "test_accuracy"
    return "train_loss"


def _higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


def _run_label(record: RunRecord) -> str:
    name = record.spec.get("name") if isinstance(record.spec, dict) else None
    return str(name) if name else f"{record.run_id} (seed {record.seed})"


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3f}" if _higher_is_better(metric) else f"{value:.3g}"


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


# --------------------------------------------------------------------------- figures


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _panels(configs: list[_Config], panel_axes: list[str]) -> dict[Key, list[_Config]]:
    """Configurations split by their values on ``panel_axes`` (in grid order)."""
    panels: dict[Key, list[_Config]] = {}
    for c in configs:
        panels.setdefault(tuple(c.value(a) for a in panel_axes), []).append(c)
    return panels


def _plain(text: str) -> str:
    """Text for matplotlib: a ``$`` in a user's value is a dollar sign, not mathtext."""
    return text.replace("$", r"\$")


def _panel_title(panel_axes: list[str], key: Key) -> str:
    return _plain(", ".join(f"{_short(a)}={v}" for a, v in zip(panel_axes, key, strict=True)))


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


def _norm(configs: list[_Config], metric: str) -> Any:
    from matplotlib.colors import LogNorm, Normalize

    values = [c.mean for c in configs if c.values]
    if not _higher_is_better(metric) and "loss" in metric:
        positive = [v for v in values if v > 0]
        if positive and min(positive) < max(positive):
            return LogNorm(min(positive), max(positive))
        if positive:
            return LogNorm(min(positive) / 2, min(positive) * 2)
    if values and min(values) < max(values):
        return Normalize(min(values), max(values))
    centre = values[0] if values else 0.0
    return Normalize(centre - 0.5, centre + 0.5)


def _phase_heatmaps(
    configs: list[_Config], axes: dict[str, list[str]], metric: str, out: Path
) -> list[Path]:
    """Depth × width heatmaps of the metric, one panel per combination of the other axes."""
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = _plt()
    panel_axes = [a for a in axes if a not in (DEPTH, WIDTH)]
    depths, widths = axes[DEPTH], axes[WIDTH]
    norm = _norm(configs, metric)
    cmap = plt.get_cmap("viridis" if _higher_is_better(metric) else "viridis_r")
    cmap = cmap.with_extremes(bad="#f2f2f2")
    panels = list(_panels(configs, panel_axes).items())
    paths = []
    for n, chunk in enumerate(_chunks(panels, PANELS_PER_FIGURE)):
        fig, flat = _grid(plt, len(chunk), (1.2 + 0.9 * len(widths), 1.0 + 0.55 * len(depths)))
        image = None
        for ax, (key, cells) in zip(flat, chunk, strict=True):
            grid = [[math.nan] * len(widths) for _ in depths]
            by_cell = {(c.value(DEPTH), c.value(WIDTH)): c for c in cells}
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
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", ec=colour, lw=0
                        )
                    )
                    text = c.status
                else:
                    text = _num(c.mean, metric).replace("–", "")
                    bad = c.count(RunState.DIVERGED) + c.count(RunState.FAILED)
                    text += f"\n({bad} bad)" if bad else ""
                rgba = cmap(norm(c.mean)) if c.values else (1, 1, 1, 1)
                dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
            rotation = 30 if len(widths) > 4 else 0
            ax.set_xticks(range(len(widths)), [_plain(w) for w in widths], rotation=rotation)
            ax.set_yticks(range(len(depths)), [_plain(d) for d in depths])
            ax.set_xlabel("width")
            ax.set_ylabel("depth")
            ax.set_title(_panel_title(panel_axes, key) or _plain(metric), fontsize=9)
        if image is not None:
            fig.colorbar(image, ax=flat, label=_plain(metric), shrink=0.8)
        fig.suptitle(_plain(f"Trainability: {metric} over depth × width"))
        path = out / (f"phase_{n + 1}.png" if len(panels) > PANELS_PER_FIGURE else "phase.png")
        paths.append(_save(fig, plt, path))
    return paths


def _phase_lines(
    configs: list[_Config], axes: dict[str, list[str]], metric: str, out: Path
) -> list[Path]:
    """Only one of depth and width varies: the metric along it, one line per other combination."""
    plt = _plt()
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
    ax.set_xlabel(_short(along))
    ax.set_ylabel(_plain(metric))
    if "loss" in metric and any(c.mean > 0 for c in configs if c.values):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0] and line_axes:
        ax.legend(fontsize=8)
    ax.set_title(_plain(f"{metric} over {_short(along)}"))
    return [_save(fig, plt, out / "phase.png")]


def _curve_figures(configs: list[_Config], axes: dict[str, list[str]], out: Path) -> list[Path]:
    """Train loss against epoch; one panel per combination of the axes other than depth/width."""
    plt = _plt()
    panel_axes = [a for a in axes if a not in (DEPTH, WIDTH)]
    line_axes = [a for a in axes if a in (DEPTH, WIDTH)]
    panels = [
        (key, cells)
        for key, cells in _panels(configs, panel_axes).items()
        if any(_curve(r) for c in cells for r in c.runs)
    ]
    if not panels:
        return []
    paths = []
    for n, chunk in enumerate(_chunks(panels, PANELS_PER_FIGURE)):
        fig, flat = _grid(plt, len(chunk), (5.0, 3.6))
        for ax, (key, cells) in zip(flat, chunk, strict=True):
            colours = plt.get_cmap("viridis")
            drew = False
            for k, c in enumerate(cells):
                colour = colours(k / max(len(cells) - 1, 1) * 0.9)
                curves = [curve for r in c.runs if (curve := _curve(r))]
                for curve in curves if len(curves) > 1 else []:
                    ax.plot(*zip(*curve, strict=True), color=colour, lw=0.6, alpha=0.35)
                mean = _mean_curve(curves)
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
                    curve = _curve(r)
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
        fig.suptitle("Training loss (mean over seeds; × where a run diverged)")
        path = out / (f"curves_{n + 1}.png" if len(panels) > PANELS_PER_FIGURE else "curves.png")
        paths.append(_save(fig, plt, path))
    return paths


def _curve(record: RunRecord) -> list[tuple[float, float]]:
    """(epoch, train_loss) for each epoch with a finite, positive loss (log axis)."""
    points = []
    for row in record.history:
        epoch, loss = row.get("epoch"), row.get("train_loss")
        if isinstance(epoch, int | float) and isinstance(loss, int | float):
            if math.isfinite(epoch) and math.isfinite(loss) and loss > 0:
                points.append((float(epoch), float(loss)))
    return points


def _mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    by_epoch: dict[float, list[float]] = {}
    for curve in curves:
        for epoch, loss in curve:
            by_epoch.setdefault(epoch, []).append(loss)
    return [(e, statistics.fmean(v)) for e, v in sorted(by_epoch.items())]


def _diagnose_figures(diagnoses: list[dict[str, Any]], out: Path) -> dict[str, Path]:
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


# --------------------------------------------------------------------------- sections


def _summary(
    records: Sequence[RunRecord], axes: dict[str, list[str]], configs: list[_Config], metric: str
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
            _esc(f"{metric} ({'higher' if _higher_is_better(metric) else 'lower'} is better)"),
        ],
    ]
    axis_rows = [[_esc(a), _esc(", ".join(v))] for a, v in axes.items()]
    fixed = _fixed(records, axes)
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


def _fixed(records: Sequence[RunRecord], axes: dict[str, list[str]]) -> str:
    """The headline settings shared by every run."""
    wanted = (
        "arch.family",
        "arch.depth",
        "arch.width",
        "arch.act",
        "arch.init",
        "arch.norm",
        "data.name",
        "train.optimizer",
        "train.lr",
        "train.epochs",
    )
    first = _flatten(records[0].spec)
    return ", ".join(f"{p}={_canon(first[p])}" for p in wanted if p in first and p not in axes)


def _phase_section(
    configs: list[_Config], axes: dict[str, list[str]], metric: str, out: Path
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
        paths = _phase_heatmaps(configs, axes, metric, out)
    elif DEPTH in axes or WIDTH in axes:
        paths = _phase_lines(configs, axes, metric, out)
    else:
        rows = [[_esc(c.label), _cell(c, metric)] for c in configs]
        return (
            head
            + "<p class='muted'>Neither arch.depth nor arch.width varies; each configuration:</p>"
            + _table(["configuration", _esc(metric)], rows)
        )
    return head + note + "".join(_img(p, "phase diagram") for p in paths)


def _cell(c: _Config, metric: str) -> str:
    if c.status == "ok":
        return _esc(_num(c.mean, metric))
    return f"<span class='{_esc(c.status)}'>{_esc(c.status)}</span>"


def _ranking(configs: list[_Config], axes: dict[str, list[str]], metric: str) -> str:
    sign = -1.0 if _higher_is_better(metric) else 1.0
    ranked = sorted(configs, key=lambda c: (not c.values, sign * c.mean if c.values else 0.0))
    rows = []
    for rank, c in enumerate(ranked[:MAX_RANKED], 1):
        value = _cell(c, metric)
        if c.status == "ok" and len(c.values) > 1:
            value += f" ± {_esc(_num(c.std, metric))}"
        rows.append(
            [str(rank), *(_esc(c.value(a)) for a in axes), value, str(len(c.runs)), _esc(c.states)]
        )
    more = len(ranked) - MAX_RANKED
    return (
        "<h2 id='best'>Best configurations</h2>"
        + _table(
            [
                "rank",
                *(_esc(_short(a)) for a in axes),
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
    diagnoses = []
    for r in records:
        d = r.probes.get("diagnose")
        if isinstance(d, dict) and "verdict" in d:
            diagnoses.append({**d, "name": _run_label(r)})
    if not diagnoses:
        return ""
    figures = _diagnose_figures(diagnoses, out)
    # Only the columns some diagnosis has: a sweep usually runs a few cheap probes.
    columns = [
        (p, k, label)
        for p, k, label in COLUMNS
        if any(not math.isnan(_first((d.get(p) or {}).get(k))) for d in diagnoses)
    ]
    header = ["run", "verdict", *(_esc(label) for _, _, label in columns), "findings"]
    rows = []
    for d in diagnoses:
        cls = "ok" if d.get("verdict") == "trainable" else "bad"
        findings = "; ".join(
            f"{f.get('verdict', '')}: {f.get('evidence', '')}"
            for f in d.get("findings", [])
            if isinstance(f, dict)
        )
        cells = [_esc(_num(_first((d.get(p) or {}).get(k)))) for p, k, _ in columns]
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


def _first(value: Any) -> float:
    if isinstance(value, list):
        value = value[0] if value else None
    return float(value) if isinstance(value, int | float) else math.nan


def _problems(records: Sequence[RunRecord]) -> str:
    parts = ["<h2 id='problems'>Failed and diverged runs</h2>"]
    for state, what in ((RunState.FAILED, "failed"), (RunState.DIVERGED, "diverged")):
        bad = [r for r in records if r.state == state]
        if not bad:
            parts.append(f"<p class='muted'>No run {what}.</p>")
            continue
        rows = [
            [
                _esc(_run_label(r)),
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
    curve = _curve(record)
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
    metric = _choose_metric(records, metric)
    if records:
        axes = _axes([_flatten(r.spec) for r in records])
        configs = _group(records, list(axes), metric)
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
    configs: list[_Config],
    metric: str,
    out: Path,
) -> str:
    return "\n".join(
        [
            _summary(records, axes, configs, metric),
            _phase_section(configs, axes, metric, out),
            _ranking(configs, axes, metric),
            _curves_section(configs, axes, out),
            _diagnose_section(records, out),
            _problems(records),
        ]
    )


def _curves_section(configs: list[_Config], axes: dict[str, list[str]], out: Path) -> str:
    paths = _curve_figures(configs, axes, out)
    head = "<h2 id='curves'>Loss curves</h2>"
    if not paths:
        return head + "<p class='muted'>No run has a finite training loss to plot.</p>"
    return head + "".join(_img(p, "training loss curves") for p in paths)
