"""The watch report: ``watch.json``, ``curve.png`` (the run's loss, where the engine looked and
what it said; each layer's update/weight ratio over the run) and ``index.html``."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from depthlab import _json
from depthlab.report.html import STYLE


def write_watch_report(data: dict[str, Any], out: str | Path, *, title: str) -> Path:
    """Write the three files into the directory ``out`` (created); the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "watch.json").write_text(json.dumps(_json.to_json(data), indent=1, allow_nan=False))
    figure = curve_figure(data, out / "curve.png")
    page = out / "index.html"
    page.write_text(_page(data, title, figure.name if figure else None))
    return page


def curve_figure(data: dict[str, Any], path: Path) -> Path | None:
    """Loss per step (log scale), with the engine's looks; update/weight ratio per layer."""
    from depthlab.report.figures import pyplot

    trace = data.get("loss_trace") or {}
    steps, losses = trace.get("step") or [], trace.get("loss") or []
    if not steps:
        return None
    plt = pyplot()
    layers = (data.get("layers") or {}).get("layers") or {}
    panels = 2 if layers else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    finite = [(s, v) for s, v in zip(steps, losses, strict=True) if math.isfinite(v) and v > 0]
    if finite:
        ax.plot([s + 1 for s, _ in finite], [v for _, v in finite], lw=1, label="minibatch loss")
        ax.set_yscale("log")
    base = data.get("baseline_loss")
    if isinstance(base, float) and base > 0:
        ax.axhline(base, color="gray", ls=":", lw=1, label="constant predictor")
    for look in (data.get("engine") or {}).get("looked", []):
        ax.axvline(look["step"], color="tab:orange", lw=0.8, alpha=0.6)
        ax.annotate(
            f"P={look['p_trains']:.2f}",
            (look["step"], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(f"{data['verdict']} (P(trains) = {data['p_trains']:.2f})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if layers:
        ax2 = axes[0][1]
        lsteps = data["layers"]["steps"]
        col = data["layers"]["fields"].index("update_ratio")
        for name, rows in layers.items():
            ys = [r[col] if r[col] is not None and r[col] > 0 else math.nan for r in rows]
            ax2.plot([s + 1 for s in lsteps], ys, lw=1, label=name if len(layers) <= 8 else None)
        ax2.set_yscale("log")
        ax2.set_xlabel("optimizer step")
        ax2.set_ylabel("‖ΔW‖ / ‖W‖ per step")
        ax2.grid(alpha=0.3)
        if len(layers) <= 8:
            ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def _page(data: dict[str, Any], title: str, figure: str | None) -> str:
    cls = "ok" if data["verdict"] == "trainable" else "bad"
    setup = data.get("setup") or {}
    facts = [
        ("verdict", f"<span class='{cls}'>{html.escape(data['verdict'])}</span>"),
        ("P(trains)", _fmt(data["p_trains"])),
        ("decided", f"{data['decided']} (by {html.escape(str(data['decided_by']))})"),
        ("steps seen", f"{data['steps']} of a budget of {data['budget_steps']}"),
        ("setup", html.escape(", ".join(f"{k} {v}" for k, v in setup.items()))),
        ("baseline loss", _fmt(data.get("baseline_loss"))),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    findings = "".join(
        f"<p class='finding'><b>{html.escape(f['verdict'])}</b>: {html.escape(f['evidence'])}"
        f" — {html.escape(f['advice'])}</p>"
        for f in data.get("findings") or []
    )
    problems = "".join(f"<p class='skip'>{html.escape(p)}</p>" for p in data.get("problems", []))
    img = f"<img src='{figure}' alt='loss curve and layer statistics'>" if figure else ""
    layer_rows = ""
    stats = data.get("layers") or {}
    if stats.get("steps"):
        fields = stats["fields"]
        head = "".join(f"<th>{f}</th>" for f in fields)
        body = "".join(
            f"<tr><td>{html.escape(n)}</td>{''.join(f'<td>{_fmt(v)}</td>' for v in r[-1])}</tr>"
            for n, r in stats["layers"].items()
            if r
        )
        layer_rows = (
            f"<h2>Layers at step {stats['steps'][-1] + 1}</h2>"
            f"<table><tr><th>layer</th>{head}</tr>{body}</table>"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<table>{rows}</table>{findings}{problems}{img}{layer_rows}</body></html>"
    )
