"""A static HTML page (no network, no scripts) showing diagnoses: verdicts, numbers, figures."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from depthlab.report.figures import write_figures

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; font-size: 1.2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.85rem; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.ok { color: #176b2c; font-weight: 600; } .bad { color: #a4161a; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
.finding { margin: 0.3rem 0 0.3rem 1rem; } .skip { color: #777; font-size: 0.85rem; }
"""

COLUMNS = [
    ("signal", "second_moment_ratio", "E[h²] last/first"),
    ("signal", "final_correlation", "final correlation"),
    ("gradients", "delta_first_to_last", "‖∂L/∂h‖ first/last"),
    ("jacobian", "mean_squared_singular_value", "Jacobian mean σ²"),
    ("meanfield", "chi1", "χ₁ (theory)"),
    ("meanfield", "measured_chi1", "χ₁ (measured)"),
    ("ntk", "condition_number", "NTK condition"),
    ("hessian", "top_eigenvalues", "Hessian λ_max"),
    ("hessian", "trace", "Hessian trace"),
    ("training", "test_accuracy", "test accuracy after training"),
]


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}"
    return html.escape(str(value))


def write_report(
    diagnoses: list[dict[str, Any]], out: str | Path, title: str = "depthlab diagnosis"
) -> Path:
    """``index.html`` and its PNG figures in ``out``; returns the page's path."""
    out = Path(out)
    figures = write_figures(diagnoses, out)
    rows = []
    for d in diagnoses:
        cls = "ok" if d["verdict"] == "trainable" else "bad"
        cells = "".join(f"<td>{_fmt((d.get(p) or {}).get(k))}</td>" for p, k, _ in COLUMNS)
        rows.append(
            f"<tr><td>{html.escape(d['name'])}</td><td class='{cls}'>"
            f"{html.escape(d['verdict'])}</td><td>{d['n_params']:,}</td>{cells}</tr>"
        )
    header = "".join(f"<th>{html.escape(label)}</th>" for _, _, label in COLUMNS)
    sections = []
    for d in diagnoses:
        items = (
            "".join(
                f"<div class='finding'><b>{html.escape(f['verdict'])}</b>: "
                f"{html.escape(f['evidence'])}.<br><i>Advice</i>: {html.escape(f['advice'])}</div>"
                for f in d["findings"]
            )
            or "<div class='finding ok'>No rule fired: trainable.</div>"
        )
        skipped = "".join(
            f"<div class='skip'>{html.escape(k)} skipped: {html.escape(v)}</div>"
            for k, v in d.get("skipped", {}).items()
        ) + "".join(
            f"<div class='skip bad'>{html.escape(k)} failed: {html.escape(v)}</div>"
            for k, v in d.get("failed", {}).items()
        )
        sections.append(
            f"<h2>{html.escape(d['name'])}: {html.escape(d['verdict'])}</h2>"
            f"{_odds(d)}{_actual(d)}{items}{skipped}"
        )
    images = "".join(
        f"<h2>{html.escape(name)}</h2><img src='{path.name}' alt='{name} plot'>"
        for name, path in figures.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<table><tr><th>network</th><th>verdict</th><th>parameters</th>{header}</tr>
{"".join(rows)}</table>
{"".join(sections)}
{images}
<p class="skip">Verdict rules and thresholds: <code>depthlab.diagnosis.verdict</code>.</p>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path


def _odds(d: dict[str, Any]) -> str:
    """P(trains), who decided, and the setup the verdict is for."""
    if not isinstance(d.get("p_trains"), int | float) or "decided_by" not in d:
        return ""
    setup = d.get("setup") or {}
    assumed = " (assumed: no training setup was given)" if setup.get("assumed") else ""
    return (
        f"<p>P(trains) = {d['p_trains']:.2f}, decided by {html.escape(str(d['decided_by']))}, "
        f"for {html.escape(str(setup.get('optimizer')))} at lr {setup.get('lr', 0.0):.3g} over "
        f"{setup.get('budget_steps')} steps{assumed}</p>"
    )


def _actual(d: dict[str, Any]) -> str:
    """What training made of the network, when the diagnosis carries it (the demo)."""
    training = d.get("training") or {}
    acc = training.get("test_accuracy")
    if not isinstance(acc, int | float):
        return ""
    trained = training.get("trained")
    word = "" if trained is None else (", trained" if trained else ", did not train")
    return f"<p>After training: test accuracy {acc:.1%}{word}</p>"
