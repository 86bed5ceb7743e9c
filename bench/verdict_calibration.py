"""How often is the verdict right on networks it was not fitted on? Against real training.

Phases (results under ``--out``, the directory ``bench/verdict_labels.py`` labelled):

  tune    fit the verdict engine's models and thresholds on the tuning half only and write
          ``depthlab/diagnosis/calibrated.py``
  report  the test half: agreement (undecided counted by P ≥ 0.5), agreement and coverage of
          decided runs, precision of each answer, Spearman of predicted with measured progress,
          the cost; leave-one-kind-out (each activation, family, dataset and budget held out
          in turn: fitted on the tuning-half runs of the other kinds, scored on every run of
          the held-out one); the labels' own ceiling (two training seeds); the baselines side
          by side (the trial alone, the median stopping rule against the reference's curve,
          theory alone); a reliability diagram (PNG)
  cost    diagnose and then train test-half runs in one process: the diagnosis's time over
          the training's (mean, median, 90th percentile)

    nice -n 10 python bench/verdict_labels.py --out bench-out/verdict_calibration # resumable
    python bench/verdict_calibration.py tune --out bench-out/verdict_calibration
    python bench/verdict_calibration.py report --out bench-out/verdict_calibration

Cost is everything the diagnosis runs over the run's own training time, measured in the same
process: the theory probes' time (when the models read them), the trial's steps up to the
decision (the run's own steps, at the run's measured time per step), the engine's reading of
the curve at each checkpoint (timed as the features were computed), and the reference net's
trial (``single``: paid by this run alone; ``sweep``: shared by the grid's runs of the same
setup, as the trial's cache shares it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depthlab.diagnosis import calibration as cal
from depthlab.diagnosis import tuning as tu

#: The model set the engine ships: curve features only, or with the theory probes' features.
USE_THEORY = False


def _names(theory: bool) -> list[str]:
    return list(tu.CURVE) + (list(tu.THEORY) if theory else [])


def _table(rows: list[dict[str, Any]], theory: bool) -> tuple[list[Any], list[list[float]]]:
    """Features per row and checkpoint, and the seconds each checkpoint's reading took."""
    table, seconds = [], []
    from depthlab.diagnosis.verdict import theory_features

    for row in rows:
        extra = theory_features(row.get("theory") or {}, row["spec"]["train"]) if theory else {}
        feats, took = [], []
        for s in tu.checkpoint_steps(tu.budget_of(row)):
            t0 = time.perf_counter()
            f = tu.prefix_features(row, s)
            took.append(time.perf_counter() - t0)
            feats.append({**extra, **f})
        table.append(feats)
        seconds.append(took)
    return table, seconds


def pipeline(
    rows: list[dict[str, Any]], table: list[Any], theory: bool
) -> tuple[list[dict[str, Any]], list[tuple[float, float]], list[list[float]]]:
    """Fit models on ``rows``; thresholds and progress intervals from their cross-validation."""
    progress = [r["progress"] for r in rows]
    names = _names(theory)
    p_cv, g_cv = tu.cross_predict(table, progress, names)
    cuts = tu.thresholds(p_cv, progress)
    models = tu.fit_all(table, progress, names)
    errors = []
    for c in range(p_cv.shape[1]):
        err = [
            float(np.clip(progress[i], -0.25, 1.5) - g_cv[i, c])
            for i in range(len(rows))
            if math.isfinite(g_cv[i, c])
        ]
        errors.append([float(np.percentile(err, 10)), float(np.percentile(err, 90))])
    for m, e in zip(models, errors, strict=True):
        m["progress_error"] = e
    return models, cuts, errors


def answers_for(
    models: Sequence[Mapping[str, Any]],
    cuts: Sequence[tuple[float, float]],
    table: Sequence[Sequence[Mapping[str, float]]],
    rows: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    n, k = len(rows), len(cuts)
    p, g = np.full((n, k), np.nan), np.full((n, k), np.nan)
    for i, feats in enumerate(table):
        for c, f in enumerate(feats):
            p[i, c], g[i, c] = tu.predict(models, c, f)
    return tu.replay(p, g, cuts, [tu.budget_of(r) for r in rows])


# ---------------------------------------------------------------- tune


def tune(out: Path) -> None:
    rows = cal.load_half(out, "tuning")
    print(f"tuning half: {len(rows)} labelled runs", flush=True)
    table, _ = _table(rows, USE_THEORY)
    models, cuts, errors = pipeline(rows, table, USE_THEORY)
    theory_rows = [r for r in rows if r.get("theory")]
    theory_model = _theory_model(theory_rows)
    for c, (lo, hi) in enumerate(cuts):
        print(f"  checkpoint {c}: thresholds ({lo:.3f}, {hi:.3f}), progress error {errors[c]}")
    _write_calibrated(models, cuts, theory_model, len(rows))


def _theory_model(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """P(trains) from the theory probes alone (the engine's answer before the first step)."""
    from depthlab.diagnosis.verdict import theory_features

    feats = [
        {**theory_features(r["theory"], r["spec"]["train"]),
         "log10_lr": math.log10(float(r["spec"]["train"]["lr"])),
         "adaptive": 0.0 if r["spec"]["train"]["optimizer"] in ("sgd", "momentum") else 1.0}
        for r in rows
    ]  # fmt: skip
    fitted = tu.fit_checkpoint(
        feats, [r["progress"] for r in rows], [*tu.THEORY, "log10_lr", "adaptive"]
    )
    return fitted["p"]


def _round(x: Any) -> Any:
    """Floats to 6 significant digits (the stored models' precision), recursively."""
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list | tuple):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _write_calibrated(
    models: list[dict[str, Any]], cuts: list[tuple[float, float]], theory: Any, n: int
) -> None:
    """``depthlab/diagnosis/calibrated.json``: the pooled models once, the per-checkpoint
    progress errors and thresholds, the theory-only model."""
    path = Path(__file__).resolve().parent.parent / "depthlab" / "diagnosis" / "calibrated.json"
    first = models[0]
    if any(m["p"] != first["p"] or m["progress"] != first["progress"] for m in models):
        raise SystemExit("calibrated.json stores pooled models only (one model for all)")
    data = {
        "p": _round(first["p"]),
        "progress": _round(first["progress"]),
        "progress_error": [_round(m["progress_error"]) for m in models],
        "thresholds": [_round(list(c)) for c in cuts],
        "theory": _round(theory),
        "tuning_runs": n,
    }
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


# ---------------------------------------------------------------- report


def _cost_fn(
    rows: Sequence[Mapping[str, Any]],
    seconds: Sequence[Sequence[float]],
    curves: Mapping[str, Any],
    *,
    theory: bool,
    shared: bool,
) -> Any:
    share: dict[str, int] = {}
    for r in rows:
        share[cal.setup_key(r["spec"])] = share.get(cal.setup_key(r["spec"]), 0) + 1

    def cost(i: int, a: Mapping[str, Any]) -> float:
        r = rows[i]
        train = float(r["seconds"])
        per_step = train / max(int(r["steps"]), 1)
        c = a["checkpoint"]
        spent = per_step * a["step"] + sum(seconds[i][: c + 1])
        if theory:
            spent += float(r.get("theory_seconds") or 0.0)
        ref = (curves.get(cal.setup_key(r["spec"])) or {}).get("seconds", 0.0)
        frac = a["step"] / max(tu.checkpoint_steps(tu.budget_of(r))[-1], 1)
        ref_spent = ref * frac
        spent += ref_spent / share[cal.setup_key(r["spec"])] if shared else ref_spent
        return spent / train

    return cost


def report(out: Path) -> dict[str, Any]:
    from depthlab.diagnosis import calibrated

    tuning = cal.load_half(out, "tuning")
    test = cal.load_half(out, "test")
    curves_path = out / "reference_curves.json"
    curves = json.loads(curves_path.read_text()) if curves_path.exists() else {}
    print(f"tuning half {len(tuning)} runs, test half {len(test)} runs", flush=True)
    test_table, test_seconds = _table(test, USE_THEORY)
    models = calibrated.CURVE_MODELS
    cuts = [tuple(c) for c in calibrated.THRESHOLDS]
    answers = answers_for(models, cuts, test_table, test)
    prog = [r["progress"] for r in test]
    result: dict[str, Any] = {"n_tuning": len(tuning), "n_test": len(test)}
    single = _cost_fn(test, test_seconds, curves, theory=USE_THEORY, shared=False)
    shared = _cost_fn(test, test_seconds, curves, theory=USE_THEORY, shared=True)
    result["test"] = tu.summary(answers, prog, cost=single)
    result["test"]["cost_sweep_mean"] = tu.summary(answers, prog, cost=shared)["cost_mean"]
    result["test"]["cost_sweep_p90"] = tu.summary(answers, prog, cost=shared)["cost_p90"]
    # the labels' own ceiling: two seeds of the same configuration
    pairs = [(r["label"], r["seed2_label"]) for r in test if "seed2_label" in r]
    both = [(a, b) for a, b in pairs if a is not None and b is not None]
    result["seed_agreement"] = {
        "n": len(both),
        "agreement": sum(a == b for a, b in both) / max(len(both), 1),
        "n_with_second_seed": len(pairs),
    }
    # by kind, on the test half
    for kind in cal.KINDS:
        for value in sorted({r[kind] for r in test}):
            idx = [i for i, r in enumerate(test) if r[kind] == value]
            s = tu.summary([answers[i] for i in idx], [prog[i] for i in idx])
            result.setdefault("by_kind", {}).setdefault(kind, {})[value] = s
    # leave one kind out: fit on the tuning-half runs of the other kinds, score on the held-out
    # kind's runs of both halves
    everything = tuning + test
    full_table = _table(tuning, USE_THEORY)[0] + test_table
    loko: dict[str, Any] = {}
    for kind in cal.KINDS:
        for value in sorted({r[kind] for r in everything}):
            fit_idx = [i for i, r in enumerate(tuning) if r[kind] != value]
            held = [i for i, r in enumerate(everything) if r[kind] == value]
            if len(held) < 5 or len(fit_idx) < 40:
                continue
            m, c, _ = pipeline(
                [tuning[i] for i in fit_idx], [full_table[i] for i in fit_idx], USE_THEORY
            )
            a = answers_for(m, c, [full_table[i] for i in held], [everything[i] for i in held])
            loko[f"{kind}={value}"] = tu.summary(a, [everything[i]["progress"] for i in held])
            print(f"  LOKO {kind}={value}: {_line(loko[f'{kind}={value}'])}", flush=True)
    result["loko"] = loko
    result["baselines"] = baselines(tuning, test, curves)
    from depthlab.diagnosis.calibration import reliability

    result["reliability"] = reliability([a["p_trains"] for a in answers], prog)
    (out / "report-test.json").write_text(json.dumps(result, indent=1, default=float))
    _reliability_plot(result["reliability"], out / "reliability.png")
    print_report(result)
    return result


def _line(s: Mapping[str, float]) -> str:
    return (
        f"n={int(s['n']):4d} agreement {s['agreement']:.3f}  decided {s['decided_agreement']:.3f} "
        f"coverage {s['coverage']:.3f}  precision trainable {s['precision_trainable']:.3f} "
        f"won't {s['precision_wont']:.3f}  Spearman {s['spearman_progress']:.3f}"
    )


# ---------------------------------------------------------------- baselines


def _at(row: Mapping[str, Any], fraction: float) -> dict[str, float]:
    steps = max(1, math.ceil(fraction * tu.budget_of(row)))
    return tu.prefix_features(row, steps, fit=False)


def baselines(
    tuning: list[dict[str, Any]], test: list[dict[str, Any]], curves: Mapping[str, Any]
) -> dict[str, Any]:
    """The trial alone (a threshold on progress at 8 % of the budget, chosen on the tuning
    half), the median stopping rule against the reference's curve (trains when the run's mean
    loss so far is at most the reference's over as many steps), theory alone (the rules
    without the trial)."""
    from depthlab.diagnosis.verdict import assess

    out: dict[str, Any] = {}
    f_tune = [_at(r, 0.08) for r in tuning]
    f_test = [_at(r, 0.08) for r in test]

    def below(f: Mapping[str, float]) -> float:
        return -1.0 if "diverged" in f else f.get("below", -1.0)

    grid = sorted({below(f) for f in f_tune})
    lab = [cal.label(r["progress"]) for r in tuning]
    best = max(
        grid,
        key=lambda th: sum((below(f) >= th) == t for f, t in zip(f_tune, lab, strict=True)
                           if t is not None),
    )  # fmt: skip
    out["trial_alone"] = _binary([below(f) >= best for f in f_test], test)
    out["trial_alone"]["threshold"] = best
    median = []
    for r in test:
        steps = max(1, math.ceil(0.08 * tu.budget_of(r)))
        ref = r.get("reference_curve")
        own = [v for v in r["loss"][:steps] if v is not None]
        if not ref or len(own) < steps:
            median.append(len(own) == steps and bool(ref is None))
            continue
        median.append(float(np.mean(own)) <= float(np.mean([v for v in ref[:steps] if v])))
    out["median_stopping"] = _binary(median, test)
    theory = []
    for r in test:
        results = dict(r.get("theory") or {})
        a = assess({k: v for k, v in results.items() if v is not None}, r["spec"]["train"])
        theory.append(a.verdict == "trainable")
    out["theory_alone"] = _binary(theory, test)
    return out


def _binary(says: Sequence[bool], rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    clear = [(s, r["label"]) for s, r in zip(says, rows, strict=True) if r["label"] is not None]
    yes = [t for s, t in clear if s]
    no = [t for s, t in clear if not s]
    return {
        "n": float(len(clear)),
        "agreement": sum(s == t for s, t in clear) / max(len(clear), 1),
        "precision_trainable": sum(yes) / max(len(yes), 1),
        "precision_wont": sum(not t for t in no) / max(len(no), 1),
    }


def print_report(r: Mapping[str, Any]) -> None:
    t = r["test"]
    print(
        f"\ntest half: {r['n_test']} runs ({int(t['n'])} clear, {int(t['n_ambiguous'])} ambiguous)"
    )
    print(f"  agreement (undecided by P ≥ 0.5)   {t['agreement']:.3f}")
    print(f"  decided: agreement {t['decided_agreement']:.3f}, coverage {t['coverage']:.3f}")
    print(
        f"  precision: trainable {t['precision_trainable']:.3f} "
        f"({int(t['n_trainable_calls'])} calls), won't train {t['precision_wont']:.3f} "
        f"({int(t['n_wont_calls'])} calls)"
    )
    print(f"  Spearman(predicted progress, progress) {t['spearman_progress']:.3f}")
    print(f"  budget read: mean {t['budget_read_mean']:.3f}")
    print(
        f"  cost / training time: single run mean {t['cost_mean']:.3f}, p90 {t['cost_p90']:.3f}; "
        f"in a sweep mean {t['cost_sweep_mean']:.3f}, p90 {t['cost_sweep_p90']:.3f}"
    )
    s = r["seed_agreement"]
    print(f"  two training seeds agree on {s['agreement']:.3f} of {s['n']} clear runs (ceiling)")
    print("leave one kind out (fit on the tuning half of the other kinds):")
    for k, v in r["loko"].items():
        print(f"  {k:24s} {_line(v)}")
    print("baselines, test half:")
    for k, v in r["baselines"].items():
        print(
            f"  {k:18s} agreement {v['agreement']:.3f}  precision trainable "
            f"{v['precision_trainable']:.3f}  won't {v['precision_wont']:.3f}"
        )


def _reliability_plot(rows: list[dict[str, float]], path: Path) -> None:
    from depthlab.report.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), layout="constrained")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="perfect calibration")
    ax.plot(
        [r["predicted"] for r in rows],
        [r["observed"] for r in rows],
        marker="o",
        color="#264653",
        label="depthlab P(trains)",
    )
    ax.set_xlabel("predicted P(trains)")
    ax.set_ylabel("observed fraction that trained")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("reliability, test half", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- cost (same process)


def cost(out: Path, limit: int) -> dict[str, Any]:
    """Diagnose (default probes, the sequential trial) and then train ``limit`` test-half runs
    in this one process; the diagnosis's time over the training's. The first diagnosis pays
    the process's one-off imports and is run once beforehand, not counted."""
    import torch

    from depthlab.diagnosis.run import diagnose_run
    from depthlab.spec import RunSpec
    from depthlab.train import run

    torch.set_num_threads(1)
    rows = [r for r in cal.load_half(out, "test") if r["family"] != "graph"][:limit]
    diagnose_run(RunSpec.from_dict(rows[0]["spec"]))  # imports, caches: not the run's cost
    fractions, parts = [], []
    for r in rows:
        spec = RunSpec.from_dict(r["spec"])
        d = diagnose_run(spec)[0]
        trained = run(spec, progress=False)
        fractions.append(d["seconds_total"] / trained.seconds)
        parts.append({k: v / trained.seconds for k, v in d["seconds"].items()})
        print(
            f"  {r['family']:7s} {r['dataset']:13s} {r['budget']:5s} diagnosis "
            f"{d['seconds_total']:.2f}s training {trained.seconds:.2f}s "
            f"({fractions[-1]:.3f}; trial read {d['trial']['steps']} steps)",
            flush=True,
        )
    fractions.sort()
    result = {
        "n": len(fractions),
        "mean": sum(fractions) / len(fractions),
        "median": fractions[len(fractions) // 2],
        "p90": fractions[int(0.9 * (len(fractions) - 1))],
        "by_probe_mean": {k: sum(p.get(k, 0.0) for p in parts) / len(parts) for k in parts[0]},
    }
    (out / "cost-test.json").write_text(json.dumps(result, indent=1))
    print(
        f"diagnosis / training time over {result['n']} test-half runs, same process: mean "
        f"{result['mean']:.3f}, median {result['median']:.3f}, p90 {result['p90']:.3f}; "
        f"by probe {json.dumps({k: round(v, 3) for k, v in result['by_probe_mean'].items()})}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["tune", "report", "cost"])
    parser.add_argument("--limit", type=int, default=20, help="cost: runs timed")
    parser.add_argument("--out", type=Path, default=Path("bench-out/verdict_calibration"))
    args = parser.parse_args(argv)
    if args.phase == "tune":
        tune(args.out)
    elif args.phase == "cost":
        cost(args.out, args.limit)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
