"""Matrix-free spectral estimators for a symmetric operator known only through its products.

An operator is ``matmat(V) -> A V`` on a block of row vectors: ``V`` has shape ``(b, n)``, float64,
and so has the result (row i is ``A @ V[i]``). Every estimator here accumulates in float64 (the
vectors it keeps may be stored in the products' own precision, ``storage``), draws its randomness
from an explicit ``torch.Generator``, and sends at most ``block`` vectors to one ``matmat`` call.
Nothing here knows about networks: ``depthlab.probes.hvp`` supplies Hessian–vector products.

- ``top_eigenvalues``: Lanczos with full reorthogonalisation, stopped on an a-posteriori bound on
  the eigenvalue error (residual and Kato–Temple gap bounds) or on the Ritz residual.
- ``hutchinson``, ``hutchpp``: trace estimates with a standard error and a confidence interval
  (Hutchinson 1989; Meyer, Musco, Musco & Woodruff 2021, "Hutch++").
- ``slq`` and ``density``: stochastic Lanczos quadrature (Golub & Meurant 1994; Ubaru, Chen &
  Saad 2017; Ghorbani, Krishnan & Xiao 2019), the eigenvalue density as Gaussian bumps on a grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from scipy import stats

MatMat = Callable[[torch.Tensor], torch.Tensor]
F64 = torch.float64
#: Lanczos and the estimators run on the host in float64; operators move rows to their device.
HOST = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class TopEigen:
    """The ``k`` largest Ritz values (descending), their relative residuals and error bounds.

    With ``s_i`` the i-th eigenvector of the tridiagonal ``T_m`` and ``y_i`` the Ritz vector,
    ``r_i = |β_m s_{m,i}| = ‖A y_i − θ_i y_i‖``.

    ``residuals[i] = r_i / |θ_i|``: some eigenvalue of ``A`` lies within ``r_i`` of ``θ_i``
    (Krylov–Weinstein; Parlett, *The Symmetric Eigenvalue Problem*, SIAM 1998, ch. 4). Rigorous.

    ``error_bounds[i] = min(r_i, r_i² / gap_i) / |θ_i|``: the eigenvalue ``λ`` nearest ``θ_i`` also
    satisfies ``|λ − θ_i| ≤ r_i² / δ_i`` where ``δ_i`` is the distance from ``θ_i`` to the rest of
    the spectrum (the Kato–Temple bound: Temple 1928, Proc. R. Soc. A 119; Kato 1949, J. Phys.
    Soc. Japan 4; Parlett 1998 ch. 10–11). ``δ_i`` is unknown; ``gap_i`` estimates it from the
    other Ritz values, each interval ``[θ_j − r_j, θ_j + r_j]`` holding an eigenvalue of ``A``:
    ``gap_i = min_{j≠i} (|θ_i − θ_j| − r_j) − r_i``, the distance between θ_i's interval and the
    nearest other one. Subtracting ``r_j`` keeps an unconverged neighbour (large ``r_j``) from
    faking a wide gap, subtracting ``r_i`` allows for λ's own offset; ``gap_i ≤ r_i`` (or a single
    Ritz value) falls back to the residual bound. The estimate assumes the Krylov space has seen
    the eigenvalues next to ``θ_i``: no Lanczos method can rule out one it has not resolved yet,
    and then the gap bound may undershoot (on a 10, 9, 8.5 | bulk ≤ 7 spectrum: once in 3,540
    step-by-step checks, at a 2% error, while a Ritz value sat between 9 and 8.5; never near
    convergence). It is the usual gap-based rule of Lanczos codes.
    """

    values: list[float]
    residuals: list[float]
    error_bounds: list[float]
    steps: int
    converged: bool


@dataclasses.dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate with its standard error and a two-sided ``confidence`` interval."""

    value: float
    stderr: float
    low: float
    high: float
    confidence: float
    method: str


def rademacher(b: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(b, n)`` independent ±1 entries, float64."""
    return torch.randint(0, 2, (b, n), generator=generator, device=HOST).to(F64).mul_(2).sub_(1)


class _Basis:
    """The orthonormal Lanczos vectors of ``b`` runs in lockstep, in chunks of shape ``(b, c, n)``.

    Stored in ``dtype``, the products' precision: the products see their input rounded to it
    anyway, so a float32 model loses nothing by float32 storage and halves the memory. The
    projections that keep the basis orthogonal run in the same precision (orthogonality to
    its epsilon is all the products can tell apart); the recurrence coefficients α, β and the
    tridiagonal are float64.
    """

    def __init__(self, b: int, n: int, chunk: int, dtype: torch.dtype) -> None:
        self.b, self.n, self.chunk, self.dtype, self.size = b, n, chunk, dtype, 0
        self.chunks: list[torch.Tensor] = []

    def append(self, q: torch.Tensor) -> None:
        j = self.size % self.chunk
        if j == 0:
            shape = (self.b, self.chunk, self.n)
            self.chunks.append(torch.empty(shape, dtype=self.dtype, device=HOST))
        self.chunks[-1][:, j] = q
        self.size += 1

    def project_out(self, w: torch.Tensor) -> torch.Tensor:
        """``w ← w − Q Qᵀ w`` per run, in place, twice: one classical Gram–Schmidt pass loses
        orthogonality in proportion to the condition of the basis; a second pass restores it
        ("twice is enough", Giraud et al. 2005)."""
        for _ in range(2):
            for i, c in enumerate(self.chunks):
                q = c[:, : min(self.chunk, self.size - i * self.chunk)]
                coef = torch.bmm(q, w.to(self.dtype).unsqueeze(2))
                w.sub_(torch.bmm(q.transpose(1, 2), coef).squeeze(2))
        return w


def tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``(b, m, m)`` symmetric tridiagonal matrices from diagonals ``alpha (b, m)`` and
    off-diagonals ``beta (b, m-1)``."""
    return torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)


def lanczos(
    matmat: MatMat,
    v0: torch.Tensor,
    steps: int,
    *,
    generator: torch.Generator,
    stop: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
    chunk: int | None = None,
    storage: torch.dtype = F64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``b`` Lanczos runs in lockstep from the rows of ``v0 (b, n)`` (float64, normalised in place
    to become the first Lanczos vectors), with full reorthogonalisation.

    Returns ``alpha (b, m)`` and ``beta (b, m)``: ``T_m = tridiagonal(alpha, beta[:, :-1])`` and
    ``beta[:, -1]`` is the norm of the last residual. ``m ≤ min(steps, n)``; ``stop(alpha, beta)``
    ends the iteration early. At most ``steps`` vectors of each run are stored, in ``storage``
    precision (``_Basis``); the recurrence itself runs in float64. On breakdown
    (an invariant subspace, β ≈ 0) a run continues from a random vector orthogonal to its basis
    with β set to 0, so ``T`` decouples and the new block carries zero quadrature weight.
    """
    b, n = v0.shape
    steps = min(steps, n)
    basis = _Basis(b, n, chunk or steps, storage)
    q = v0.div_(v0.norm(dim=1, keepdim=True))  # in place: v0 becomes the first vector
    q_prev, beta = torch.zeros_like(q), torch.zeros(b, dtype=F64, device=HOST)
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    scale = torch.zeros(b, dtype=F64, device=HOST)
    for j in range(steps):
        basis.append(q)
        w = matmat(q)
        alpha = (q * w).sum(1)
        for i in range(b):  # w −= α q + β q_prev, in place (memory: a few n-vectors per run)
            w[i].add_(q[i], alpha=-float(alpha[i])).add_(q_prev[i], alpha=-float(beta[i]))
        w = basis.project_out(w)
        beta = w.norm(dim=1)
        alphas.append(alpha)
        betas.append(beta)
        a, bt = torch.stack(alphas, 1), torch.stack(betas, 1)
        if (stop is not None and stop(a, bt)) or j + 1 == steps:
            return a, bt
        scale = torch.maximum(scale, alpha.abs() + beta)
        broken = beta <= 1e-12 * scale.clamp_min(torch.finfo(F64).tiny)
        if broken.any():
            fresh = basis.project_out(
                torch.randn(b, n, generator=generator, dtype=F64, device=HOST)
            )
            w = torch.where(broken[:, None], fresh, w)
            beta = torch.where(broken, 0.0, beta)
            betas[-1] = beta
            q_prev, q = q, w / w.norm(dim=1, keepdim=True)
        else:
            q_prev, q = q, w / beta[:, None]
    raise AssertionError("unreachable")  # pragma: no cover


def ritz_bounds(
    alpha: torch.Tensor, beta: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top ``min(k, m)`` Ritz values of one run (``alpha (m,)``, ``beta (m,)`` as
    ``lanczos`` returns them), descending, with their relative residuals and relative eigenvalue
    error bounds (``TopEigen``)."""
    theta, s = torch.linalg.eigh(tridiagonal(alpha, beta[:-1]))
    m = len(theta)
    r = (beta[-1] * s[-1]).abs()  # ‖A y_j − θ_j y_j‖ for every Ritz pair
    top = torch.arange(m - 1, max(m - k, 0) - 1, -1, device=HOST)
    tiny = torch.finfo(F64).tiny
    denom = theta[top].abs().clamp_min(theta.abs().max() * torch.finfo(F64).eps).clamp_min(tiny)
    # the distance between θ_i's interval [θ_i ± r_i] and the nearest other [θ_j ± r_j]
    rt = r[top]
    dist = (theta[top, None] - theta[None, :]).abs() - r[None, :]
    dist[torch.arange(len(top), device=HOST), top] = math.inf  # not itself
    gap = dist.amin(1) - rt if m > 1 else torch.zeros(len(top), dtype=F64, device=HOST)
    kato = torch.where(gap > rt, rt**2 / gap.clamp_min(tiny), rt)
    return theta[top], rt / denom, torch.minimum(rt, kato) / denom


def top_eigenvalues(
    matmat: MatMat,
    n: int,
    k: int,
    *,
    tol: float | None = None,
    eig_tol: float | None = None,
    max_steps: int,
    generator: torch.Generator,
    storage: torch.dtype = F64,
) -> TopEigen:
    """The ``k`` largest (algebraic) eigenvalues of ``A`` by Lanczos from a Gaussian start.

    Stops once every one of the top-``k`` Ritz values meets each criterion given (at least one):
    relative eigenvalue error bound ``min(r_i, r_i²/gap_i) / |θ_i| ≤ eig_tol`` and relative
    residual ``r_i / |θ_i| ≤ tol`` (``TopEigen`` states the bounds and their sources), or after
    ``max_steps`` products. The eigenvalue error converges like the square of the residual, so
    ``eig_tol`` alone stops much earlier than ``tol`` at the same eigenvalue accuracy; ask for
    ``tol`` when the Ritz vectors matter. A simple Lanczos run sees one copy of a repeated
    eigenvalue.
    """
    if tol is None and eig_tol is None:
        raise ValueError("top_eigenvalues needs tol, eig_tol or both")
    k = min(k, n)
    result: dict[str, torch.Tensor] = {}

    def done(res: torch.Tensor, err: torch.Tensor) -> bool:
        return (
            len(res) == k
            and (tol is None or bool((res <= tol).all()))
            and (eig_tol is None or bool((err <= eig_tol).all()))
        )

    def ritz(alpha: torch.Tensor, beta: torch.Tensor) -> bool:
        result["values"], result["res"], result["err"] = ritz_bounds(alpha[0], beta[0], k)
        return done(result["res"], result["err"])

    start = torch.randn(1, n, generator=generator, dtype=F64, device=HOST)
    alpha, _ = lanczos(
        matmat, start, max_steps, generator=generator, stop=ritz, chunk=4, storage=storage
    )
    return TopEigen(
        values=result["values"].tolist(),
        residuals=result["res"].tolist(),
        error_bounds=result["err"].tolist(),
        steps=alpha.shape[1],
        converged=done(result["res"], result["err"]),
    )


def _interval(value: float, samples: torch.Tensor, confidence: float, method: str) -> TraceEstimate:
    """Student-t interval from the sample variance of ``samples`` (whose mean enters ``value``)."""
    m = len(samples)
    stderr = float(samples.std()) / math.sqrt(m) if m > 1 else math.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, m - 1)) * stderr if m > 1 else math.inf
    return TraceEstimate(value, stderr, value - half, value + half, confidence, method)


def hutchinson(
    matmat: MatMat,
    n: int,
    products: int,
    *,
    generator: torch.Generator,
    block: int = 1,
    confidence: float = 0.95,
) -> TraceEstimate:
    """tr A ≈ (1/m) Σ zᵢᵀ A zᵢ with m = ``products`` Rademacher vectors zᵢ.

    Unbiased, with variance 2(‖A‖_F² − Σ A_ii²)/m; the standard error is the sample standard
    deviation of the zᵢᵀ A zᵢ over √m and the interval uses Student's t with m − 1 degrees of
    freedom. The vectors are drawn ``block`` at a time: memory O(block · n).
    """
    values = _quadratic_forms(matmat, n, products, block, generator)
    return _interval(float(values.mean()), values, confidence, "hutchinson")


def _quadratic_forms(
    matmat: MatMat,
    n: int,
    m: int,
    block: int,
    generator: torch.Generator,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """``zᵢᵀ A zᵢ`` for m Rademacher vectors zᵢ, drawn ``block`` at a time; with ``basis`` (rows
    orthonormal, in the vectors' storage precision) each zᵢ is first projected off its span."""
    samples = []
    for start in range(0, m, block):
        z = rademacher(min(block, m - start), n, generator)
        if basis is not None:
            z = z.to(basis.dtype)
            z = (z - (z @ basis.T) @ basis).to(F64)
        samples.append((z * matmat(z)).sum(1))
    return torch.cat(samples)


def hutchpp(
    matmat: MatMat,
    n: int,
    products: int,
    *,
    generator: torch.Generator,
    block: int = 1,
    confidence: float = 0.95,
    storage: torch.dtype = F64,
) -> TraceEstimate:
    """Hutch++ (Meyer et al. 2021) with m = ``products`` products (m ≥ 6).

    S has k = ⌊m/3⌋ Rademacher columns, Q = orth(A S), and with P = I − QQᵀ and the remaining
    g = m − 2k Rademacher columns gᵢ of G:
        tr A ≈ tr(Qᵀ A Q) + (1/g) Σ (P gᵢ)ᵀ A (P gᵢ).
    Given Q the first term is exact and the second is Hutchinson's estimate of tr(PAP), so the
    estimate is unbiased and its error is that of the residual part alone: the standard error is
    the residual samples' standard deviation over √g (Student-t interval, g − 1 degrees of
    freedom). Its error falls like 1/m, not 1/√m, when the spectrum decays. Memory: A S and Q,
    O(k · n) in ``storage`` precision (the products'); the rest is streamed ``block`` vectors at
    a time.
    """
    if products < 6:
        raise ValueError(f"hutch++ needs at least 6 products, got {products}")
    k, rest = products // 3, products - 2 * (products // 3)
    sketch = torch.cat(
        [
            matmat(rademacher(min(block, k - s), n, generator)).to(storage)
            for s in range(0, k, block)
        ]
    )
    q = torch.linalg.qr(sketch.T).Q.T  # (≤ k, n), orthonormal rows
    del sketch
    exact = 0.0
    for s in range(0, len(q), block):
        rows = q[s : s + block].to(F64)
        exact += float((rows * matmat(rows)).sum())
    values = _quadratic_forms(matmat, n, rest, block, generator, basis=q)
    return _interval(exact + float(values.mean()), values, confidence, "hutch++")


def slq(
    matmat: MatMat,
    n: int,
    probes: int,
    steps: int,
    *,
    generator: torch.Generator,
    block: int = 1,
    storage: torch.dtype = F64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stochastic Lanczos quadrature: nodes and weights ``(probes, m)``, m = min(steps, n).

    For each probe v = z/‖z‖ (z Rademacher), m Lanczos steps give T = U Λ Uᵀ; the nodes are Λ_k
    and the weights U_{0k}², so Σ_k U_{0k}² f(Λ_k) ≈ vᵀ f(A) v and the average over probes
    estimates (1/n) tr f(A). ``block`` probes run in lockstep (one batched product per step),
    so at most ``block · m`` vectors of length n are held at once (in ``storage`` precision).
    """
    nodes, weights = [], []
    for start in range(0, probes, block):
        v0 = rademacher(min(block, probes - start), n, generator)
        alpha, beta = lanczos(matmat, v0, steps, generator=generator, storage=storage)
        del v0
        lam, u = torch.linalg.eigh(tridiagonal(alpha, beta[:, :-1]))
        nodes.append(lam)
        weights.append(u[:, 0, :] ** 2)
    return torch.cat(nodes), torch.cat(weights)


def density(
    nodes: torch.Tensor, weights: torch.Tensor, *, points: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The SLQ eigenvalue density on a grid: ``(grid, values, σ)``.

    φ(t) = (1/p) Σ_probes Σ_k w_k g_σ(t − Λ_k), g_σ the normal density of standard deviation
    σ = ``sigma`` · (max Λ − min Λ) (or ``sigma`` · max(|Λ|, 1) for a single point). The grid
    spans [min Λ − 5σ, max Λ + 5σ], so φ integrates to 1 up to the quadrature error of the grid.
    """
    lo, hi = float(nodes.min()), float(nodes.max())
    width = sigma * ((hi - lo) if hi > lo else max(abs(hi), 1.0))
    grid = torch.linspace(lo - 5 * width, hi + 5 * width, points, dtype=F64, device=HOST)
    z = (grid[:, None, None] - nodes[None]) / width
    bumps = torch.exp(-0.5 * z**2) / (width * math.sqrt(2 * math.pi))
    values = (bumps * weights[None]).sum(2).mean(1)
    return grid, values, width
