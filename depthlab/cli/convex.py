"""``depthlab convex``: certified global optima of two-layer ReLU networks, and the gap of a
trained one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="convex",
    help="How far from optimal is it? Convex programs of two-layer ReLU networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PATTERNS_HELP = (
    "'exact' (every activation pattern; inputs of rank <= 2 plus the bias) or a number of "
    "sampled gates."
)


def _lam(lam: float) -> float:
    from depthlab.exceptions import SpecError

    if not (lam > 0 and math.isfinite(lam)):
        raise SpecError("lam", f"{lam!r} is not valid; expected a number > 0")
    return lam


def _load(data: str, seed: int) -> tuple[object, object]:
    """``FILE.npz`` exactly as given, or a registered dataset's training split (all of it)."""
    from depthlab.data import load_data
    from depthlab.data.files import read_npz
    from depthlab.spec import DataSpec

    if data.endswith(".npz"):
        x, y = read_npz(data)
        from depthlab.data.base import check_arrays

        check_arrays(x, y, data)
        return x.reshape(len(x), -1), y
    ds = load_data(DataSpec(name=data, seed=seed, val_fraction=0.0, test_fraction=0.0))
    return ds.x_train.double().reshape(len(ds.x_train), -1).numpy(), ds.y_train.numpy()


def _widths(text: str | None) -> tuple[int, ...]:
    from depthlab.exceptions import SpecError

    if not text:
        return ()
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise SpecError(
            "widths", f"{text!r} is not valid; expected integers like 1,2,4,8"
        ) from None


def _emit(text: str, json_path: Path | None) -> None:
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n")


@app.command()
def fit(
    data: Annotated[str, typer.Option(help="A dataset name or a FILE.npz with arrays x, y.")],
    lam: Annotated[float | None, typer.Option(help="Weight decay λ (> 0).")] = None,
    lam_path: Annotated[
        str | None,
        typer.Option(help="START:STOP:COUNT, e.g. 1e-1:1e-4:20: a warm-started λ path instead."),
    ] = None,
    solver: Annotated[
        str, typer.Option(help="auto, working-set (exact, small) or first-order (large).")
    ] = "auto",
    model: Annotated[str, typer.Option(help="relu or gated.")] = "relu",
    loss: Annotated[str, typer.Option(help="squared or logistic (binary labels).")] = "squared",
    patterns: Annotated[str, typer.Option(help=PATTERNS_HELP)] = "exact",
    project: Annotated[
        int | None, typer.Option(help="Use the first K principal components of x (stated).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampled gates and of the dataset.")] = 0,
    max_seconds: Annotated[
        float, typer.Option(help="Stop after this long; the best bounds so far are returned.")
    ] = 600.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
    save: Annotated[Path | None, typer.Option(help="Save the recovered network (torch).")] = None,
) -> None:
    """Solve the convex program; print {objective, lower_bound, certified, ...} as JSON."""
    import numpy as np
    import torch

    from depthlab.convex import fit_convex
    from depthlab.convex.gap import project as pca
    from depthlab.exceptions import SpecError

    torch.set_num_threads(1)
    if (lam is None) == (lam_path is None):
        raise SpecError("lam", "give exactly one of --lam or --lam-path")
    x, y = _load(data, seed)
    x = np.asarray(x, dtype=np.float64)
    if project is not None:
        x = pca(x, project)
    if lam_path is not None:
        from depthlab.convex.path import fit_path, parse_lam_path

        path = fit_path(
            x, np.asarray(y), parse_lam_path(lam_path), model=model, loss=loss,
            patterns=patterns, seed=seed, max_seconds=max_seconds, solver=solver,
        )  # fmt: skip
        out_path = path.to_dict()
        out_path["projection"] = project
        _emit(json.dumps(out_path, indent=2), json_path)
        return
    assert lam is not None
    res = fit_convex(
        x,
        np.asarray(y),
        lam=_lam(lam),
        model=model,
        loss=loss,
        patterns=patterns,
        seed=seed,
        max_seconds=max_seconds,
        solver=solver,
    )
    out = res.to_dict()
    out["projection"] = project
    if res.model == "gated":
        from depthlab.convex import targets
        from depthlab.convex.recover import relu_from_gated

        # the gated solution as a ReLU network: two neurons per gate, with its error
        rec = relu_from_gated(
            res.weights, res.gates, torch.from_numpy(x), targets(np.asarray(y), loss), lam, loss
        )
        out["relu_recovery"] = rec.to_dict()
    _emit(json.dumps(out, indent=2), json_path)
    if save is not None:
        torch.save(res.module(), save)


@app.command()
def gap(
    spec: Annotated[Path, typer.Option(help="Run file: a two-layer mlp (depth 1).")],
    lam: Annotated[float, typer.Option(help="Weight decay λ (> 0) of the objective.")],
    loss: Annotated[str, typer.Option(help="squared or logistic (binary labels).")] = "squared",
    patterns: Annotated[str, typer.Option(help=PATTERNS_HELP)] = "exact",
    project: Annotated[
        int | None, typer.Option(help="Train and solve on the first K principal components.")
    ] = None,
    max_seconds: Annotated[float, typer.Option(help="Stop the solver after this long.")] = 600.0,
    widths: Annotated[
        str | None, typer.Option(help="Also train at these widths, e.g. 1,2,4,8 (width vs gap).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
) -> None:
    """Train the run file's two-layer network on the penalised objective and hold it against
    the convex optimum on the same data: trained_objective, optimum (or bounds), gap, certified."""
    import torch

    from depthlab.convex.gap import optimality_gap
    from depthlab.spec import RunSpec

    torch.set_num_threads(1)
    run_spec = RunSpec.load(spec)
    res = optimality_gap(
        run_spec,
        _lam(lam),
        loss=loss,
        patterns=patterns,
        projection=project,
        max_seconds=max_seconds,
        widths=_widths(widths),
    )
    text = json.dumps(res.to_dict(), indent=2)
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n")
