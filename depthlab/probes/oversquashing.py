"""Over-squashing: how much a node's representation can feel the nodes r hops away (Topping,
Di Giovanni, Chamberlain, Dong & Bronstein 2022; Di Giovanni, Giusti, Barbero, Luise, Liò &
Bronstein 2023, "On over-squashing in message passing neural networks").

The sensitivity of node v's representation after the last message-passing layer to node u's
input features,

    S_vu = ‖∂h_v^(L)/∂x_u‖_F     (a d × F block of the full-graph Jacobian),

is bounded by (c·Â)^L_vu for a message-passing network of L layers (Topping et al., Lemma 1):
it decays with the number and width of the paths from u to v, so information crossing a
bottleneck (a bridge, the root of a tree) is squashed however wide the layers are. h^(L) is the
output of the model's last message-passing layer (``smoothing.message_passing_layers``; the
model's output when it has none),
from the forward pass over the whole graph; one reverse pass per (target node, channel), so
the cost is T·d backward passes of the whole network (T targets, d channels): a 64-layer GCN
of width 32 on 300 nodes takes about 1.7 s per target on one busy core. Not among the default
probes: ask for it (``--probes smoothing,homophily,oversquashing``).

Per hop distance r (shortest path in edges): ``pairs``, ``mean`` S_vu, ``mean_relative`` (the
mean of S_vu / S_vv, each target against its own r = 0 value) and ``squashed_share``: the share
of pairs with S_vu < 1e-6 · S_vv. Beyond L hops a local message-passing network cannot see at
all (S = 0 exactly). ``decay_per_hop``: the least-squares slope of −ln(mean_relative) over
r = 1 … min(L, farthest r), in e-folds per hop.

Bottleneck evidence from the graph alone (``depthlab.probes.graph_geometry``): balanced Forman
curvature of every edge (its minimum, mean, share below −1, most negative edges) and the
Cheeger constant's spectral bounds with the Fiedler sweep cut (exact for ≤ 16 nodes), for
graphs of at most ``max_geometry_nodes`` nodes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from depthlab._device import wide_dtype
from depthlab.exceptions import ProbeError
from depthlab.probes.base import (
    Probe,
    ProbeBatch,
    frozen_statistics,
    functional_state,
    register_probe,
)
from depthlab.probes.graph_geometry import cheeger_bounds, curvature_summary, hop_distances
from depthlab.probes.graph_kernels import forward_and_pullback
from depthlab.probes.layers import recording
from depthlab.probes.ntk_func import quiet_vmap
from depthlab.probes.smoothing import message_passing_layers
from depthlab.spec import Spec
from depthlab.spec.base import check_min

SQUASHED = 1e-6


@dataclasses.dataclass(frozen=True)
class OversquashingParams(Spec):
    """``targets``: nodes v whose sensitivities are measured (drawn by the seed; every node when
    the graph has fewer); ``max_geometry_nodes``: the largest graph the curvature and Cheeger
    evidence are computed for (dense eigendecomposition)."""

    targets: int = 32
    max_geometry_nodes: int = 2000

    def _check(self) -> None:
        check_min("targets", self.targets, 1)
        check_min("max_geometry_nodes", self.max_geometry_nodes, 0)


def sensitivities(model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """``(T, N)`` float64: S_vu = ‖∂h_v^(L)/∂x_u‖_F for every target v and every node u."""
    layers = message_passing_layers(model)
    last = layers[-1] if layers else None
    params, rest = functional_state(model)
    state = {**params, **rest}
    index = torch.tensor(targets, dtype=torch.long, device=x.device)

    def f(z: torch.Tensor) -> torch.Tensor:
        if last is None:
            out = functional_call(model, state, (z,))
        else:
            with recording([("last", last)]) as calls:
                functional_call(model, state, (z,))
            out = calls[-1].output
        return out.reshape(len(z), -1)[index]

    out, pull = forward_and_pullback(f, x)
    t, d = out.shape
    squared = torch.zeros(t, len(x), dtype=wide_dtype(x.device), device=x.device)
    rows = torch.arange(t, device=x.device)
    for c in range(d):
        cot = torch.zeros(t, t, d, dtype=out.dtype, device=x.device)
        cot[rows, rows, c] = 1.0
        try:
            with quiet_vmap():
                (grad,) = vmap(pull)(cot)  # (T, N, F)
        except (RuntimeError, NotImplementedError):
            grad = torch.stack([pull(cot[i])[0] for i in range(t)])
        squared += grad.reshape(t, len(x), -1).to(squared.dtype).pow(2).sum(-1)
    return squared.sqrt()


def by_distance(sens: torch.Tensor, dist: np.ndarray, targets: list[int]) -> list[dict[str, Any]]:
    """The per-hop summary of the module docstring from sensitivities and hop distances."""
    s = sens.cpu().numpy()
    own = s[np.arange(len(targets)), targets]
    ok = own > 0
    rows = []
    finite = dist[np.isfinite(dist)]
    for r in sorted({int(v) for v in finite.tolist()}):
        mask = dist == r
        rel_mask = mask & ok[:, None]
        rel = (s / np.where(own > 0, own, 1.0)[:, None])[rel_mask]
        rows.append(
            {
                "r": r,
                "pairs": int(mask.sum()),
                "mean": float(s[mask].mean()),
                "mean_relative": float(rel.mean()) if rel.size else math.nan,
                "squashed_share": float((rel < SQUASHED).mean()) if rel.size else math.nan,
            }
        )
    return rows


def decay_per_hop(rows: list[dict[str, Any]], reach: int) -> float | None:
    """Least-squares slope of −ln(mean_relative) over 1 ≤ r ≤ reach (positive means)."""
    pts = [
        (r["r"], math.log(r["mean_relative"]))
        for r in rows
        if 1 <= r["r"] <= reach and r["mean_relative"] > 0
    ]
    if len(pts) < 2:
        return None
    rs, ys = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])
    slope = float(np.polyfit(rs, ys, 1)[0])
    return -slope


@register_probe("oversquashing")
class OversquashingProbe(Probe):
    """Sensitivity of node representations to nodes r hops away, and the graph's bottlenecks."""

    Params = OversquashingParams
    params: OversquashingParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        edge_index = getattr(model, "edge_index", None)
        if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2:
            raise ProbeError(
                "oversquashing needs a graph network (a model with an edge_index buffer, "
                "e.g. family gcn)"
            )
        if not torch.is_floating_point(batch.x):
            raise ProbeError("oversquashing differentiates node features: x must be real")
        x, n = batch.x, len(batch.x)
        gen = torch.Generator().manual_seed(seed)
        count = min(self.params.targets, n)
        targets = sorted(torch.randperm(n, generator=gen, device="cpu")[:count].tolist())
        depth = len(message_passing_layers(model)) or None
        with frozen_statistics(model, x), torch.enable_grad():
            sens = sensitivities(model, x, targets)
        dist = hop_distances(edge_index, n, targets)
        rows = by_distance(sens, dist, targets)
        finite = [r["r"] for r in rows]
        reach = min(depth or max(finite, default=0), max(finite, default=0))
        within = (dist >= 1) & (dist <= reach)
        own = sens.cpu().numpy()[np.arange(count), targets]
        rel = sens.cpu().numpy() / np.where(own > 0, own, 1.0)[:, None]
        result: dict[str, Any] = {
            "by_distance": rows,
            "decay_per_hop": decay_per_hop(rows, reach),
            "squashed_share_within_reach": float((rel[within] < SQUASHED).mean())
            if within.any()
            else None,
            "message_passing_layers": depth,
            "targets": count,
            "n_nodes": n,
            "at": "output" if depth is None else "last message-passing layer",
        }
        if n <= self.params.max_geometry_nodes:
            result["curvature"] = curvature_summary(edge_index, n)
            result["cheeger"] = cheeger_bounds(edge_index, n)
        return result
