"""``Diagnosis``: what ``depthlab.diagnose`` returns — the verdict, its evidence and advice, one
row per layer, and ways to show and keep it (a rich table, a DataFrame, JSON and HTML, and
``_repr_html_`` for notebooks).

The per-layer rows (``layer_rows``) join, by layer name, what the probes measured at
initialisation: the signal probe's forward statistics of the layer's output (``mean``,
``var``, ``second_moment`` E[h²], ``correlation`` between input pairs, ``dead_fraction`` and
``saturated_fraction`` of the activation after it), the gradients probe's backward ones
(``grad_norm`` ‖∂L/∂W‖, ``delta_norm`` ‖∂L/∂h‖, ``grad_to_weight`` = grad_norm / weight_norm)
and the weight's own statistics (``shape``, ``n_params``, ``weight_norm`` ‖W‖_F, ``weight_std``,
``gain`` = fan_in · E[W²], 1 for a variance-preserving init of a linear layer). ``role`` is the
layer's name with block indices starred (``blocks.*.mlp``): layers of one role do one job.
"""

from __future__ import annotations

import copy
import dataclasses
import html
import math
import typing
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlab._device import widen
from depthlab.probes.layers import role, weight_layers

#: The columns of ``Diagnosis.layers()``, in order.
LAYER_COLUMNS = (
    "name",
    "type",
    "role",
    "shape",
    "n_params",
    "second_moment",
    "mean",
    "var",
    "correlation",
    "dead_fraction",
    "saturated_fraction",
    "grad_norm",
    "delta_norm",
    "grad_to_weight",
    "weight_norm",
    "weight_std",
    "gain",
)


def layer_rows(result: dict[str, Any], model: nn.Module, *, strip: str = "") -> list[dict]:
    """One row per weight layer of ``model`` (module doc), in module order; ``strip`` is a
    name prefix to drop (a wrapper's)."""
    signal = {r["name"]: r for r in (result.get("signal") or {}).get("layers", [])}
    grads = {r["name"]: r for r in (result.get("gradients") or {}).get("layers", [])}
    rows = []
    for name, module in weight_layers(model):
        w = typing.cast(torch.Tensor, module.weight).detach()
        s, g = signal.get(name, {}), grads.get(name, {})
        wide = widen(w)
        stats = torch.stack([wide.norm(), wide.std() if w.numel() > 1 else wide.sum() * 0,
                             wide.pow(2).mean()]).tolist()  # fmt: skip
        fan_in = w[0].numel() if w.dim() > 1 else 1
        short = name[len(strip) :] if strip and name.startswith(strip) else name
        rows.append(
            {
                "name": short,
                "type": type(module).__name__,
                "role": role(short),
                "shape": list(w.shape),
                "n_params": sum(p.numel() for p in module.parameters(recurse=False)),
                **{k: s.get(k) for k in ("second_moment", "mean", "var", "correlation")},
                "dead_fraction": s.get("dead_fraction"),
                "saturated_fraction": s.get("saturated_fraction"),
                "grad_norm": g.get("grad_norm"),
                "delta_norm": g.get("delta_norm"),
                "grad_to_weight": g.get("ratio"),
                "weight_norm": stats[0],
                "weight_std": stats[1],
                "gain": fan_in * stats[2],
            }
        )
    return rows


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnosis:
    """A diagnosis (``depthlab.diagnose``); ``data`` is the full JSON-safe result."""

    data: dict[str, Any]

    @property
    def verdict(self) -> str:
        """``trainable`` or the failure predicted (``vanishing``, ``won't train``, ...)."""
        return str(self.data["verdict"])

    @property
    def p_trains(self) -> float:
        """The calibrated probability that the run trains."""
        return float(self.data["p_trains"])

    @property
    def decided_by(self) -> str:
        """What decided the verdict (the trial, a theory rule, the rules' model)."""
        return str(self.data["decided_by"])

    @property
    def findings(self) -> list[dict[str, str]]:
        """Each rule that fired: ``verdict``, ``evidence`` and ``advice``."""
        return [dict(f) for f in self.data["findings"]]

    @property
    def advice(self) -> list[str]:
        """What to change, one line per finding (none for a network that trains)."""
        return list(dict.fromkeys(f["advice"] for f in self.data["findings"] if f["advice"]))

    def to_dict(self) -> dict[str, Any]:
        """The full result as plain data (a copy): what ``depthlab diagnose --json`` writes,
        before non-finite floats are encoded (``depthlab._json``)."""
        return copy.deepcopy(self.data)

    def summary(self) -> None:
        """Print the table ``depthlab diagnose`` prints, then each finding."""
        from depthlab.cli.tables import print_diagnoses

        print_diagnoses([self.data])

    def layers(self):  # type: ignore[no-untyped-def]  # pandas is optional
        """One row per layer as a pandas ``DataFrame`` (columns: ``LAYER_COLUMNS``)."""
        from depthlab._optional import require

        pd = require("pandas", "Diagnosis.layers()")
        return pd.DataFrame(list(self.data.get("layers", [])), columns=list(LAYER_COLUMNS))

    def save(self, path: str | Path) -> Path:
        """``diagnosis.json`` and ``index.html`` (with its figures) in the folder ``path``;
        returns the page's path."""
        from depthlab.cli.output import write_json
        from depthlab.report import write_report

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "diagnosis.json", self.data)
        return write_report([self.data], out, title=f"depthlab diagnosis: {self.name}")

    @property
    def name(self) -> str:
        return str(self.data.get("name", "model"))

    def __repr__(self) -> str:
        return (
            f"Diagnosis({self.name}: {self.verdict}, P(trains) = {self.p_trains:.2f}, "
            f"decided by {self.decided_by})"
        )

    def _repr_html_(self) -> str:
        """The verdict, the findings and the layer table, for notebooks (no scripts)."""
        e = html.escape
        colour = "#176b2c" if self.verdict == "trainable" else "#a4161a"
        head = (
            f"<p><b>{e(self.name)}</b>: <b style='color:{colour}'>{e(self.verdict)}</b>, "
            f"P(trains) = {self.p_trains:.2f}, decided by {e(self.decided_by)}</p>"
        )
        items = "".join(
            f"<li><b>{e(f['verdict'])}</b>: {e(f['evidence'])}. <i>Advice</i>: "
            f"{e(f['advice'])}</li>"
            for f in self.findings
        )
        cols = ("name", "role", "second_moment", "grad_norm", "grad_to_weight", "gain")
        rows = "".join(
            "<tr>" + "".join(f"<td>{e(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
            for r in self.data.get("layers", [])
        )
        table = (
            f"<table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{rows}</table>"
            if rows
            else ""
        )
        return f"<div>{head}{f'<ul>{items}</ul>' if items else ''}{table}</div>"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)
