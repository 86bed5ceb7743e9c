"""Activation patterns D_i = diag(1[X̃u ≥ 0]) of a data matrix: all of them, or a sample.

The patterns are the cells of the hyperplane arrangement {u : x̃_nᵀu = 0}, n = 1..N, in the row
space of X̃ (Pilanci & Ergen 2020). For X̃ of rank r ≤ 3 they are enumerated exactly:

* r = 1: the two half-lines;
* r = 2: the arcs between consecutive boundary directions ±x̃_n^⊥ on the circle;
* r = 3: every cell of a central arrangement in R³ touches a ray x̃_a × x̃_b (a vertex of the
  cell on the sphere); around a ray the cells are the sign choices of the hyperplanes through
  it, found exactly as a rank-2 arrangement in the plane orthogonal to the ray.

There are at most 2r(e(N − 1)/r)^r of them, so beyond r = 3 the patterns are sampled from random
gates g ~ N(0, I) instead, and a result over them is no statement about the full program.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from depthlab.exceptions import SpecError

__all__ = ["PatternSet", "MAX_EXACT_RANK", "data_rank", "exact_patterns", "sampled_patterns"]

MAX_EXACT_RANK = 3
# Above this many candidate patterns an exact enumeration is refused (memory N × P booleans).
MAX_EXACT_PATTERNS = 300_000
_TOL = 1e-10


@dataclasses.dataclass(frozen=True, eq=False)
class PatternSet:
    """Patterns as columns of a boolean ``(N, P)`` matrix ``d`` (d[n, i] = 1[x̃_nᵀg_i ≥ 0]) and one
    gate ``g_i`` (a direction in the input space of X̃, shape ``(P, d)``) that realises each.

    ``exact`` is true only when ``d`` holds every pattern of the arrangement."""

    d: np.ndarray
    gates: np.ndarray
    exact: bool
    rank: int

    @property
    def n_patterns(self) -> int:
        return int(self.d.shape[1])


def data_rank(x: np.ndarray) -> int:
    """Numerical rank of ``x`` (singular values above 1e-10 of the largest)."""
    s = np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)
    return int((s > _TOL * max(float(s[0]) if len(s) else 0.0, 1e-300)).sum())


def pattern_bound(n: int, r: int) -> float:
    """Upper bound 2r(e(N − 1)/r)^r on the number of patterns of N points of rank r."""
    return 2.0 * r * (math.e * max(n - 1, 1) / max(r, 1)) ** r


def max_patterns(n: int, r: int) -> int:
    """Cells of a central arrangement of n hyperplanes in general position in R^r:
    2 Σ_{k<r} C(n − 1, k), the most any n points of rank r can have."""
    return 2 * sum(math.comb(max(n - 1, 0), k) for k in range(r))


def _row_space(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, basis)`` with x = z @ basis.T, ``z`` of shape (N, r): the coordinates that matter."""
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    r = int((s > _TOL * max(float(s[0]), 1e-300)).sum())
    basis = vt[:r].T
    return x @ basis, basis


def _cells_2d(z: np.ndarray) -> np.ndarray:
    """Interior directions (M, 2) of every cell of the lines {c : z_nᵀc = 0} in the plane."""
    norms = np.linalg.norm(z, axis=1)
    z = z[norms > _TOL * max(float(norms.max(initial=0.0)), 1e-300)]
    if len(z) == 0:
        return np.array([[1.0, 0.0]])
    perp = np.stack([-z[:, 1], z[:, 0]], axis=1)
    angles = np.concatenate(
        [np.arctan2(perp[:, 1], perp[:, 0]), np.arctan2(-perp[:, 1], -perp[:, 0])]
    )
    angles = np.unique(np.round(np.mod(angles, 2 * np.pi), 12))
    nxt = np.append(angles[1:], angles[0] + 2 * np.pi)
    mid = (angles + nxt) / 2
    return np.stack([np.cos(mid), np.sin(mid)], axis=1)


def _gates_3d(z: np.ndarray) -> np.ndarray:
    """A gate (M, 3) strictly inside every cell of the arrangement of z (N, 3) of rank 3."""
    n = len(z)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
    found: list[np.ndarray] = []
    for a in range(n - 1):
        rays = np.cross(unit[a], unit[a + 1 :])
        lens = np.linalg.norm(rays, axis=1)
        keep = lens > 1e-9
        if not keep.any():
            continue
        rays = rays[keep] / lens[keep, None]
        zb = unit[a + 1 :][keep]
        proj = unit @ rays.T  # (N, R)
        zero = np.abs(proj) <= 1e-9
        simple = zero.sum(axis=0) == 2
        # The common case: only a and b on the ray. The plane orthogonal to it is span(z_a, z_b);
        # with the dual basis (z_aᵀq_a = 1, z_bᵀq_a = 0, ...) the gate ray + ε(s_a q_a + s_b q_b)
        # sets the signs of a and b to s_a, s_b, and ε below every other point's margin leaves
        # theirs as on the ray.
        cos = zb @ unit[a]
        qa = (unit[a][None, :] - cos[:, None] * zb) / (1 - cos[:, None] ** 2)
        qb = (zb - cos[:, None] * unit[a][None, :]) / (1 - cos[:, None] ** 2)
        spread = np.abs(unit @ qa.T) + np.abs(unit @ qb.T)
        margin = np.where(zero, np.inf, np.abs(proj)).min(axis=0)
        eps = 0.5 * margin / np.maximum(spread.max(axis=0), 1e-300)
        cols = np.nonzero(simple)[0]
        for sign in (1.0, -1.0):
            for sa in (1.0, -1.0):
                for sb in (1.0, -1.0):
                    g = sign * rays[cols] + eps[cols, None] * (sa * qa[cols] + sb * qb[cols])
                    found.append(g)
            for col in np.nonzero(~simple)[0]:
                found.append(_gates_around_ray(unit, sign * rays[col], zero[:, col], eps[col]))
    if not found:
        return np.zeros((0, 3))
    return np.concatenate(found, axis=0)


def _gates_around_ray(
    unit: np.ndarray, ray: np.ndarray, zero: np.ndarray, eps: float
) -> np.ndarray:
    """Gates of the cells touching a ray through which three or more hyperplanes pass: the cells
    of those hyperplanes in the plane orthogonal to the ray, a step ε off the ray."""
    q, _ = np.linalg.qr(np.column_stack([ray, np.eye(3)]))
    plane = q[:, 1:3]
    dirs = _cells_2d(unit[zero] @ plane) @ plane.T  # (M, 3), unit vectors
    return ray[None, :] + min(eps, 0.5) * dirs


def exact_patterns(x: np.ndarray) -> PatternSet:
    """Every activation pattern of ``x`` (N, d), ``x`` already holding the bias column.

    Raises ``SpecError`` when the rank of ``x`` exceeds 3 or the count would exceed the limit."""
    x = np.asarray(x, dtype=np.float64)
    z, basis = _row_space(x)
    r = z.shape[1]
    if r > MAX_EXACT_RANK:
        raise SpecError(
            "patterns",
            f"'exact' needs data of rank <= {MAX_EXACT_RANK} (with the bias column), got rank {r} "
            f"(up to {pattern_bound(len(x), r):.3g} patterns); choices: a number of sampled "
            "patterns, or project the inputs to <= 2 dimensions",
        )
    if max_patterns(len(x), r) > MAX_EXACT_PATTERNS:
        raise SpecError(
            "patterns",
            f"'exact' on {len(x)} points of rank 3 gives up to {max_patterns(len(x), r):,} "
            f"patterns, over the limit {MAX_EXACT_PATTERNS}; choices: fewer points or sampled "
            "patterns",
        )
    if r == 0:
        return PatternSet(
            d=np.ones((len(x), 1), dtype=bool), gates=np.zeros((1, x.shape[1])), exact=True, rank=0
        )
    if r == 1:
        g = np.array([[1.0], [-1.0]])
    elif r == 2:
        g = _cells_2d(z)
    else:
        g = _gates_3d(z)
    g = _distinct_gates(z, g)
    d = (z @ g.T) >= 0
    keep = d.any(axis=0)  # the all-zero pattern contributes nothing
    d, gates = d[:, keep], g[keep] @ basis.T
    return PatternSet(d=d, gates=gates, exact=True, rank=r)


def _pattern_keys(z: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One hashable byte string per gate: its pattern on the rows of ``z``, bit-packed."""
    packed = np.packbits((g @ z.T) >= 0, axis=1)
    return np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()


def _distinct_gates(z: np.ndarray, g: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The first gate of every distinct pattern (in order of first appearance)."""
    keys = np.concatenate([_pattern_keys(z, g[i : i + chunk]) for i in range(0, len(g), chunk)])
    _, idx = np.unique(keys, return_index=True)
    return g[np.sort(idx)]


def sampled_patterns(x: np.ndarray, n: int, *, seed: int) -> PatternSet:
    """Patterns of ``n`` random gates g ~ N(0, I) (duplicates and the empty pattern dropped)."""
    if n < 1:
        raise SpecError("patterns", f"{n!r} is not valid; expected >= 1 sampled patterns")
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    gates = rng.standard_normal((n, x.shape[1]))
    gates = _distinct_gates(x, gates)
    d = (x @ gates.T) >= 0
    keep = d.any(axis=0)
    return PatternSet(d=d[:, keep], gates=gates[keep], exact=False, rank=data_rank(x))
