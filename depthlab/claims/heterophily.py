"""Sheaf diffusion beats GCN on heterophilic graphs (Bodnar et al. 2022, "Neural Sheaf
Diffusion: A Topological Perspective on Heterophily and Oversmoothing in GNNs").

GCN's propagation averages a node with its neighbours, which on a heterophilic graph (most
neighbours of another class) mixes the classes. Sheaf diffusion learns restriction maps that
can flip or rescale what travels along an edge, so the diffusion need not pull neighbours of
different classes together. On homophilous graphs both do well and the gap closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.spec import ArchSpec, DataSpec, RunSpec, TrainSpec

DATA = DataSpec(name="csbm", n_samples=500, n_classes=3, degree=5.0, signal=1.5)
DEPTH = 4
WIDTH = 16
LOW = (0.1, 0.2)
HIGH = 0.8
MIN_GAP = 0.05

ARMS = {
    "sheaf": {"family": "sheaf", "stalk_dim": 2, "sheaf_maps": "diagonal"},
    "gcn": {"family": "gcn"},
}


def _spec(arm: dict[str, Any], homophily: float, seed: int) -> RunSpec:
    return RunSpec(
        name=f"{arm['family']}-h{homophily:g}",
        arch=ArchSpec(depth=DEPTH, width=WIDTH, **arm),
        data=DATA.replace(homophily=homophily, seed=seed),
        train=TrainSpec(
            optimizer="adam", lr=0.01, weight_decay=5e-4, epochs=200, batch_size=0, seed=seed
        ),
    )


@register_claim
class Heterophily(Claim):
    name = "heterophily"
    paper = (
        "Bodnar, Di Giovanni, Chamberlain, Liò & Bronstein 2022, Neural Sheaf Diffusion: "
        "A Topological Perspective on Heterophily and Oversmoothing in GNNs"
    )
    statement = (
        "Sheaf diffusion beats GCN on heterophilic graphs (edge homophily <= 0.2); the gap "
        "closes as homophily rises."
    )
    criterion = (
        f"CSBM node classification, mean test accuracy over seeds: sheaf − GCN >= {MIN_GAP} "
        f"at edge homophily 0.1 and at 0.2, and the gap at homophily {HIGH} is at most half "
        "the mean gap at 0.1 and 0.2"
    )
    experiment_doc = (
        "CSBM with 500 nodes, 3 classes, mean degree 5, signal 1.5 (70/10/20 random node "
        f"split); depth {DEPTH}, width {WIDTH}, ReLU, He init, both arms: neural sheaf diffusion "
        "with diagonal restriction maps on 2-dimensional stalks, and GCN. Adam lr 0.01, weight "
        "decay 5e-4, 200 full-graph epochs. Quick: homophily 0.1, 0.2, 0.8, seeds 0-1. "
        "Full: homophily 0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, seeds 0-4. Measured in quick "
        "mode: sheaf 0.59 / 0.58 / 0.585 and GCN 0.31 / 0.28 / 0.915 at homophily 0.1 / 0.2 / "
        "0.8 (48 s). The criterion holds, but the sheaf network stays near the same accuracy "
        "at every homophily: its lead on heterophilic graphs fits it keeping each node's own "
        "features (X − act(Δ_F X)) as much as learned restriction maps, and it does not use "
        "homophilous "
        "edges as GCN does (an MLP arm would separate the two; not run here)."
    )
    control_doc = (
        "The 'heterophilic' levels replaced by homophilous ones (0.8 and 0.9): there sheaf "
        "diffusion has no edge over GCN to show, so the first checks must fail."
    )
    full_time = "not measured; about 4 min on 2 cores estimated from the quick mode"
    threads = 1

    def experiment(self, ctx: Context) -> Evidence:
        from depthlab import run

        low = (0.8, 0.9) if ctx.control else LOW
        levels = sorted({*low, HIGH} if ctx.quick else {*low, 0.0, 0.3, 0.5, 0.7, HIGH, 0.9})
        seeds = ctx.seeds(2 if ctx.quick else 5)
        acc: dict[str, dict[float, float]] = {a: {} for a in ARMS}
        rows: list[dict[str, Any]] = []
        for h in levels:
            for arm_name, arm in ARMS.items():
                ctx.progress(f"{arm_name} at homophily {h:g}: {len(seeds)} seeds")
                runs = [run(_spec(arm, h, s), progress=False) for s in seeds]
                acc[arm_name][h] = sum(r.metrics.get("test_accuracy", 0.0) for r in runs) / len(
                    runs
                )
            rows.append(
                {
                    "homophily": h,
                    "sheaf": acc["sheaf"][h],
                    "gcn": acc["gcn"][h],
                    "gap": acc["sheaf"][h] - acc["gcn"][h],
                }
            )
        gap = {h: acc["sheaf"][h] - acc["gcn"][h] for h in levels}
        checks = [
            Check(f"sheaf − GCN at homophily {h:g}", gap[h], f">= {MIN_GAP}", gap[h] >= MIN_GAP)
            for h in low
        ]
        mean_low = sum(gap[h] for h in low) / len(low)
        checks.append(
            Check(
                f"gap at homophily {HIGH:g} vs half the low-homophily gap ({mean_low / 2:.3f})",
                gap[HIGH],
                f"<= {mean_low / 2:.3f}",
                gap[HIGH] <= mean_low / 2,
            )
        )
        return Evidence(
            checks=checks,
            table=rows,
            data={
                "levels": levels,
                "sheaf": [acc["sheaf"][h] for h in levels],
                "gcn": [acc["gcn"][h] for h in levels],
            },
        )

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        with claim_figure(path, figsize=(6, 4)) as (_, ax):
            ax.plot(d["levels"], d["sheaf"], marker="o", label="sheaf diffusion")
            ax.plot(d["levels"], d["gcn"], marker="s", label="GCN")
            ax.set_xlabel("edge homophily of the CSBM")
            ax.set_ylabel("test accuracy")
            ax.legend()
        return path
