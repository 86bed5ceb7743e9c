"""Graph networks: depthlab's GCN/GAT under ``fit`` against plain PyG layers in a hand loop,
and sheaf diffusion's time per epoch as the graph grows.

Part 1: the same architecture both ways (Linear embedding + ReLU, ``depth`` graph layers with
ReLU, Linear readout; full-graph Adam on a CSBM, loss on the training nodes), built from
PyG's ``GCNConv``/``GATConv`` in a loop a user would write, and from depthlab's ``gcn``/``gat``
families trained by ``fit`` (which also scores val and test after the last epoch, as the hand
loop scores test). Interleaved rounds in one process; the figure is the ratio of epochs/s,
depthlab / PyG (target >= 0.95).

Part 2: one training epoch (forward, backward, Adam step) of depthlab's ``sheaf`` family at
1k, 10k and 100k nodes (mean degree 5), and the growth exponent log(t₁₀₀ₖ/t₁ₖ)/log(100)
(1 = linear in the graph size).

    python bench/gnn_overhead.py [--rounds 7] [--epochs 100] [--threads 1] [--skip-sheaf]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, TrainSpec, build_model, fit, load_data


class PyGNet(nn.Module):
    """What a user writes with PyG: embedding, conv layers, readout."""

    def __init__(self, conv: str, in_dim: int, width: int, out_dim: int, depth: int) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv

        self.embed = nn.Linear(in_dim, width)
        make = {"gcn": lambda: GCNConv(width, width), "gat": lambda: GATConv(width, width)}[conv]
        self.convs = nn.ModuleList(make() for _ in range(depth))
        self.readout = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.embed(x))
        for conv in self.convs:
            h = F.relu(conv(h, edge_index))
        return self.readout(h)


def hand_loop(model, x, y, edge_index, train, test, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x, edge_index).argmax(1)[test] == y[test]).float().mean().item()


def overhead(family: str, data, args) -> tuple[float, float]:
    arch = ArchSpec(family=family, depth=args.depth, width=args.width)
    spec = TrainSpec(optimizer="adam", lr=0.01, epochs=args.epochs, batch_size=0, eval_every=0)
    ours, theirs = [], []
    for r in range(args.rounds + 1):  # round 0 warms up both
        torch.manual_seed(r)
        net = PyGNet(family, data.in_shape[0], args.width, data.out_dim, args.depth)
        t = time.perf_counter()
        hand_loop(
            net,
            data.x_train,
            data.y_train,
            data.edge_index,
            data.masks["train"],
            data.masks["test"],
            args.epochs,
            0.01,
        )
        hand = time.perf_counter() - t
        model = build_model(
            arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=r, graph=data.edge_index
        )
        t = time.perf_counter()
        fit(model, data, spec.replace(seed=r), progress=False)
        ours_t = time.perf_counter() - t
        if r:
            theirs.append(args.epochs / hand)
            ours.append(args.epochs / ours_t)
    return statistics.median(ours), statistics.median(theirs)


def sheaf_epoch(n: int, args) -> float:
    data = load_data(DataSpec(name="csbm", n_samples=n, n_classes=3, degree=5.0, seed=0))
    arch = ArchSpec(family="sheaf", depth=args.depth, width=16, stalk_dim=2)
    model = build_model(
        arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=0, graph=data.edge_index
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    mask = data.masks["train"]
    times = []
    for i in range(4):  # the first epoch warms up
        t = time.perf_counter()
        loss = F.cross_entropy(model(data.x_train)[mask], data.y_train[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--skip-sheaf", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_data(DataSpec(name="csbm", n_samples=args.nodes, n_classes=3, degree=10.0))
    print(
        f"CSBM {args.nodes} nodes, {data.edge_index.shape[1] // 2} edges; depth {args.depth}, "
        f"width {args.width}, {args.epochs} full-graph epochs, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds"
    )
    for family in ("gcn", "gat"):
        o, h = overhead(family, data, args)
        print(
            f"{family}: PyG hand loop {h:8.1f} epochs/s, depthlab fit {o:8.1f} epochs/s, "
            f"ratio depthlab/PyG = {o / h:.3f}  (target >= 0.95)"
        )
    if args.skip_sheaf:
        return
    sizes = (1_000, 10_000, 100_000)
    times = {}
    for n in sizes:
        times[n] = sheaf_epoch(n, args)
        print(f"sheaf diffusion, {n:>7} nodes: {times[n] * 1e3:9.1f} ms per epoch")
    growth = math.log(times[sizes[-1]] / times[sizes[0]]) / math.log(sizes[-1] / sizes[0])
    print(f"growth exponent 1k → 100k nodes: {growth:.2f}  (1 = linear)")


if __name__ == "__main__":
    main()
