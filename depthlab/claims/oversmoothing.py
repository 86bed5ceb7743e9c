"""Deep GCNs oversmooth; decoupling (DAGNN) and initial residual connections (GCNII) do not.

Repeated propagation by Â = D̃^{-1/2}(A + I)D̃^{-1/2} drives node features onto one direction:
the Dirichlet energy falls exponentially with depth (Rusch, Bronstein & Mishra 2023, "A survey
on oversmoothing in GNNs"), and a deep GCN's accuracy falls with it (Liu, Gao & Ji 2020). DAGNN
decouples the transformation from the propagation and weighs the propagation steps per node;
GCNII (Chen et al. 2020) mixes the input back into every layer, (1 − α)ÂH + αH⁰.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.spec import ArchSpec, DataSpec, RunSpec, TrainSpec

DATA = DataSpec(name="csbm", n_samples=500, n_classes=3, homophily=0.8, degree=5.0, signal=1.5)
WIDTH = 32
ALPHA = 0.1  # GCNII's initial-residual weight
DEEP = 32
MIN_RATE = 0.1  # e-folds per layer of the energy ratio, deep GCN at init
MIN_R2 = 0.8
KEPT_RATE = 0.05
ACC_DROP = 0.10
ACC_KEPT = 0.05

ARMS = {
    "gcn": {"family": "gcn"},
    "gcnii": {"family": "gcn", "initial_residual": ALPHA},
    "dagnn": {"family": "dagnn"},
}


def _spec(arm: dict[str, Any], depth: int, seed: int) -> RunSpec:
    return RunSpec(
        name=f"{arm['family']}-{depth}",
        arch=ArchSpec(depth=depth, width=WIDTH, **arm),
        data=DATA.replace(seed=seed),
        train=TrainSpec(
            optimizer="adam", lr=0.01, weight_decay=5e-4, epochs=200, batch_size=0, seed=seed
        ),
    )


def _energy_at_init(spec: RunSpec) -> dict[str, Any]:
    from depthlab import _registry as reg
    from depthlab.data import load_data
    from depthlab.models import build_model
    from depthlab.probes.base import ProbeBatch

    data = load_data(spec.data)
    model = build_model(
        spec.arch,
        in_shape=data.in_shape,
        out_dim=data.out_dim,
        seed=spec.train.seed,
        graph=data.edge_index,
    )
    batch = ProbeBatch.from_tensors(data.x_train, data.y_train)
    out: dict[str, Any] = reg.PROBES.get("smoothing")().run(model, batch)
    return out


@register_claim
class Oversmoothing(Claim):
    name = "oversmoothing"
    paper = (
        "Rusch, Bronstein & Mishra 2023, A Survey on Oversmoothing in Graph Neural Networks; "
        "Liu, Gao & Ji 2020, Towards Deeper Graph Neural Networks (DAGNN); Chen et al. 2020, "
        "Simple and Deep Graph Convolutional Networks (GCNII)"
    )
    statement = (
        "A deep GCN's Dirichlet energy decays exponentially with depth and its accuracy falls "
        "with depth; DAGNN and initial residual connections keep the accuracy (and initial "
        "residual the energy)."
    )
    criterion = (
        f"CSBM node classification: at depth {DEEP} the GCN's energy ratio at init falls by "
        f">= {MIN_RATE} e-folds per layer with a log-linear fit r² >= {MIN_R2}, and its mean "
        f"test accuracy is >= {ACC_DROP:.2f} below the depth-2 GCN's; GCN with initial "
        f"residual α = {ALPHA} at depth {DEEP} decays by <= {KEPT_RATE} per layer and, like "
        f"DAGNN at depth {DEEP}, stays within {ACC_KEPT:.2f} of the depth-2 GCN's accuracy"
    )
    experiment_doc = (
        "CSBM with 500 nodes, 3 classes, edge homophily 0.8, mean degree 5, signal 1.5 (70/10/20 "
        f"random node split); width {WIDTH}, ReLU, He init; Adam lr 0.01, weight decay 5e-4, "
        "200 full-graph epochs. The energy ratio is the smoothing probe's scale-free "
        "normalised Dirichlet energy, fitted over the layers at initialisation. Quick: depths "
        "2 and 32, seeds 0-1 (graph and init). Full: depths 2, 4, 8, 16, 32, 64, seeds 0-4."
    )
    control_doc = (
        f"The 'deep GCN' arm replaced by a GCN with initial residual α = {ALPHA}: its energy "
        "does not decay and its accuracy does not fall, so the first two checks must fail."
    )
    full_time = (
        "not measured; about 15 min on 2 cores estimated from the quick mode (72 s of CPU, "
        "157 s wall on a busy machine)"
    )
    threads = 1
    reproduces = False
    analysis = (
        "Quick mode, seeds 0-1: the GCN part holds — the depth-32 GCN's energy ratio falls by "
        "0.37 e-folds per layer (r² >= 0.98) and its test accuracy drops from 0.935 at depth 2 "
        "to 0.35 (chance 0.33); initial residual α = 0.1 keeps both (decay −0.001 per layer, "
        "accuracy 0.92). DAGNN at depth 32 fails the accuracy check: 0.645 on average, 0.93 at "
        "seed 0 but 0.36 at seed 1. Its output sums 33 sigmoid-gated propagation steps of "
        "similar size, so the initial logits are many times an MLP's (first-epoch training "
        "loss 10 and 15 nats at seeds 0 and 1); the seed-1 run collapses to a near-constant "
        "prediction and stays there (training accuracy 0.31). DAGNN's propagation steps "
        "themselves smooth (0.33 e-folds per layer): only the per-node gate keeps early steps."
    )

    def experiment(self, ctx: Context) -> Evidence:
        from depthlab import run

        depths = [2, DEEP] if ctx.quick else [2, 4, 8, 16, 32, 64]
        seeds = ctx.seeds(2 if ctx.quick else 5)
        arms = dict(ARMS)
        if ctx.control:
            arms["gcn"] = ARMS["gcnii"]
        rows: list[dict[str, Any]] = []
        acc: dict[str, dict[int, float]] = {a: {} for a in arms}
        rate: dict[str, dict[int, float]] = {a: {} for a in arms}
        r2: dict[str, dict[int, float]] = {a: {} for a in arms}
        curves: dict[str, list[float]] = {}
        done: dict[str, Any] = {}
        for arm_name, arm in arms.items():
            for depth in depths:
                ctx.progress(f"{arm_name} depth {depth}: {len(seeds)} seeds")
                accs, rates, fits = [], [], []
                for seed in seeds:
                    spec = _spec(arm, depth, seed)
                    key = spec.replace(name="").content_hash()
                    if key not in done:  # the control runs one configuration under two names
                        done[key] = (run(spec, progress=False), _energy_at_init(spec))
                    result, sm = done[key]
                    accs.append(result.metrics.get("test_accuracy", 0.0))
                    if depth > 1:
                        rates.append(sm["decay"]["relative_rate"])
                        fits.append(sm["decay"]["relative_r2"])
                        if seed == seeds[0] and depth == max(depths):
                            curves[arm_name] = [r["energy_ratio"] for r in sm["layers"][1:]]
                acc[arm_name][depth] = sum(accs) / len(accs)
                rate[arm_name][depth] = sum(rates) / len(rates) if rates else float("nan")
                r2[arm_name][depth] = min(fits) if fits else float("nan")
                rows.append(
                    {
                        "arm": arm_name,
                        "depth": depth,
                        "test_accuracy": acc[arm_name][depth],
                        "energy_decay_per_layer": rate[arm_name][depth],
                        "fit_r2": r2[arm_name][depth],
                    }
                )
        base = acc["gcn"][2]
        checks = [
            Check(
                f"GCN depth {DEEP}: energy ratio decay per layer",
                rate["gcn"][DEEP],
                f">= {MIN_RATE}",
                rate["gcn"][DEEP] >= MIN_RATE,
            ),
            Check(
                f"GCN depth {DEEP}: r² of the log-linear fit (worst seed)",
                r2["gcn"][DEEP],
                f">= {MIN_R2}",
                r2["gcn"][DEEP] >= MIN_R2,
            ),
            Check(
                f"GCN accuracy drop, depth 2 → {DEEP}",
                base - acc["gcn"][DEEP],
                f">= {ACC_DROP}",
                base - acc["gcn"][DEEP] >= ACC_DROP,
            ),
            Check(
                f"initial residual depth {DEEP}: energy decay per layer",
                rate["gcnii"][DEEP],
                f"<= {KEPT_RATE}",
                rate["gcnii"][DEEP] <= KEPT_RATE,
            ),
        ]
        for arm_name in ("gcnii", "dagnn"):
            gap = base - acc[arm_name][DEEP]
            checks.append(
                Check(
                    f"{arm_name} depth {DEEP}: accuracy below depth-2 GCN",
                    gap,
                    f"<= {ACC_KEPT}",
                    gap <= ACC_KEPT,
                )
            )
        return Evidence(
            checks=checks,
            table=rows,
            data={"depths": depths, "accuracy": acc, "curves": curves},
        )

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        data = evidence.data
        with claim_figure(path, 1, 2, figsize=(10, 4)) as (_, axes):
            for arm, curve in data["curves"].items():
                axes[0].semilogy(range(1, len(curve) + 1), curve, label=arm)
            axes[0].set_xlabel("layer")
            axes[0].set_ylabel("energy ratio at init")
            axes[0].set_title(f"depth {max(data['depths'])}")
            axes[0].legend()
            for arm, by_depth in data["accuracy"].items():
                ds = sorted(int(d) for d in by_depth)
                axes[1].plot(
                    ds,
                    [by_depth[d] if d in by_depth else by_depth[str(d)] for d in ds],
                    marker="o",
                    label=arm,
                )
            axes[1].set_xscale("log", base=2)
            axes[1].set_xlabel("depth")
            axes[1].set_ylabel("test accuracy")
            axes[1].legend()
        return path
