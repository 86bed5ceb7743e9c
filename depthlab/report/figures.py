"""PNG figures of diagnoses; several networks share each figure so they can be compared."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Diagnosis = dict[str, Any]


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _positive(values: list[Any]) -> list[float]:
    return [
        v if isinstance(v, int | float) and v > 0 and math.isfinite(v) else math.nan for v in values
    ]


def _figure(
    path: Path,
    title: str,
    panels: list[tuple[str, str, bool]],
    draw: Callable[[Any, int, Diagnosis], bool],
    diagnoses: list[Diagnosis],
) -> Path | None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    drew = False
    for i, (xlabel, ylabel, log) in enumerate(panels):
        ax = axes[0][i]
        for d in diagnoses:
            drew |= bool(draw(ax, i, d))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(diagnoses) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    if drew:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path if drew else None


def signal_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    def draw(ax: Any, panel: int, d: Diagnosis) -> bool:
        s = d.get("signal")
        if not s:
            return False
        key = "second_moment" if panel == 0 else "correlation"
        values = [row[key] for row in s["layers"]]
        ax.plot(
            range(1, len(values) + 1),
            _positive(values) if panel == 0 else values,
            marker=".",
            label=d["name"],
        )
        return True

    return _figure(
        path,
        "Signal propagation",
        [("layer", "pre-activation E[h²]", True), ("layer", "input-pair correlation", False)],
        draw,
        diagnoses,
    )


def gradients_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    def draw(ax: Any, panel: int, d: Diagnosis) -> bool:
        g = d.get("gradients")
        if not g:
            return False
        key = "delta_norm" if panel == 0 else "ratio"
        values = [row[key] for row in g["layers"]]
        ax.plot(range(1, len(values) + 1), _positive(values), marker=".", label=d["name"])
        return True

    return _figure(
        path,
        "Gradient flow",
        [("layer", "‖∂L/∂h‖", True), ("layer", "‖∇W‖ / ‖W‖", True)],
        draw,
        diagnoses,
    )


def jacobian_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    def draw(ax: Any, panel: int, d: Diagnosis) -> bool:
        j = d.get("jacobian")
        if not j:
            return False
        if panel == 0:
            sv = _positive(j["singular_values"])
            ax.plot(range(1, len(sv) + 1), sv, label=d["name"])
        else:
            gains = [row["gain"] for row in j["layers"]]
            ax.plot(range(1, len(gains) + 1), _positive(gains), marker=".", label=d["name"])
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        return True

    return _figure(
        path,
        "Input–output Jacobian",
        [("rank", "singular value", True), ("layer", "gain ‖δh^l‖²/‖δh^(l−1)‖²", True)],
        draw,
        diagnoses,
    )


def ntk_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    def draw(ax: Any, panel: int, d: Diagnosis) -> bool:
        n = d.get("ntk")
        if not n:
            return False
        ev = _positive(n["eigenvalues"])
        ax.plot(range(1, len(ev) + 1), ev, label=d["name"])
        return True

    return _figure(path, "Empirical NTK spectrum", [("rank", "eigenvalue", True)], draw, diagnoses)


def hessian_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    def draw(ax: Any, panel: int, d: Diagnosis) -> bool:
        h = d.get("hessian")
        if not h or not h.get("density"):
            return False
        dens = h["density"]
        values = _positive(dens["values"])
        # The Gaussian broadening's far tails carry no information; show six decades.
        floor = max((v for v in values if v == v), default=0.0) * 1e-6
        ax.plot(dens["grid"], [v if v >= floor else math.nan for v in values], label=d["name"])
        return True

    return _figure(
        path, "Hessian spectral density (SLQ)", [("eigenvalue", "density", True)], draw, diagnoses
    )


FIGURES = {
    "signal": signal_figure,
    "gradients": gradients_figure,
    "jacobian": jacobian_figure,
    "ntk": ntk_figure,
    "hessian": hessian_figure,
}


def _trial(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    from depthlab.report.trial_figure import trial_figure

    return trial_figure(diagnoses, path)


FIGURES["trial"] = _trial


def write_figures(diagnoses: list[Diagnosis], out: Path) -> dict[str, Path]:
    """One PNG per probe that has something to show, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, fn in FIGURES.items():
        path = fn(diagnoses, out / f"{name}.png")
        if path is not None:
            written[name] = path
    return written
