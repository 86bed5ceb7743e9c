"""Writing a run's results: JSON, the spec, per-epoch history and a loss-curve plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depthlab._json import to_json
from depthlab.exceptions import DepthlabError
from depthlab.train import TrainResult
from depthlab.train.loggers import write_history_csv


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(to_json(payload), indent=2, allow_nan=False) + "\n")
        tmp.replace(p)  # atomic: a reader never sees half a file
    except OSError as exc:
        raise DepthlabError(f"cannot write {str(p)!r}: {exc.strerror}") from None


def write_run_dir(out: str | Path, result: TrainResult) -> list[Path]:
    """``result.json``, ``spec.yaml``, ``history.csv`` and ``loss.png`` in ``out``."""
    d = Path(out)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DepthlabError(f"cannot create output directory {str(d)!r}: {exc.strerror}") from None
    written = [d / "result.json"]
    write_json(written[0], result.to_dict())
    if result.spec is not None:
        (d / "spec.yaml").write_text(result.spec.to_yaml())
        written.append(d / "spec.yaml")
    if result.history:
        write_history_csv(d / "history.csv", result.history)
        written.append(d / "history.csv")
        written.append(plot_history(result, d / "loss.png"))
    return written


def plot_history(result: TrainResult, path: Path) -> Path:
    """Loss (log scale) and accuracy per epoch, train/val/test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in result.history]
    has_acc = any("train_accuracy" in row for row in result.history)
    fig, axes = plt.subplots(
        1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.6), squeeze=False
    )
    for ax, metric in zip(axes[0], ("loss", "accuracy"), strict=False):
        for part in ("train", "val", "test"):
            pts = [
                (e, row[f"{part}_{metric}"])
                for e, row in zip(epochs, result.history, strict=True)
                if f"{part}_{metric}" in row
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", label=part)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result.state.value}: {result.spec.name if result.spec else ''}".rstrip(": "))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
