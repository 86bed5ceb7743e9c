"""The trial's curve as the verdict engine read it: one panel per diagnosed network.

Each panel shows the run's minibatch loss (in units of the constant predictor's loss, so 1 is
"learnt nothing") against optimizer steps on a log axis, the shallow reference net's curve under
the same setup beside it, a dotted line at each checkpoint where the engine looked, and — from
the last look to the budget — the parametric fits' extrapolation
(``depthlab.diagnosis.curves``) with its interval as a band. The title gives the decision:
verdict, P(trains) and predicted progress with its interval.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Diagnosis = dict[str, Any]


def _panel(ax: Any, d: Diagnosis) -> bool:
    import numpy as np

    from depthlab.diagnosis.curves import fit_curve, predict

    trial = d.get("trial") or {}
    seen = trial.get("engine") or {}
    losses = seen.get("loss") or trial.get("loss") or []
    base = trial.get("baseline_loss") or 1.0
    if not losses or not base:
        return False
    stride = int(seen.get("stride", 1))
    steps = np.arange(len(losses)) * stride + 1
    y = np.asarray([v / base if v is not None else math.nan for v in losses], dtype=float)
    ax.plot(steps, y, color="#264653", lw=1.0, label="this network")
    ref = (trial.get("reference") or {}).get("loss")
    if ref:
        ax.plot(
            np.arange(len(ref)) + 1,
            np.asarray(ref, dtype=float) / base,
            color="#e9c46a",
            lw=1.0,
            label="reference net",
        )
    for look in seen.get("looked", []):
        ax.axvline(look["step"], color="#888", lw=0.7, ls=":")
    budget = int(seen.get("budget_steps") or trial.get("budget_steps") or steps[-1])
    fits = fit_curve(losses, stride=stride)
    if fits and budget > steps[-1]:
        horizon = np.geomspace(steps[-1], budget, 40)
        try:
            band = predict(fits, horizon)
        except ValueError:
            band = None
        if band is not None:
            ax.fill_between(
                horizon, band["lo"] / base, band["hi"] / base, color="#2a9d8f", alpha=0.25
            )
            ax.plot(horizon, band["loss"] / base, color="#2a9d8f", lw=1.2, ls="--",
                    label="extrapolated")  # fmt: skip
    ax.axhline(1.0, color="#a4161a", lw=0.6, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlim(1, max(budget, 2))
    ax.set_xlabel("optimizer step (budget at the right edge)")
    ax.set_ylabel("loss / constant predictor's")
    p, g = d.get("p_trains"), d.get("predicted_progress")
    interval = d.get("progress_interval")
    title = f"{d.get('name', '')}: {d.get('verdict', '')}"
    if isinstance(p, int | float):
        title += f"\nP(trains) {p:.2f}"
    if isinstance(g, int | float):
        title += f", progress {g:.2f}"
        if interval:
            title += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return True


def trial_figure(diagnoses: list[Diagnosis], path: Path) -> Path | None:
    """The panels of the module doc, at most four to a row; ``None`` when no diagnosis has a
    trial curve."""
    from depthlab.report.figures import pyplot

    shown = [d for d in diagnoses if (d.get("trial") or {}).get("loss") or (
        (d.get("trial") or {}).get("engine") or {}).get("loss")]  # fmt: skip
    if not shown:
        return None
    plt = pyplot()
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    drew = False
    for i, d in enumerate(shown):
        drew |= _panel(axes[i // cols][i % cols], d)
    for j in range(len(shown), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("the trial's curve, where the verdict engine looked, and its extrapolation")
    fig.tight_layout()
    if drew:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path if drew else None
