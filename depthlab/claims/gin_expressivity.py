"""Sum aggregation separates multisets that mean and max cannot (Xu, Hu, Leskovec & Jegelka
2019, "How Powerful are Graph Neural Networks?").

Star graphs: a centre of one colour whose leaves carry a multiset of colours a, b, c (one-hot
features). Two stars whose leaf multisets differ are told apart by one round of 1-WL. A sum of
the leaves' features is injective on such multisets (for generic weights); a mean only sees
their proportions ({a} and {a, a} look alike) and a max only their support ({a, a, b} and
{a, b, b} look alike). The experiment runs one GIN layer, (1 + ε)h_centre + AGG_j h_j then the
MLP, with AGG = sum, mean or max, on each pair of stars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.spec import ArchSpec, TrainSpec

COLOURS = "abc"
#: multiset pairs (leaf colours of star A, of star B): every pair 1-WL-distinguishable
PAIRS = [
    ("a", "aa"),
    ("ab", "aabb"),
    ("aab", "abb"),
    ("abc", "aabbcc"),
    ("aaab", "abbb"),
]
#: the control: pairs whose supports differ, which mean and max separate too
CONTROL_PAIRS = [("a", "b"), ("ab", "ac"), ("aa", "bb"), ("ab", "c"), ("aab", "ccb")]
COPIES = 4  # stars of each member in the training graph
SEPARATED = 1e-4  # relative distance of the two centres' features that counts as separated
WIDTH = 16
EPOCHS = 300


def _same_under(kind: str, a: str, b: str) -> bool:
    """Whether the aggregation ``kind`` maps the multisets ``a`` and ``b`` alike."""
    if kind == "mean":
        return all(a.count(c) * len(b) == b.count(c) * len(a) for c in COLOURS)
    if kind == "max":
        return set(a) == set(b)
    return sorted(a) == sorted(b)


def star_graph(members: list[tuple[str, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint stars, one per (leaf colours, label): features (one-hot colour + a centre
    colour), both directions of every edge, and each centre's node index."""
    feats: list[int] = []
    src: list[int] = []
    dst: list[int] = []
    centres: list[int] = []
    for leaves, _ in members:
        centre = len(feats)
        centres.append(centre)
        feats.append(len(COLOURS))
        for colour in leaves:
            leaf = len(feats)
            feats.append(COLOURS.index(colour))
            src += [centre, leaf]
            dst += [leaf, centre]
    x = torch.nn.functional.one_hot(torch.tensor(feats), len(COLOURS) + 1).float()
    return x, torch.tensor([src, dst]), torch.tensor(centres)


def _separated(kind: str, pairs: list[tuple[str, str]], seed: int) -> list[bool]:
    """Per pair: do the centres' features after one GIN layer (random weights) differ?"""
    from depthlab.models import build_model

    x, edges, centres = star_graph([(m, 0) for pair in pairs for m in pair])
    spec = ArchSpec(family="gin", depth=1, width=WIDTH, aggr=kind)
    model = build_model(spec, in_shape=(x.shape[1],), out_dim=2, seed=seed, graph=edges)
    model = model.double().eval()
    with torch.no_grad():
        h = model.layers[0](model.embed(x.double()), None, model.prepare(x, edges))[centres]
    out = []
    for i in range(len(pairs)):
        ha, hb = h[2 * i], h[2 * i + 1]
        out.append(float((ha - hb).norm() / (ha.norm() + hb.norm() + 1e-30)) > SEPARATED)
    return out


def _train_accuracy(kind: str, pairs: list[tuple[str, str]], seed: int) -> float:
    """Train a one-layer GIN to tell the two members of every pair apart (labels on centres)."""
    from depthlab.data import Dataset
    from depthlab.models import build_model
    from depthlab.train import fit

    members = [(m, label) for pair in pairs for label, m in enumerate(pair)] * COPIES
    x, edges, centres = star_graph(members)
    y = torch.zeros(len(x), dtype=torch.long)
    y[centres] = torch.tensor([label for _, label in members])
    mask = torch.zeros(len(x), dtype=torch.bool)
    mask[centres] = True
    none = torch.zeros_like(mask)
    data = Dataset(
        "stars",
        "classification",
        x,
        y,
        x,
        y,
        x,
        y,
        2,
        edges,
        {"train": mask, "val": none, "test": none},
    )
    spec = ArchSpec(family="gin", depth=1, width=WIDTH, aggr=kind)
    model = build_model(spec, in_shape=(x.shape[1],), out_dim=2, seed=seed, graph=edges)
    result = fit(
        model,
        data,
        TrainSpec(optimizer="adam", lr=0.01, epochs=EPOCHS, batch_size=0, seed=seed),
        progress=False,
    )
    return float(result.metrics["train_accuracy"])


@register_claim
class GINExpressivity(Claim):
    name = "gin-expressivity"
    paper = "Xu, Hu, Leskovec & Jegelka 2019, How Powerful are Graph Neural Networks?"
    statement = (
        "Sum aggregation separates 1-WL-distinguishable neighbour multisets that mean and max "
        "aggregation cannot."
    )
    criterion = (
        "on 5 pairs of stars with different leaf multisets: one GIN layer with sum separates "
        f"every pair (relative distance > {SEPARATED:g}) at every seed and trains to 100 % "
        "accuracy on the centres; with mean it separates none of the pairs of equal "
        "proportions and with max none of the pairs of equal support, and both train to "
        "below 90 % accuracy"
    )
    experiment_doc = (
        "Stars with a centre of a fourth colour and leaves coloured a, b, c (one-hot "
        "features): {a}/{a,a}, {a,b}/{a,a,b,b}, {a,a,b}/{a,b,b}, {a,b,c}/{a,a,b,b,c,c}, "
        "{a,a,a,b}/{a,b,b,b} (ten distinct multisets, so no star has two labels). "
        "Separation: the centres' features after one GIN layer (width 16, "
        "He init, float64) at seeds 0-2 (full: 0-9). Training: a graph of 4 stars per member, "
        "labels on the centres, Adam lr 0.01, 300 full-graph epochs, one seed (full: 3). A first "
        "version paired {a,a,a,b} with {a,b}, which gave the star {a,b} two labels; sum then "
        "trained to 90 % (the one contradictory pair), which the distinct multisets fixed."
    )
    control_doc = (
        "Pairs whose supports differ ({a}/{b}, {a,b}/{a,c}, {a,a}/{b,b}, {a,b}/{c}, "
        "{a,a,b}/{c,c,b}): mean and max separate them too, so 'mean and max cannot' fails."
    )
    full_time = "about 20 s on 2 cores"
    threads = 1

    def experiment(self, ctx: Context) -> Evidence:
        pairs = CONTROL_PAIRS if ctx.control else PAIRS
        seeds = ctx.seeds(3 if ctx.quick else 10)
        rows: list[dict[str, Any]] = []
        separated: dict[str, list[list[bool]]] = {}
        for kind in ("sum", "mean", "max"):
            ctx.progress(f"{kind}: separation at {len(seeds)} seeds")
            separated[kind] = [_separated(kind, pairs, s) for s in seeds]
        train_seeds = ctx.seeds(1 if ctx.quick else 3)
        accuracy = {}
        for kind in ("sum", "mean", "max"):
            ctx.progress(f"{kind}: training")
            accuracy[kind] = min(_train_accuracy(kind, pairs, s) for s in train_seeds)
        for i, (a, b) in enumerate(pairs):
            row: dict[str, Any] = {"pair": f"{{{','.join(a)}}} vs {{{','.join(b)}}}"}
            for kind in ("sum", "mean", "max"):
                row[f"{kind}_separates"] = f"{sum(s[i] for s in separated[kind])}/{len(seeds)}"
            rows.append(row)
        sum_all = all(all(s) for s in separated["sum"])
        checks = [Check("sum separates every pair at every seed", sum_all, "True", sum_all)]
        for kind in ("mean", "max"):
            blind = [i for i, (a, b) in enumerate(pairs) if _same_under(kind, a, b)]
            hits = sum(s[i] for s in separated[kind] for i in blind)
            checks.append(
                Check(
                    f"{kind}: separations among its {len(blind)} blind pairs (all seeds)",
                    hits,
                    "== 0 and >= 1 blind pair",
                    hits == 0 and len(blind) >= 1,
                )
            )
        checks.append(
            Check("sum: training accuracy", accuracy["sum"], ">= 1.0", accuracy["sum"] >= 1.0)
        )
        for kind in ("mean", "max"):
            checks.append(
                Check(f"{kind}: training accuracy", accuracy[kind], "< 0.9", accuracy[kind] < 0.9)
            )
        return Evidence(checks=checks, table=rows, data={"accuracy": accuracy})

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        acc = evidence.data["accuracy"]
        with claim_figure(path, figsize=(5, 3.5)) as (_, ax):
            kinds = list(acc)
            ax.bar(kinds, [acc[k] for k in kinds], color=["tab:green", "tab:gray", "tab:gray"])
            ax.axhline(0.5, color="k", lw=0.8, ls=":")
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("training accuracy on the star centres")
            ax.set_title("one GIN layer: sum vs mean vs max aggregation")
        return path
