"""Guidance by a CNN makes a deep MLP generalise better on MNIST-1D (Subramaniam et al. 2024).

The target is a deep ReLU MLP, which overfits MNIST-1D (train accuracy near 100 %, test far
below the 2-layer reference MLP's 68 %). The guide is the MNIST-1D reference CNN, untrained:
the paper states that an untrained guide transfers part of its architecture's prior, and that
this overcomes the immediate overfitting of fully connected networks on vision tasks, so the
untrained guide is the sharper test of that statement (chosen before any run). Each seed trains
the same MLP from the same init twice, unguided and with ``guidance`` (weight 1, ``layers:
auto``), and compares test accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.presets import mnist1d_reference
from depthlab.spec import ArchSpec, DataSpec, RunSpec, TrainSpec
from depthlab.train import run

MIN_MEAN_GAIN = 2.0  # points of test accuracy, fixed before tuning
DEPTH, WIDTH = 8, 100
WEIGHT = 1.0


def target_arch() -> ArchSpec:
    return ArchSpec(family="mlp", depth=DEPTH, width=WIDTH, act="relu", init="he")


def guide_arch(control: bool) -> ArchSpec:
    """The reference CNN, or for the control an MLP of the target's own architecture."""
    return target_arch() if control else mnist1d_reference()[2].arch


def run_spec(seed: int, epochs: int, technique: dict[str, Any] | None) -> RunSpec:
    train = TrainSpec(
        optimizer="adam",
        lr=1e-3,
        epochs=epochs,
        batch_size=50,
        schedule="cosine",
        seed=seed,
        eval_every=0,
        techniques=(technique,) if technique else (),
    )
    data = DataSpec(name="mnist1d", seed=0, val_fraction=0.0)
    return RunSpec(name="guidance", arch=target_arch(), data=data, train=train)


def guidance_entry(guide: ArchSpec, seed: int, guide_train: TrainSpec | None) -> dict[str, Any]:
    return {
        "name": "guidance",
        "guide": guide.to_dict(),
        "guide_train": guide_train.to_dict() if guide_train else None,
        # A distinct init seed: the control's MLP guide must not be the target's own init.
        "guide_seed": 1000 + seed,
        "weight": WEIGHT,
        "layers": "auto",
    }


def measure_test_accuracy(spec: RunSpec) -> float:
    result = run(spec, progress=False)
    return 100 * result.metrics.get("test_accuracy", float("nan"))


@register_claim
class GuidanceClaim(Claim):
    name = "guidance"
    paper = (
        "Subramaniam et al. 2024, Training the Untrainable: Introducing Inductive Bias via "
        "Representational Alignment"
    )
    statement = (
        "A deep MLP guided (layerwise CKA) by an untrained CNN reaches higher MNIST-1D test "
        "accuracy than the same MLP trained alone."
    )
    criterion = (
        "over 3 seeds (5 in full mode), guided test accuracy > unguided in every seed, and "
        f"the mean gain is >= {MIN_MEAN_GAIN:g} points; an MLP guide (the control) fails it"
    )
    experiment_doc = (
        f"MNIST-1D (4,000 train / 1,000 test). Target: MLP depth {DEPTH}, width {WIDTH}, ReLU, "
        "He init; Adam lr 1e-3, batch 50, cosine schedule; quick 10 epochs × 3 seeds, full 20 "
        "epochs × 5 seeds. Guide: the reference CNN (depth 3, width 25, kernels 5/3/3, "
        f"stride 2), untrained (chosen from the paper's statement before any run), init seed "
        f"1000+seed; guidance weight {WEIGHT:g}, layers auto "
        "(the 3 CNN hidden layers paired with MLP hidden layers 3, 6 and 8). Full mode also "
        "records a trained-guide arm (guide fitted 10 epochs, Adam lr 2e-2) for information; "
        "it is not part of the criterion. Settings tried on seed 0 (20 epochs) before fixing "
        "weight 1 / auto (guide init seed = run seed then): unguided 49.7 %; untrained-CNN "
        "guide weight 0.3 auto 50.6, weight 1 auto 50.7, weight 1 all-layers 50.5, weight 5 "
        "auto 47.1; trained-CNN guide weight 1 54.2; untrained MLP guide 46.6. Seed 1: "
        "unguided 53.6, untrained-CNN weight 1 52.2."
    )
    control_doc = (
        "the guide is an untrained MLP of the target's own architecture (other init seed): "
        "no convolutional prior to transfer"
    )
    full_time = "about 1.5 min on 2 cores (76 s measured, one other job running; 5 seeds × 3 runs)"
    reproduces = False
    analysis = (
        "Measured (test accuracy %, unguided → guided by the untrained CNN). Full mode, 20 "
        "epochs: seed 0 49.7 → 50.6, seed 1 53.6 → 52.7, seed 2 50.6 → 51.4, seed 3 52.0 → "
        "47.6, seed 4 51.7 → 49.2: guided wins 2 of 5 seeds, mean gain −1.2 points. Quick mode, "
        "10 epochs: 47.7 → 45.9, 50.4 → 46.4, 47.5 → 45.9 (0 of 3, mean −2.5). The untrained "
        "guide does not curb the deep MLP's overfitting here; weights 0.3–5 and both layer "
        "mappings gave the same picture on seed 0. The trained-CNN arm recorded in full mode "
        "(not the pre-registered criterion) does help in every seed: 52.0, 56.3, 54.6, 53.5, "
        "54.5 (mean gain +2.7 points), so the CKA term does transfer something from a guide — "
        "a trained guide's knowledge — but the architectural prior of a randomly initialised "
        "3-layer, 25-channel CNN on 40-sample sequences, seen through 50-example minibatch CKA, "
        "is not enough. The paper reports its fully connected results on vision tasks; this "
        "small MNIST-1D setting with a tiny untrained guide does not reproduce them. The control "
        "(an untrained MLP guide) fails too, and is worse than the CNN guide (quick mean −3.7)."
    )

    def experiment(self, ctx: Context) -> Evidence:
        n_seeds, epochs = (3, 10) if ctx.quick else (5, 20)
        guide = guide_arch(ctx.control)
        label = "mlp" if ctx.control else "cnn"
        rows: list[dict[str, Any]] = []
        for seed in ctx.seeds(n_seeds):
            ctx.progress(f"seed {seed}: unguided")
            base = measure_test_accuracy(run_spec(seed, epochs, None))
            ctx.progress(f"seed {seed}: guided by an untrained {label}")
            guided = measure_test_accuracy(
                run_spec(seed, epochs, guidance_entry(guide, seed, None))
            )
            row: dict[str, Any] = {
                "seed": seed,
                "unguided": round(base, 2),
                f"guided ({label}, untrained)": round(guided, 2),
                "gain": round(guided - base, 2),
            }
            if not ctx.quick and not ctx.control:
                ctx.progress(f"seed {seed}: guided by a trained cnn (informational)")
                fitted = TrainSpec(
                    optimizer="adam",
                    lr=2e-2,
                    epochs=10,
                    batch_size=50,
                    schedule="cosine",
                    seed=seed,
                )
                trained = measure_test_accuracy(
                    run_spec(seed, epochs, guidance_entry(guide, seed, fitted))
                )
                row["guided (cnn, trained)"] = round(trained, 2)
            rows.append(row)
        gains = [r["gain"] for r in rows]
        wins = sum(g > 0 for g in gains)
        mean_gain = sum(gains) / len(gains)
        checks = [
            Check(
                "seeds where guided > unguided", wins, f"== {n_seeds} (every seed)", wins == n_seeds
            ),
            Check(
                "mean gain (points)",
                round(mean_gain, 2),
                f">= {MIN_MEAN_GAIN:g}",
                mean_gain >= MIN_MEAN_GAIN,
            ),
        ]
        return Evidence(
            checks=checks,
            table=rows,
            data={"rows": rows, "guide": label},
            notes=["test accuracy in percent; gain = guided − unguided, same seed and init"],
        )

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        rows = evidence.data["rows"]
        seeds = [r["seed"] for r in rows]
        with claim_figure(path, figsize=(5.5, 3.5), dpi=120) as (_, ax):
            for key in [k for k in rows[0] if k not in ("seed", "gain")]:
                ax.plot(seeds, [r[key] for r in rows], "o-", label=key)
            ax.set_xlabel("seed")
            ax.set_ylabel("MNIST-1D test accuracy (%)")
            ax.set_title(f"deep MLP ({DEPTH}×{WIDTH}): guided vs unguided")
            ax.set_xticks(seeds)
            ax.legend(fontsize=8)
        return path
