"""Weight-matrix spectra: norms, stable rank and the heavy-tail exponent α of each layer.

Every ``nn.Linear`` and ``nn.Conv1d``/``Conv2d``/``Conv3d`` weight is read as a matrix W of shape
(out, in·k) (a convolution's kernel is flattened: (out, in/groups, *k) → (out, in/groups·∏k)).
With singular values σ₁ ≥ … ≥ σ_M, M = min(out, in·k), N = max(out, in·k):

- Frobenius norm ‖W‖_F = (Σ σᵢ²)^½, spectral norm ‖W‖₂ = σ₁, stable rank ‖W‖_F² / ‖W‖₂² ∈ [1, M].
- Empirical spectral density of the correlation matrix X = WᵀW/N (W oriented so that it has
  N ≥ M rows, as in WeightWatcher, Martin & Mahoney 2021): its M eigenvalues λᵢ = σᵢ²/N.
  The tail λ ≥ λ_min is fitted with a power law p(λ) ∝ λ^(−α) by maximum likelihood
  (Clauset, Shalizi & Newman 2009, eq. 3.1): α̂ = 1 + n / Σ_{λᵢ ≥ λ_min} ln(λᵢ/λ_min), with
  λ_min the candidate (each distinct eigenvalue leaving at least ``min_tail`` in the tail) that
  minimises the Kolmogorov–Smirnov distance between the tail's empirical CDF and the fitted one.
  α and the KS distance are invariant to the scale of λ, so the 1/N normalisation only fixes the
  reported ``alpha_xmin``. Heavy-tailed, well-trained layers have α ≈ 2–4; a random Gaussian
  matrix (Marchenko–Pastur bulk with a hard edge) gives a large α. Layers with fewer than
  ``min_eigs`` positive eigenvalues get α = ``None``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.spec import Spec

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclasses.dataclass(frozen=True)
class WeightsParams(Spec):
    """``top_k`` largest singular values per layer are reported (0: none); ``full_spectrum`` adds
    all of them. ``min_eigs``: fewest positive eigenvalues for a power-law fit. ``min_tail``:
    fewest eigenvalues in the fitted tail (bounds the largest candidate λ_min)."""

    top_k: int = 5
    full_spectrum: bool = False
    min_eigs: int = 10
    min_tail: int = 5

    def _check(self) -> None:
        if self.top_k < 0:
            raise SpecError("top_k", f"{self.top_k!r} is not valid; expected >= 0")
        if self.min_tail < 2:
            raise SpecError("min_tail", f"{self.min_tail!r} is not valid; expected >= 2")
        if self.min_eigs < self.min_tail:
            raise SpecError(
                "min_eigs",
                f"{self.min_eigs!r} is not valid; expected >= min_tail ({self.min_tail})",
            )


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """p(x) ∝ x^(−alpha) for x ≥ xmin; ``ks`` the KS distance on the ``n_tail`` tail samples."""

    alpha: float
    xmin: float
    ks: float
    n_tail: int


def fit_power_law(samples: np.ndarray, min_tail: int = 5) -> PowerLawFit | None:
    """Continuous power-law fit of Clauset, Shalizi & Newman (2009): the MLE α̂ for every
    candidate x_min (each distinct positive sample leaving ≥ ``min_tail`` samples in the tail),
    keeping the x_min whose fit has the smallest KS distance. ``None`` if no candidate fits."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    x = x[x > 0]
    m = len(x)
    if m < min_tail:
        return None
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[k] = Σ_{j ≥ k} ln x_j
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # first index of each distinct value
    best: PowerLawFit | None = None
    for k in first[m - first >= min_tail]:
        n = m - k
        log_sum = suffix[k] - n * logs[k]  # Σ ln(x_j / x_min) over the tail
        if log_sum <= 0.0:
            continue
        alpha = 1.0 + n / log_sum
        # Fitted CDF 1 − (x/x_min)^(1−α) against the empirical CDF, just before and at each point.
        cdf = -np.expm1((1.0 - alpha) * (logs[k:] - logs[k]))
        steps = np.arange(1, n + 1) / n
        ks = float(max(np.max(steps - cdf), np.max(cdf - (steps - 1.0 / n))))
        if best is None or ks < best.ks:
            best = PowerLawFit(float(alpha), float(x[k]), ks, int(n))
    return best


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A layer weight as a 2-D float64 matrix (out, in·k), on the host: the spectrum and its
    power-law fit run there (numpy)."""
    return weight.detach().cpu().to(torch.float64).reshape(weight.shape[0], -1)


def spectrum_stats(
    w: torch.Tensor, *, top_k: int = 5, full: bool = False, min_eigs: int = 10, min_tail: int = 5
) -> dict[str, Any]:
    """Norms, stable rank and power-law fit of one 2-D matrix ``w`` (see module docstring)."""
    big, small = max(w.shape), min(w.shape)
    sigma = torch.linalg.svdvals(w).numpy() if small else np.zeros(0)  # descending
    fro = float(np.sqrt(np.sum(sigma**2)))
    spec = float(sigma[0]) if small else 0.0
    eigs = sigma**2 / big
    # Numerically zero eigenvalues (rank deficiency) are no part of the density's tail.
    positive = eigs[eigs > spec**2 / big * 1e-12]
    fit = fit_power_law(positive, min_tail) if len(positive) >= min_eigs else None
    out: dict[str, Any] = {
        "matrix_shape": [int(s) for s in w.shape],
        "fro_norm": fro,
        "spectral_norm": spec,
        "stable_rank": fro**2 / spec**2 if spec > 0 else None,
        "alpha": _finite(fit.alpha) if fit else None,
        "alpha_ks": fit.ks if fit else None,
        "alpha_xmin": fit.xmin if fit else None,
        "alpha_n_tail": fit.n_tail if fit else None,
        "n_eigs": int(small),
        "top_singular_values": [float(s) for s in sigma[:top_k]],
    }
    if full:
        out["singular_values"] = [float(s) for s in sigma]
    return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@register_probe("weights")
class Weights(Probe):
    """Per-layer weight spectra: norms, stable rank and heavy-tail exponent α (Martin & Mahoney;
    Clauset, Shalizi & Newman 2009). Needs no data: ``batch`` is ignored."""

    Params = WeightsParams
    params: WeightsParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        p = self.params
        layers = []
        for name, module in model.named_modules():
            if not isinstance(module, LAYER_TYPES):
                continue
            weight = module.weight
            if isinstance(weight, nn.parameter.UninitializedParameter):
                raise ProbeError(f"layer {name!r} is lazy and uninitialised; run a forward first")
            if not bool(torch.isfinite(weight).all()):
                raise ProbeError(f"layer {name!r} has NaN/inf weights; no spectrum to measure")
            stats = spectrum_stats(
                as_matrix(weight),
                top_k=p.top_k,
                full=p.full_spectrum,
                min_eigs=p.min_eigs,
                min_tail=p.min_tail,
            )
            layers.append(
                {"name": name, "type": type(module).__name__, "shape": list(weight.shape)} | stats
            )
        if not layers:
            raise ProbeError(
                f"weights found no nn.Linear or nn.Conv1d/2d/3d layer in {type(model).__name__}"
            )
        alphas = [layer["alpha"] for layer in layers if layer["alpha"] is not None]
        return {
            "layers": layers,
            "mean_alpha": float(np.mean(alphas)) if alphas else None,
            "n_layers": len(layers),
        }
