"""Mean-field signal propagation in wide random fully connected networks.

The network is ``h^l = W^l φ(h^{l−1}) + b^l`` with ``W_ij ~ N(0, σ_w²/N)`` and
``b_i ~ N(0, σ_b²)``; as the width N → ∞ the pre-activations of each layer are Gaussian and
their second moments follow deterministic maps (Poole et al. 2016, "Exponential expressivity in
deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep information
propagation"). ``Dz`` is the standard Gaussian measure; every integral is a Gauss–Hermite
quadrature (:mod:`depthlab.theory.gaussian`) whose node count grows with q (≈ 100 q, at least
160; capped at 10240 in 1-D and 480 per axis in 2-D), because ``φ′(√q z)²`` for a saturating φ
narrows in z as q grows: with a fixed 160 nodes χ₁ of tanh would be 0.3 % off at q = 10.

``φ`` is any elementwise ``Callable[[Tensor], Tensor]``. Its derivatives φ′ and φ″ come from
torch autograd on float64 nodes, so user activations need no hand-written derivative; at a
kink (ReLU) autograd returns a one-sided value, which the quadrature never samples because no
node sits at 0. A length ``q`` of 0 is evaluated as the limit q → 0⁺ (at ``q = 1e-300``), so
for ReLU χ₁ = σ_w²/2 holds at q = 0 too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from scipy.optimize import brentq

from depthlab.exceptions import DepthlabError, SpecError
from depthlab.theory.gaussian import expect_1d, expect_2d, nodes_for_variance

__all__ = [
    "CRITICAL_TOL",
    "Activation",
    "MeanFieldSummary",
    "analyse",
    "c_star",
    "chi1",
    "correlation_map",
    "critical_sigma_w2",
    "depth_scales",
    "length_map",
    "q_star",
]

Activation = Callable[[torch.Tensor], torch.Tensor]
"""An elementwise activation φ acting on a float64 tensor."""

_Q_MIN = 1e-300  # q below this is evaluated here: the limit q → 0⁺ without underflow
_Q_MAX = 1e12  # q beyond this counts as divergent
# Node caps: 1-D integrals stay accurate (~1e-9) up to q ≈ 100, 2-D ones up to q ≈ 5.
_N1_CAP, _N2_CAP = 10240, 480
_FAST_STEPS = 64  # plain iteration hands over when it would need more steps than this
CRITICAL_TOL = 1e-3
"""|χ₁ − 1| at or below this counts as critical in :func:`analyse`."""


def _check(sigma_w2: float, sigma_b2: float) -> None:
    if not (math.isfinite(sigma_w2) and sigma_w2 > 0):
        raise SpecError("sigma_w2", f"weight variance must be finite and > 0; got {sigma_w2!r}")
    if not (math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise SpecError("sigma_b2", f"bias variance must be finite and ≥ 0; got {sigma_b2!r}")


def _activation_name(phi: Activation) -> str:
    """A readable name for messages: ``tanh``, ``ReLU()``, ``my_act``."""
    name = getattr(phi, "__name__", None)
    return name if isinstance(name, str) else repr(phi)


def _derivatives(phi: Activation, x: torch.Tensor, order: int) -> list[torch.Tensor]:
    """``[φ(x), φ′(x), …, φ^(order)(x)]`` elementwise, by autograd (detached float64 tensors).

    A derivative that autograd cannot reach (φ locally linear, ReLU's second derivative) is 0.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        y = phi(x)
        out, g = [y.detach()], y
        for k in range(order):
            d = None
            if g.requires_grad:
                # φ acts elementwise, so the gradient of Σ φ(x) is the vector φ′(x).
                (d,) = torch.autograd.grad(
                    g.sum(), x, create_graph=k + 1 < order, allow_unused=True
                )
            g = torch.zeros_like(x) if d is None else d
            out.append(g.detach())
    return out


def _sqrt_q(q: float) -> float:
    if math.isnan(q) or q < 0:
        raise SpecError("q", f"length q must be ≥ 0; got {q!r}")
    return math.sqrt(max(q, _Q_MIN))


def length_map(phi: Activation, q: float, *, sigma_w2: float, sigma_b2: float) -> float:
    """One step of the length map ``q ↦ σ_w² ∫Dz φ(√q z)² + σ_b²`` (Poole et al. 2016, eq. 3).

    ``q`` is the mean squared pre-activation ``(1/N) Σᵢ (h_i^{l−1})²`` of the previous layer.
    """
    _check(sigma_w2, sigma_b2)
    s, n1 = _sqrt_q(q), nodes_for_variance(q, _N1_CAP)
    with torch.no_grad():
        return sigma_w2 * expect_1d(lambda z: phi(s * z) ** 2, n1) + sigma_b2


def _solve_q_star(
    step: Callable[[float], float], *, q0: float, tol: float, max_iter: int, name: str
) -> float:
    """Fixed point of ``step`` from q0: plain iteration while fast, then a bracketed solve."""
    q, rel_prev = q0, math.nan
    for i in range(max_iter):
        q_next = step(q)
        if math.isnan(q_next):
            raise DepthlabError(f"length map of activation {name} returned NaN at q={q:g}")
        if q_next > _Q_MAX:
            return math.inf
        rel = abs(q_next - q) / q
        if rel <= tol:
            return q
        if q_next < _Q_MIN:
            return 0.0
        # Relative steps shrink by `ratio` per step; hand over if that is too slow to finish.
        ratio = rel / rel_prev if i else math.nan
        if i >= 4 and (ratio >= 1 or math.log(tol / rel) / math.log(ratio) > _FAST_STEPS):
            break
        q, rel_prev = q_next, rel
    return _bracketed_fixed_point(step, q, tol)


def _bracketed_fixed_point(step: Callable[[float], float], q: float, tol: float) -> float:
    """Root of ``step(q)/q − 1`` in t = log q, searched from q in the direction the map moves.

    Steps in t double until the residual changes sign (then ``brentq``) or t leaves
    [log 1e-300, log 1e12] (then the fixed point is 0 or the length diverges).
    """

    def resid(t: float) -> float:
        return step(math.exp(t)) / math.exp(t) - 1.0

    lo, hi = math.log(_Q_MIN), math.log(_Q_MAX)
    a = math.log(q)
    ra = resid(a)
    if ra == 0.0:
        return q
    sign = 1.0 if ra > 0 else -1.0
    width = max(abs(math.log1p(ra)), 1e-8)  # the last iteration's step in t
    while True:
        b = min(max(a + sign * width, lo), hi)
        rb = resid(b)
        if rb * sign < 0:
            return math.exp(float(brentq(resid, min(a, b), max(a, b), xtol=tol)))
        if b in (lo, hi):
            return math.inf if sign > 0 else 0.0
        if rb == 0.0:
            return math.exp(b)
        a, width = b, 2.0 * width


def q_star(
    phi: Activation,
    *,
    sigma_w2: float,
    sigma_b2: float,
    q0: float = 1.0,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> float:
    """Fixed point ``q* = σ_w² ∫Dz φ(√q* z)² + σ_b²`` of the length map, reached from q0.

    q* is the mean squared pre-activation deep in the network (Poole et al. 2016).

    The map is iterated while it converges quickly (relative step ≤ ``tol`` ends it); a slow,
    near-critical approach (or ``max_iter`` steps) hands over to a bracketed root solve in the
    direction the iterates travel, which lands on the same fixed point to relative ``tol``.
    Returns 0.0 when the signal dies (q* < 1e-300), ``math.inf`` when q diverges past 1e12, and
    ``q0`` itself when every q is fixed (ReLU at σ_w² = 2, σ_b = 0).
    """
    _check(sigma_w2, sigma_b2)
    if not (math.isfinite(q0) and q0 > 0):
        raise SpecError("q0", f"starting length must be finite and > 0; got {q0!r}")
    return _solve_q_star(
        lambda q: length_map(phi, q, sigma_w2=sigma_w2, sigma_b2=sigma_b2),
        q0=q0,
        tol=tol,
        max_iter=max_iter,
        name=_activation_name(phi),
    )


def chi1(phi: Activation, *, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """``χ₁ = σ_w² ∫Dz φ′(√q z)²`` at ``q`` (default q*) (Poole et al. 2016; Schoenholz 2017).

    χ₁ is the mean squared singular value of one layer's Jacobian ∂h^l/∂h^{l−1}: perturbations
    and back-propagated gradients scale by χ₁ per layer. χ₁ < 1 is the ordered phase, χ₁ > 1
    the chaotic phase, χ₁ = 1 the edge of chaos.
    """
    _check(sigma_w2, sigma_b2)
    if q is None:
        q = q_star(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    # A divergent q* is evaluated at the cut-off 1e12: the large-q limit of χ₁ (σ_w²/2 for ReLU),
    # where q = ∞ itself would give ∞·0 for φ′ of activations such as SiLU.
    s, n1 = _sqrt_q(min(q, _Q_MAX)), nodes_for_variance(q, _N1_CAP)
    return sigma_w2 * expect_1d(lambda z: _derivatives(phi, s * z, 1)[1] ** 2, n1)


def correlation_map(
    phi: Activation, c: float, *, q: float, sigma_w2: float, sigma_b2: float
) -> float:
    """One step of the correlation map for two inputs of equal length q (Poole et al. 2016, eq. 5).

    ``c ↦ (σ_w² ∫Dz₁Dz₂ φ(u₁)φ(u₂) + σ_b²) / q′`` with ``u₁ = √q z₁``,
    ``u₂ = √q (c z₁ + √(1−c²) z₂)`` and ``q′ = σ_w² ∫Dz φ(√q z)² + σ_b²`` the new length (equal
    to q at the fixed point q = q*, so this is ``q₁₂′ / q*`` there). Maps 1 to 1.
    """
    _check(sigma_w2, sigma_b2)
    if not -1.0 <= c <= 1.0:
        raise SpecError("c", f"correlation must lie in [-1, 1]; got {c!r}")
    s, n2 = _sqrt_q(q), nodes_for_variance(q, _N2_CAP)
    r = math.sqrt((1.0 - c) * (1.0 + c))  # √(1−c²), accurate near c = ±1
    with torch.no_grad():
        num = expect_2d(lambda z1, z2: phi(s * z1) * phi(s * (c * z1 + r * z2)), n2)
        den = expect_2d(lambda z1, z2: phi(s * z1) ** 2, n2)
    return (sigma_w2 * num + sigma_b2) / (sigma_w2 * den + sigma_b2)


def _c_star_at(phi: Activation, q: float, chi: float, sigma_w2: float, sigma_b2: float) -> float:
    """Stable fixed point of the correlation map: 1 unless χ₁ > 1, else the largest root < 1."""
    if not math.isfinite(q):
        return math.nan
    if chi <= 1.0:
        return 1.0  # c = 1 is a fixed point with slope χ₁ ≤ 1: stable (ordered phase)

    def g(c: float) -> float:
        return correlation_map(phi, c, q=q, sigma_w2=sigma_w2, sigma_b2=sigma_b2) - c

    # c = 1 is unstable (slope χ₁ > 1), so g < 0 just below 1; g(−1) ≥ 0 always (|c′| ≤ 1).
    # Walk down from 1 until g turns non-negative: the first crossing is the stable root.
    for delta in (10.0**-k for k in range(3, 13)):
        if g(1.0 - delta) < 0:
            break
    else:
        return 1.0  # χ₁ so close to 1 that no crossing is resolvable below 1
    a = 1.0 - delta
    while a > -1.0:
        delta *= 4.0
        b = max(1.0 - delta, -1.0)
        if g(b) >= 0:
            return float(brentq(g, b, a, xtol=1e-14))
        a = b
    return -1.0


def c_star(phi: Activation, *, sigma_w2: float, sigma_b2: float) -> float:
    """Stable fixed point c* of :func:`correlation_map` at q = q* (Poole 2016; Schoenholz 2017).

    c* = 1 in the ordered phase (χ₁ ≤ 1: nearby inputs converge); c* < 1 in the chaotic phase.
    NaN when q* diverges.
    """
    q = q_star(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    chi = chi1(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q=q)
    return _c_star_at(phi, q, chi, sigma_w2, sigma_b2)


def _xi(rate: float) -> float:
    """Depth scale ``ξ = −1/log|rate|``; ∞ when |rate| ≥ 1 (no decay)."""
    rate = abs(rate)
    if math.isnan(rate):
        return math.nan
    if rate >= 1.0:
        return math.inf
    return 0.0 if rate == 0.0 else -1.0 / math.log(rate)


def _depth_scales_at(
    phi: Activation, q: float, c: float, chi: float, sigma_w2: float, sigma_b2: float
) -> tuple[float, float]:
    if not math.isfinite(q):
        return math.inf, math.nan  # the length never settles; no correlation fixed point
    s = _sqrt_q(q)

    def phi_phi2(z: torch.Tensor) -> torch.Tensor:
        y, _, d2 = _derivatives(phi, s * z, 2)
        return d2 * y

    xi_q = _xi(chi + sigma_w2 * expect_1d(phi_phi2, nodes_for_variance(q, _N1_CAP)))
    if c == 1.0:
        return xi_q, _xi(chi)
    r = math.sqrt((1.0 - c) * (1.0 + c))

    def dphi_dphi(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return _derivatives(phi, s * z1, 1)[1] * _derivatives(phi, s * (c * z1 + r * z2), 1)[1]

    return xi_q, _xi(sigma_w2 * expect_2d(dphi_dphi, nodes_for_variance(q, _N2_CAP)))


def depth_scales(phi: Activation, *, sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """Depth scales ``(ξ_q, ξ_c)`` over which q and c approach their fixed points (Schoenholz 2017).

    ``ξ_q⁻¹ = −log(χ₁ + σ_w² ∫Dz φ″(√q* z) φ(√q* z))`` and
    ``ξ_c⁻¹ = −log(σ_w² ∫Dz₁Dz₂ φ′(u₁*) φ′(u₂*))`` at (q*, c*), which is −log χ₁ when c* = 1.
    The absolute value of each log argument is used (an oscillating approach decays too); a
    scale is ``math.inf`` where that value is ≥ 1, as at criticality. In layers.
    """
    q = q_star(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    chi = chi1(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q=q)
    c = _c_star_at(phi, q, chi, sigma_w2, sigma_b2)
    return _depth_scales_at(phi, q, c, chi, sigma_w2, sigma_b2)


@dataclass(frozen=True)
class MeanFieldSummary:
    """Mean-field state of an initialisation (σ_w², σ_b²) for one activation."""

    q_star: float
    c_star: float
    chi1: float
    xi_q: float
    xi_c: float
    phase: Literal["ordered", "chaotic", "critical"]


def analyse(phi: Activation, *, sigma_w2: float, sigma_b2: float) -> MeanFieldSummary:
    """q*, c*, χ₁, (ξ_q, ξ_c) and the phase; critical when |χ₁ − 1| ≤ ``CRITICAL_TOL``."""
    q = q_star(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    chi = chi1(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q=q)
    c = _c_star_at(phi, q, chi, sigma_w2, sigma_b2)
    xi_q, xi_c = _depth_scales_at(phi, q, c, chi, sigma_w2, sigma_b2)
    phase: Literal["ordered", "chaotic", "critical"]
    if abs(chi - 1.0) <= CRITICAL_TOL:
        phase = "critical"
    else:
        phase = "ordered" if chi < 1.0 else "chaotic"
    return MeanFieldSummary(q, c, chi, xi_q, xi_c, phase)


def critical_sigma_w2(phi: Activation, *, sigma_b2: float = 0.0) -> float:
    """The σ_w² on the edge of chaos: ``χ₁(q*(σ_w², σ_b²)) = 1`` (Schoenholz et al. 2017, fig. 1).

    Scans σ_w² geometrically over [1e-2, 1e4] for the first sign change of χ₁ − 1 (a divergent
    q* counts as above 1), then refines it with ``brentq`` to ~1e-12. A critical point needs a
    finite q*: if q* grows without bound as σ_w² approaches the root (ReLU with σ_b² > 0, where
    χ₁ = σ_w²/2 → 1 only as q* → ∞), or no crossing exists, raises :class:`SpecError`.
    """
    _check(1.0, sigma_b2)
    name = _activation_name(phi)

    def q_at(s: float) -> float:
        return q_star(phi, sigma_w2=s, sigma_b2=sigma_b2)

    def h(s: float) -> float:
        q = q_at(s)
        return 1.0 if not math.isfinite(q) else chi1(phi, sigma_w2=s, sigma_b2=sigma_b2, q=q) - 1

    grid = [1e-2 * 1.5**k for k in range(35)]  # 0.01 … ≈ 1.5e4
    hs = [h(s) for s in grid]
    ks = [k for k in range(1, len(grid)) if hs[k - 1] < 0 <= hs[k]]
    if not ks:
        raise SpecError(
            "",
            f"activation {name} with σ_b²={sigma_b2:g} has no critical σ_w²: χ₁(q*) − 1 "
            f"does not change sign for σ_w² in [{grid[0]:g}, {grid[-1]:.3g}]",
        )
    a, b = grid[ks[0] - 1], grid[ks[0]]
    root = float(brentq(h, a, b, xtol=1e-12, maxiter=1000))
    # Reject a crossing that is really the onset of divergence, or a jump rather than a root.
    q1, q2 = q_at(root * (1 - 1e-6)), q_at(root * (1 - 2e-6))
    prefix = f"activation {name} with σ_b²={sigma_b2:g} has no critical σ_w²"
    if not math.isfinite(q1) or (q2 > 0 and q1 > 1.5 * q2):
        raise SpecError(
            "",
            f"{prefix}: q* diverges as σ_w² → {root:.10g}, where χ₁ → 1 only in the limit q* → ∞",
        )
    below = h(root * (1 - 1e-10))
    if abs(below) > 1e-6:
        above = "q* diverges" if not math.isfinite(q_at(root * (1 + 1e-10))) else "χ₁ > 1"
        raise SpecError(
            "",
            f"{prefix}: χ₁(q*) = {1 + below:.6g} just below σ_w² ≈ {root:.10g} and {above} "
            "just above, a jump across 1 rather than a crossing",
        )
    return root
