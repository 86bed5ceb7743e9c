"""Where a graph squeezes information: hop distances, balanced Forman curvature, Cheeger bounds.

* ``hop_distances``: shortest-path lengths (edges) from some nodes to all (inf: unreachable).
* ``balanced_forman_curvature`` (Topping, Di Giovanni, Chamberlain, Dong & Bronstein 2022,
  "Understanding over-squashing and bottlenecks on graphs via curvature", Definition 1), for an
  edge i ~ j with degrees d_i, d_j:

      Ric(i, j) = 2/d_i + 2/d_j − 2 + 2|♯Δ|/max(d_i, d_j) + |♯Δ|/min(d_i, d_j)
                  + (|♯□ⁱ| + |♯□ʲ|) / (γ_max · max(d_i, d_j))

  and 0 when min(d_i, d_j) = 1. ♯Δ: the triangles on the edge (common neighbours); ♯□ⁱ: the
  neighbours k of i, not j and not adjacent to j, that close a 4-cycle i ~ k ~ w ~ j ~ i with
  w a neighbour of j neither i nor adjacent to i; γ_max: the most such w of any one k (either
  side); the 4-cycle term is 0 when there are none. Ric lies in (−2, ...]; a bridge between two
  dense parts has Ric near −2 (a barbell's bridge between two cliques of m nodes: 4/m − 2),
  grid edges 0, clique edges positive. Negative edges are bottlenecks.
* ``cheeger_bounds``: the Cheeger constant (conductance) h = min_S |∂S| / min(vol S, vol S̄)
  bounded by the spectral gap λ₁ of the normalised Laplacian, λ₁/2 ≤ h ≤ √(2λ₁) (Chung 1997);
  the sweep cut of the Fiedler vector D^{-1/2}v₁ is a cut that attains a value in
  [h, √(2λ₁)]. Up to ``EXACT_NODES`` nodes h itself is found by enumerating every cut. A small
  h is a bottleneck: few edges join two large parts. Dense eigendecomposition: small graphs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

EXACT_NODES = 16


def _adjacency(edge_index: torch.Tensor, n: int) -> list[set[int]]:
    adj: list[set[int]] = [set() for _ in range(n)]
    for u, v in edge_index.t().tolist():
        if u != v:
            adj[u].add(v)
            adj[v].add(u)
    return adj


def hop_distances(edge_index: torch.Tensor, n: int, sources: list[int]) -> np.ndarray:
    """``(len(sources), n)`` shortest-path lengths in edges (``inf`` where unreachable)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import shortest_path

    e = edge_index.cpu().numpy()
    a = sp.coo_matrix((np.ones(e.shape[1]), (e[0], e[1])), shape=(n, n)).tocsr()
    return np.asarray(shortest_path(a, directed=False, unweighted=True, indices=sources))


def balanced_forman_curvature(edge_index: torch.Tensor, n: int) -> dict[tuple[int, int], float]:
    """Ric(i, j) of every undirected edge (i < j), as in the module docstring."""
    adj = _adjacency(edge_index, n)
    out: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j in adj[i]:
            if i < j:
                out[(i, j)] = _edge_curvature(adj, i, j)
    return out


def _edge_curvature(adj: list[set[int]], i: int, j: int) -> float:
    di, dj = len(adj[i]), len(adj[j])
    if min(di, dj) == 1:
        return 0.0
    hi, lo = max(di, dj), min(di, dj)
    triangles = len(adj[i] & adj[j])
    squares, gamma = 0, 0
    for a, b in ((i, j), (j, i)):
        for k in adj[a] - adj[b] - {b}:
            # w: a neighbour of b and of k, neither a nor adjacent to a
            closing = len((adj[k] & adj[b]) - adj[a] - {a})
            if closing:
                squares += 1
                gamma = max(gamma, closing)
    ric = 2 / di + 2 / dj - 2 + 2 * triangles / hi + triangles / lo
    if gamma:
        ric += squares / (gamma * hi)
    return ric


def curvature_summary(edge_index: torch.Tensor, n: int, worst: int = 5) -> dict[str, Any]:
    """Minimum, mean, share of edges below −1, and the ``worst`` most negative edges."""
    ric = balanced_forman_curvature(edge_index, n)
    if not ric:
        return {"edges": 0}
    values = np.array(list(ric.values()))
    order = sorted(ric.items(), key=lambda kv: kv[1])[:worst]
    return {
        "edges": len(values),
        "min": float(values.min()),
        "mean": float(values.mean()),
        "share_below_minus_1": float((values < -1).mean()),
        "most_negative": [{"edge": list(e), "curvature": float(c)} for e, c in order],
    }


def conductance(adj: np.ndarray, members: np.ndarray) -> float:
    """|∂S| / min(vol S, vol S̄) of the node set ``members`` (boolean mask) in ``adj``."""
    deg = adj.sum(1)
    cut = float(adj[members][:, ~members].sum())
    vol = min(float(deg[members].sum()), float(deg[~members].sum()))
    return cut / vol if vol > 0 else math.inf


def cheeger_bounds(edge_index: torch.Tensor, n: int) -> dict[str, Any]:
    """λ₁, the bounds λ₁/2 ≤ h ≤ √(2λ₁), the Fiedler sweep cut's conductance and, for at most
    ``EXACT_NODES`` nodes, h itself."""
    adj = np.zeros((n, n))
    e = edge_index.cpu().numpy()
    adj[e[0], e[1]] = 1.0
    adj[e[1], e[0]] = 1.0
    np.fill_diagonal(adj, 0.0)
    deg = adj.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    lap = np.eye(n) - inv[:, None] * adj * inv[None, :]
    values, vectors = np.linalg.eigh(lap)
    lam1 = float(max(values[1], 0.0)) if n > 1 else 0.0
    fiedler = inv * vectors[:, 1] if n > 1 else np.zeros(n)
    order = np.argsort(fiedler)
    # every prefix of the sweep at once: cut(S_k) = vol(S_k) − 2·(edges inside S_k)
    ordered = adj[order][:, order]
    inside = np.cumsum(np.tril(ordered, -1).sum(1))[:-1]
    vol = np.cumsum(deg[order])[:-1]
    cut = vol - 2 * inside
    smaller = np.minimum(vol, deg.sum() - vol)
    ratios = np.where(smaller > 0, cut / np.maximum(smaller, 1e-300), np.inf)
    sweep = float(ratios.min()) if n > 1 else None
    out: dict[str, Any] = {
        "lambda_1": lam1,
        "lower": lam1 / 2,
        "upper": math.sqrt(2 * lam1),
        "sweep_conductance": sweep,
    }
    if 1 < n <= EXACT_NODES:
        # every cut at once: node 0 on one side (each cut once), the other n − 1 bits enumerated
        bits = (np.arange(2 ** (n - 1))[:, None] >> np.arange(n - 1)[None, :]) & 1
        side = np.concatenate([np.ones((len(bits), 1)), bits], axis=1)[:-1]  # drop "all nodes"
        cut = ((side @ adj) * (1 - side)).sum(1)
        vol = np.minimum(side @ deg, (1 - side) @ deg)
        out["exact"] = float(np.min(np.where(vol > 0, cut / np.maximum(vol, 1e-300), np.inf)))
    return out
