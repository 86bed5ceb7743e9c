"""The MNIST-1D reference table, and the CNN's advantage vanishing on shuffled sequences.

Greydanus 2020 ("Scaling down deep learning") reports test accuracies of about 32 % (logistic
regression), 68 % (MLP) and 94 % (CNN) on MNIST-1D. The CNN's lead comes from its spatial
prior: with one fixed permutation of the 40 sequence positions (``mnist1d_shuffled``) an MLP,
which is blind to the order, is unchanged, while the CNN loses its advantage.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.presets import MNIST1D_REFERENCE, mnist1d_reference

TOLERANCE = 5.0  # points of test accuracy around each reference number
MIN_ORDERED_GAP = 15.0  # CNN − MLP on ordered sequences, points: the advantage exists
MAX_SHUFFLED_GAP = 5.0  # CNN − MLP on shuffled sequences, points: the advantage has disappeared
QUICK_EPOCHS = 15
FULL_SEEDS = 3


@register_claim
class MNIST1DTable(Claim):
    name = "mnist1d-table"
    paper = "Greydanus 2020, Scaling Down Deep Learning (MNIST-1D)"
    statement = (
        "On MNIST-1D, logistic regression, an MLP and a CNN reach about 32 %, 68 % and 94 % test "
        "accuracy; shuffling the sequence order removes the CNN's advantage over the MLP."
    )
    criterion = (
        f"full: mean test accuracy of each reference model within ±{TOLERANCE:g} points of "
        f"32/68/94; CNN − MLP >= {MIN_ORDERED_GAP:g} points on ordered sequences and "
        f"<= {MAX_SHUFFLED_GAP:g} points on shuffled ones. Quick: only the two gap checks, "
        f"with the same thresholds, on MLP and CNN trained for {QUICK_EPOCHS} epochs"
    )
    experiment_doc = (
        "The presets' reference recipe (depthlab.presets.mnist1d_reference: Adam, batch 50, "
        "cosine schedule, He init; logistic 20 epochs, MLP 2×100 and the 5,210-parameter CNN 40 "
        "epochs) on mnist1d and on mnist1d_shuffled (one fixed permutation of the positions). "
        f"Full: all three models, seeds 0-{FULL_SEEDS - 1}, mean test accuracy. Quick: MLP and "
        f"CNN only, seed 0, {QUICK_EPOCHS} epochs with the same cosine schedule compressed; the "
        "reference-table check needs the full recipe and is skipped in quick mode."
    )
    control_doc = (
        "The 'advantage disappears' check applied to the ordered dataset on both sides (the "
        "shuffled arm trained on mnist1d): the CNN keeps its lead, so the check must fail."
    )
    full_time = "about 2.5 min on 2 cores (132 s measured)"
    threads = 1

    def experiment(self, ctx: Context) -> Evidence:
        from depthlab import run

        seeds = ctx.seeds(1 if ctx.quick else FULL_SEEDS)
        models = ("mlp", "cnn") if ctx.quick else ("logistic", "mlp", "cnn")
        acc: dict[str, dict[str, list[float]]] = {"ordered": {}, "shuffled": {}}
        rows: list[dict[str, Any]] = []
        for arm in ("ordered", "shuffled"):
            # The control trains the "shuffled" arm on ordered data.
            shuffled = arm == "shuffled" and not ctx.control
            for seed in seeds:
                for spec in mnist1d_reference(seed=seed, shuffled=shuffled):
                    if spec.name not in models:
                        continue
                    if ctx.quick:
                        spec = dataclasses.replace(
                            spec, train=dataclasses.replace(spec.train, epochs=QUICK_EPOCHS)
                        )
                    ctx.progress(f"{arm}: {spec.name}, seed {seed}, {spec.train.epochs} epochs")
                    result = run(spec, progress=False)
                    value = 100 * result.metrics.get("test_accuracy", float("nan"))
                    acc[arm].setdefault(spec.name, []).append(value)
                    rows.append(
                        {
                            "data": arm,
                            "dataset": spec.data.name,
                            "model": spec.name,
                            "seed": seed,
                            "epochs": spec.train.epochs,
                            "test_accuracy": value,
                            "reference": MNIST1D_REFERENCE[spec.name],
                        }
                    )
        mean = {arm: {m: statistics.fmean(v) for m, v in d.items()} for arm, d in acc.items()}
        checks: list[Check] = []
        if not ctx.quick:
            for model in models:
                got, ref = mean["ordered"][model], MNIST1D_REFERENCE[model]
                checks.append(
                    Check(
                        f"{model} test accuracy (ordered, %)",
                        round(got, 2),
                        f"in [{ref - TOLERANCE:g}, {ref + TOLERANCE:g}]",
                        abs(got - ref) <= TOLERANCE,
                    )
                )
        ordered_gap = mean["ordered"]["cnn"] - mean["ordered"]["mlp"]
        shuffled_gap = mean["shuffled"]["cnn"] - mean["shuffled"]["mlp"]
        checks.append(
            Check(
                "CNN − MLP on ordered sequences (points)",
                round(ordered_gap, 2),
                f">= {MIN_ORDERED_GAP:g}",
                ordered_gap >= MIN_ORDERED_GAP,
            )
        )
        checks.append(
            Check(
                "CNN − MLP on shuffled sequences (points)",
                round(shuffled_gap, 2),
                f"<= {MAX_SHUFFLED_GAP:g}",
                shuffled_gap <= MAX_SHUFFLED_GAP,
            )
        )
        return Evidence(
            checks=checks,
            table=rows,
            data={"mean_accuracy": mean, "reference": dict(MNIST1D_REFERENCE)},
        )

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        mean = evidence.data["mean_accuracy"]
        ref = evidence.data["reference"]
        models = list(mean["ordered"])
        xs = range(len(models))
        with claim_figure(path, figsize=(6, 4)) as (_, ax):
            w = 0.27
            ax.bar(
                [x - w for x in xs], [ref[m] for m in models], w, label="paper", color="tab:gray"
            )
            ax.bar(xs, [mean["ordered"][m] for m in models], w, label="ordered", color="tab:blue")
            ax.bar(
                [x + w for x in xs],
                [mean["shuffled"][m] for m in models],
                w,
                label="shuffled",
                color="tab:orange",
            )
            ax.set_xticks(list(xs), models)
            ax.set_ylabel("test accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_title("MNIST-1D reference models")
            ax.legend()
        return path
