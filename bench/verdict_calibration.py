"""How often is ``depthlab diagnose`` right? The verdict against real training, on held-out runs.

Phases (each resumable; results under ``--out``, default ``bench-out/verdict_calibration``):

  label     train every run of the grid (``depthlab.diagnosis.calibration.GRID``, 290 runs of
            ~300 steps) and the shallow reference nets, with the sweep machinery (about an
            hour on 2 cores)
  diagnose  diagnose each run's network at initialisation for its own training setup (the
            default probes of a train-spec diagnosis, trial included), and the zero-cost proxies
  reference add the shallow reference net's trial to diagnoses made before the trial ran it
            (the same function the trial probe calls; new diagnoses carry it already)
  tune      fit P(trains) on the tuning half only and write depthlab/diagnosis/calibrated.py
  report    the test half: agreement, precision/recall of *trainable*, Brier score, Spearman,
            the diagnosis's time as a fraction of training, a reliability diagram (PNG), the
            zero-cost proxies side by side
  fix       train the advised run file of every test-half run called "won't train"

    python bench/verdict_calibration.py label --workers 2
    python bench/verdict_calibration.py diagnose --half tuning
    python bench/verdict_calibration.py tune
    python bench/verdict_calibration.py diagnose --half test
    python bench/verdict_calibration.py report
    python bench/verdict_calibration.py fix
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from depthlab.diagnosis import calibration as cal


def _store(out: Path) -> Any:
    from depthlab.store import SQLiteStore

    out.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(out / "runs.db")


def label(out: Path, workers: int) -> None:
    from depthlab.spec import RunSpec
    from depthlab.sweep import SweepSpec, run_sweep
    from depthlab.sweep.executors import LocalExecutor
    from depthlab.train import run

    refs_path = out / "references.json"
    out.mkdir(parents=True, exist_ok=True)
    refs: dict[str, Any] = json.loads(refs_path.read_text()) if refs_path.exists() else {}
    torch.set_num_threads(1)
    for spec in cal.reference_runs():
        if spec["name"] in refs:
            continue
        result = run(RunSpec.from_dict(spec), progress=False)
        refs[spec["name"]] = {
            "state": result.state.value,
            "test_accuracy": result.metrics.get("test_accuracy", float("nan")),
            "seconds": result.seconds,
        }
        refs_path.write_text(json.dumps(refs, indent=1))
        print(spec["name"], refs[spec["name"]], flush=True)
    with _store(out) as store:
        for sweep in cal.GRID:
            started = time.perf_counter()
            summary = run_sweep(
                SweepSpec.from_dict(sweep),
                store,
                LocalExecutor(workers=workers),
                progress=False,
            )
            print(
                f"{sweep['name']}: {summary.counts} in {time.perf_counter() - started:.0f} s",
                flush=True,
            )


# ---------------------------------------------------------------- diagnose


def _labelled(out: Path, half: str) -> list[Any]:
    return cal.finished_runs(out, half)


def _diagnose_one(job: tuple[dict[str, Any], bool]) -> dict[str, Any]:
    """Diagnose one run's network at init for its own setup (and time its training if asked)."""
    from depthlab.diagnosis.run import diagnose_run
    from depthlab.probes.proxies import zero_cost_proxies
    from depthlab.spec import RunSpec
    from depthlab.train import run

    torch.set_num_threads(1)
    spec_dict, time_training = job
    spec = RunSpec.from_dict(spec_dict)
    result, model, batch = diagnose_run(spec)
    seconds = result["seconds_total"]  # the diagnosis alone, data loading not included
    proxies: dict[str, Any] = {}
    try:
        proxies = zero_cost_proxies(model, batch.head(64))
    except Exception as err:  # noqa: BLE001 - a proxy that cannot score this net is recorded
        proxies = {"error": str(err).splitlines()[0]}
    training = None
    if time_training:
        training = run(spec, progress=False).seconds
    return {
        "diagnosis": result,
        "seconds": seconds,
        "training_seconds": training,
        "proxies": proxies,
    }


def diagnose_half(out: Path, half: str, workers: int) -> None:
    import multiprocessing

    from depthlab._json import to_json

    path = out / f"diagnoses-{half}.jsonl"
    done = set()
    if path.exists():
        done = {json.loads(line)["run_id"] for line in path.read_text().splitlines() if line}
    records = [r for r in _labelled(out, half) if r.run_id not in done]
    print(f"{half}: {len(records)} runs to diagnose ({len(done)} done)", flush=True)
    jobs = [(dict(r.spec), i % 6 == 0) for i, r in enumerate(records)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool, path.open("a") as fh:
        for k, (record, res) in enumerate(
            zip(records, pool.imap(_diagnose_one, jobs), strict=True)
        ):
            line = json.dumps(to_json({"run_id": record.run_id, **res}), allow_nan=False)
            fh.write(line + "\n")
            fh.flush()
            if k % 20 == 0:
                print(f"  {k + 1}/{len(records)}", flush=True)


# ---------------------------------------------------------------- labels and features


def _outcomes(out: Path, half: str) -> list[dict[str, Any]]:
    return cal.load_half(out, half)


def tune(out: Path) -> None:
    """Fit P(trains) on the tuning half only and write ``depthlab/diagnosis/calibrated.py``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from depthlab.diagnosis.verdict import TRIAL_FEATURES, features, optimizer_family

    rows = _outcomes(out, "tuning")
    print(f"tuning half: {len(rows)} diagnosed runs")
    models: dict[str, Any] = {}
    for family in ("sgd", "adaptive"):
        fam = [
            r
            for r in rows
            if optimizer_family(r["diagnosis"]["setup"]["optimizer"]) == family
            and r["label"] is not None
        ]
        for kind in ("full", "theory"):
            feats = [features(r["diagnosis"], r["diagnosis"]["setup"]) for r in fam]
            names = sorted(
                {k for f in feats for k in f if kind == "full" or k not in TRIAL_FEATURES}
            )
            # a missing feature is filled with its tuning mean, as probability() does
            means = {k: float(np.mean([f[k] for f in feats if k in f])) for k in names}
            x = np.array([[f.get(k, means[k]) for k in names] for f in feats])
            y = np.array([bool(r["label"]) for r in fam])
            mean, scale = x.mean(0), x.std(0)
            scale[scale == 0] = 1.0
            z = (x - mean) / scale
            clf = LogisticRegression(C=1.0, max_iter=1000)
            cv = cross_val_predict(clf, z, y, cv=5, method="predict_proba")[:, 1]
            clf.fit(z, y)
            agree = float(((cv >= 0.5) == y).mean())
            tp = int(((cv >= 0.5) & y).sum())
            fp = int(((cv >= 0.5) & ~y).sum())
            print(
                f"  {family}/{kind}: n={len(y)} trains={int(y.sum())} 5-fold agreement "
                f"{agree:.3f} precision {tp / max(tp + fp, 1):.3f}"
            )
            for name, w in sorted(zip(names, clf.coef_[0], strict=True), key=lambda t: -abs(t[1])):
                print(f"      {name:24s} {w:+.3f}")
            models[f"{family}/{kind}"] = {
                "intercept": float(clf.intercept_[0]),
                "coefficients": {
                    n: (float(m), float(s), float(w))
                    for n, m, s, w in zip(names, mean, scale, clf.coef_[0], strict=True)
                },
                "n": int(len(y)),
                "cv_agreement": agree,
            }
    _write_calibrated(models, len(rows))


def _write_calibrated(models: dict[str, Any], n_rows: int) -> None:
    path = Path(__file__).resolve().parent.parent / "depthlab" / "diagnosis" / "calibrated.py"
    text = path.read_text()
    head = text.split("MODELS: dict[str, dict[str, Any]] = ")[0]
    body = json.dumps(models, indent=4, sort_keys=True)  # floats, strings, lists: valid Python
    path.write_text(
        head
        + "MODELS: dict[str, dict[str, Any]] = "
        + body
        + f"\n#: Diagnosed tuning-half runs the models were fitted on.\nTUNING_RUNS = {n_rows}\n"
    )
    print(f"wrote {path}")


# ---------------------------------------------------------------- report (the test half)

PROXIES = ("grad_norm", "snip", "synflow", "naswot", "n_params")


def _assessed(rows: list[dict[str, Any]], kind: str = "full") -> list[tuple[float, str]]:
    """P(trains) and verdict of each row under the current calibrated models; ``theory``
    drops the trial's evidence (the ablation)."""
    from depthlab.diagnosis.verdict import assess

    out = []
    for r in rows:
        d = r["diagnosis"]
        if kind == "theory":
            d = {k: v for k, v in d.items() if k not in ("trial", "stability")}
        a = assess(d, d["setup"])
        out.append((a.p_trains, a.verdict))
    return out


def report(out: Path) -> dict[str, Any]:
    from depthlab.diagnosis.verdict import optimizer_family

    rows = _outcomes(out, "test")
    if not rows:
        raise SystemExit("no diagnosed test-half run: run the diagnose phase with --half test")
    full = _assessed(rows)
    theory = _assessed(rows, "theory")
    prog = [r["progress"] for r in rows]
    summary: dict[str, Any] = {"n_runs": len(rows), "by_family": {}}
    summary["all"] = cal.scores([p for p, _ in full], prog).to_dict()
    summary["theory_only"] = cal.scores([p for p, _ in theory], prog).to_dict()
    for family in ("sgd", "adaptive"):
        idx = [
            i
            for i, r in enumerate(rows)
            if optimizer_family(r["diagnosis"]["setup"]["optimizer"]) == family
        ]
        summary["by_family"][family] = cal.scores(
            [full[i][0] for i in idx], [prog[i] for i in idx]
        ).to_dict()
    for dataset in cal.DATASETS:
        idx = [i for i, r in enumerate(rows) if r["dataset"] == dataset]
        if idx:
            summary.setdefault("by_dataset", {})[dataset] = cal.scores(
                [full[i][0] for i in idx], [prog[i] for i in idx]
            ).to_dict()
    fractions = sorted(
        r["seconds"] / r["training_seconds"] for r in rows if r.get("training_seconds")
    )
    if fractions:
        summary["time_fraction"] = {
            "n": len(fractions),
            "median": fractions[len(fractions) // 2],
            "mean": sum(fractions) / len(fractions),
            "p90": fractions[int(0.9 * (len(fractions) - 1))],
        }
    proxies = {}
    for name in PROXIES:
        pairs = [
            (float(r["proxies"][name]), r["progress"])
            for r in rows
            if isinstance((r.get("proxies") or {}).get(name), int | float)
            and math.isfinite(r["proxies"][name])
        ]
        if pairs:
            proxies[name] = {
                "n": len(pairs),
                "spearman": cal.spearman([a for a, _ in pairs], [b for _, b in pairs]),
            }
    summary["zero_cost_proxies"] = proxies
    summary["reliability"] = cal.reliability([p for p, _ in full], prog)
    _reliability_plot(summary["reliability"], out / "reliability.png")
    (out / "report-test.json").write_text(json.dumps(summary, indent=1))
    _print_summary(summary)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    def line(name: str, x: dict[str, float]) -> str:
        return (
            f"{name:22s} n={x['n']:4d} (+{x['n_ambiguous']} ambiguous)  agreement "
            f"{x['agreement']:.3f}  precision {x['precision']:.3f}  recall {x['recall']:.3f}  "
            f"Brier {x['brier']:.3f}  Spearman {x['spearman']:.3f}"
        )

    print(f"test half: {s['n_runs']} runs")
    print(line("all", s["all"]))
    for family, x in s["by_family"].items():
        print(line(f"  optimizer {family}", x))
    for dataset, x in s.get("by_dataset", {}).items():
        print(line(f"  data {dataset}", x))
    print(line("theory only (no trial)", s["theory_only"]))
    if "time_fraction" in s:
        t = s["time_fraction"]
        print(
            f"diagnosis time / training time over {t['n']} runs: median {t['median']:.3f}, "
            f"mean {t['mean']:.3f}, 90th percentile {t['p90']:.3f}"
        )
    for name, x in s["zero_cost_proxies"].items():
        print(f"zero-cost proxy {name:9s} Spearman with progress {x['spearman']:+.3f} (n={x['n']})")


def _reliability_plot(rows: list[dict[str, float]], path: Path) -> None:
    from depthlab.report.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), layout="constrained")
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="perfect calibration")
    xs = [r["predicted"] for r in rows]
    ys = [r["observed"] for r in rows]
    ax.plot(xs, ys, marker="o", color="#264653", label="depthlab P(trains)")
    for r in rows:
        ax.annotate(
            f"{int(r['n'])}",
            (r["predicted"], r["observed"]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    ax.set_xlabel("predicted P(trains)")
    ax.set_ylabel("observed fraction that trained")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("reliability, test half (runs per bin)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- fix (advice, test half)


def _fix_one(job: dict[str, Any]) -> dict[str, Any]:
    from depthlab.diagnosis.advice import advise
    from depthlab.diagnosis.run import diagnose_run
    from depthlab.diagnosis.sources import dataset_source
    from depthlab.spec import RunSpec
    from depthlab.train import run

    torch.set_num_threads(1)
    spec = RunSpec.from_dict(job["spec"])
    source = dataset_source(spec.data, spec.train.loss)  # a fix never changes the data

    def check(fixed: Any) -> dict[str, Any]:
        return diagnose_run(fixed, source=source)[0]

    fix = advise(spec, job["verdict"], check, stable_lr=job.get("stable_lr"), tries=3)
    if fix is None:
        return {"edit": None}
    result = run(fix["spec"], progress=False)
    return {
        "edit": fix["edit"],
        "checked": fix["checked"],
        "p_trains": fix["p_trains"],
        "state": result.state.value,
        "test_accuracy": result.metrics.get("test_accuracy", float("nan")),
    }


def fix(out: Path, workers: int, limit: int) -> None:
    import multiprocessing

    rows = _outcomes(out, "test")
    assessed = _assessed(rows)
    wont = [(r, v) for r, (p, v) in zip(rows, assessed, strict=True) if v != "trainable"]
    wont = wont[:limit]
    refs = json.loads((out / "references.json").read_text())
    jobs = [
        {
            "spec": dict(r["record"].spec),
            "verdict": v,
            "stable_lr": (r["diagnosis"].get("stability") or {}).get("stable_lr"),
        }
        for r, v in wont
    ]
    print(f"advising {len(jobs)} test-half runs called won't-train", flush=True)
    ctx = multiprocessing.get_context("spawn")
    results = []
    with ctx.Pool(workers) as pool:
        for (r, v), res in zip(wont, pool.imap(_fix_one, jobs), strict=True):
            from depthlab.data import load_data
            from depthlab.spec import DataSpec

            d = r["dataset"]
            chance = cal.chance_accuracy(
                load_data(DataSpec.from_dict(r["record"].spec["data"])).y_test
            )
            ref = cal.reference_accuracy(
                {k: x["test_accuracy"] for k, x in refs.items() if k.startswith(f"reference-{d}-")}
            )
            after = (
                cal.progress(res["test_accuracy"], chance, ref)
                if res.get("state") == "COMPLETE"
                else 0.0
            )
            results.append(
                {
                    "run_id": r["run_id"],
                    "verdict": v,
                    "before": r["progress"],
                    "after": after,
                    **res,
                }
            )
            print(
                f"  {v:22s} {res.get('edit')} progress {r['progress']:+.2f} -> {after:+.2f}",
                flush=True,
            )
    (out / "fixes-test.json").write_text(json.dumps(results, indent=1))
    trained = [x for x in results if x["after"] >= cal.TRAINS_AT]
    failed_before = [x for x in results if x["before"] < cal.TRAINS_AT]
    rescued = [x for x in failed_before if x["after"] >= cal.TRAINS_AT]
    print(
        f"advised fix trains {len(trained)}/{len(results)} of the nets called won't-train "
        f"({len(rescued)}/{len(failed_before)} of those that really did not train)"
    )


# ---------------------------------------------------------------- reference (backfill)


def reference(out: Path) -> None:
    """Add the shallow reference net's trial to diagnoses made before the trial ran it.

    The reference depends only on the data, the train spec and the trial's length, so it is
    computed once per setup with the very function the trial probe calls."""
    from depthlab._json import from_json, to_json
    from depthlab.diagnosis.sources import dataset_batch
    from depthlab.probes.trial import reference_trial
    from depthlab.spec import RunSpec

    torch.set_num_threads(1)
    cache: dict[str, dict[str, Any]] = {}
    keep = ("diverged", "improvement", "progress", "loss_after_ratio")
    keep += ("accuracy_before", "accuracy_after")
    for half in cal.HALVES:
        path = out / f"diagnoses-{half}.jsonl"
        if not path.exists():
            continue
        entries = [from_json(json.loads(line)) for line in path.read_text().splitlines() if line]
        specs = {r.run_id: r.spec for r in cal.finished_runs(out, half)}
        added = 0
        for e in entries:
            trial = e["diagnosis"].get("trial")
            if not trial or "reference" in trial or e["run_id"] not in specs:
                continue
            spec = RunSpec.from_dict(specs[e["run_id"]])
            key = json.dumps([spec.data.to_dict(), spec.train.to_dict(), trial["planned_steps"]])
            if key not in cache:
                batch, _, out_dim = dataset_batch(spec.data, spec.train.loss)
                ref = reference_trial(batch, spec.train, trial["planned_steps"], 512, out_dim)
                cache[key] = {k: ref[k] for k in keep}
            trial["reference"] = cache[key]
            added += 1
        path.write_text("".join(json.dumps(to_json(e), allow_nan=False) + "\n" for e in entries))
        print(f"{half}: reference trial added to {added} diagnoses ({len(cache)} setups)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "phase", choices=["label", "diagnose", "reference", "tune", "report", "fix"]
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out/verdict_calibration"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--half", choices=cal.HALVES, default="tuning")
    parser.add_argument("--limit", type=int, default=60, help="fix: at most this many runs")
    args = parser.parse_args(argv)
    if args.phase == "label":
        label(args.out, args.workers)
    elif args.phase == "diagnose":
        diagnose_half(args.out, args.half, args.workers)
    elif args.phase == "reference":
        reference(args.out)
    elif args.phase == "tune":
        tune(args.out)
    elif args.phase == "report":
        report(args.out)
    elif args.phase == "fix":
        fix(args.out, args.workers, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
