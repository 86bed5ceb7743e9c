"""The ``hessian`` probe: the curvature of the training loss, from Hessian–vector products alone.

H = ∇²_θ L(θ) is the Hessian of the mean loss L over the first ``batch_size`` samples of the
batch, with respect to the model's trainable parameters θ flattened in ``named_parameters()``
order (n = ``n_params``), evaluated in the probes' mode policy with the batch statistics of the
batch held fixed (``frozen_statistics``: dropout off, batch norm by this batch's statistics). H
is never formed: products Hv = ∇_θ(∇_θ L · v) feed the estimators of ``depthlab.probes.lanczos``:

- ``top_eigenvalues``: the ``top_k`` largest eigenvalues, descending, by Lanczos with full
  reorthogonalisation, stopped when every relative eigenvalue error bound
  ``top_error_bounds[i] = min(r_i, r_i² / gap_i) / |θ_i|`` is at most ``eig_tol`` (default 1e-4),
  where ``r_i = |β_m s_{m,i}|`` is the Ritz residual (``top_residuals`` holds ``r_i / |θ_i|``):
  some eigenvalue lies within ``r_i`` of θ_i, and within ``r_i² / δ_i`` if δ_i is the distance
  from θ_i to the rest of the spectrum (Kato–Temple; Parlett, *The Symmetric Eigenvalue Problem*,
  1998). ``gap_i`` estimates δ_i conservatively from the other Ritz values, each widened by its
  own residual (see ``lanczos.TopEigen`` for the estimate and its one blind spot: eigenvalues
  Lanczos has not resolved yet). Set ``tol`` to also require ``r_i / |θ_i| ≤ tol`` (the Ritz
  vectors' accuracy; the only rule before ``eig_tol``, then default 1e-6), and ``eig_tol: null``
  to use ``tol`` alone. The products' rounding, ~1e-6 relative in float32, adds to either bound
  — use ``dtype: float64`` below it.
- ``trace``: exact for networks that are piecewise linear in each parameter (ReLU-family
  activations, linear and convolutional layers, pooling, eval-mode batch norm, residual sums; no
  weight used twice), where tr H equals the trace of the Gauss–Newton part Σ_n tr(Λ_n J_n J_nᵀ)
  (``depthlab.probes.gauss_newton``); exact also for any network whose n Hessian–vector
  products H e_i (batched, tr H = Σ_i (H e_i)_i) fit in ``exact_seconds`` at the measured cost
  of one product; otherwise Hutch++ or Hutchinson with ``trace_products`` products.
  ``trace_method: auto`` (default) takes the layer-wise exact trace where it holds, then the
  exact trace by products when it is cheap, and Hutch++ elsewhere, saying why in
  ``trace_note``. With the trace come its standard error
  ``trace_stderr`` and a ``confidence`` interval ``trace_ci`` (Student t on the sample variance;
  zero width for the exact trace, whose error is the products' rounding, ~1e-7 relative in
  float32).
- ``density``: the eigenvalue density of H (integrates to 1) by stochastic Lanczos quadrature,
  ``slq_probes`` probes × ``slq_steps`` steps, Gaussian bumps of standard deviation
  ``density_sigma`` × (spectral range) on ``density_points`` grid points; ``nodes`` and
  ``weights`` (probes × steps) are the quadrature itself, to re-broaden at will.

Units: loss units per squared parameter unit. Two product implementations are timed on the run's
own products and the faster is kept (``method: auto``); see ``depthlab.probes.hvp``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn

from depthlab._device import supports_float64
from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes import gauss_newton, lanczos
from depthlab.probes.base import Probe, ProbeBatch, frozen_statistics, register_probe
from depthlab.probes.hvp import METHODS, HessianOperator, model_loss
from depthlab.spec import Spec
from depthlab.spec.base import check_choice, check_positive_ints, check_range

ESTIMATORS = ("eigenvalues", "trace", "density")
TRACE_METHODS = ("auto", "exact", "hutch++", "hutchinson")


@dataclasses.dataclass(frozen=True)
class HessianParams(Spec):
    """What to estimate and how hard to try; every default is stated here.

    ``block > 1`` sends up to ``block`` vectors to one product call where the estimator allows
    (trace columns; SLQ probes, which then run in lockstep and hold ``block · slq_steps``
    vectors) and lets the operator time batched against looped calls. On CPU batching paid
    only for models under ~1k parameters (about 2×) and cost 5–30% on the MNIST-1D CNN and a 1M
    parameter MLP, hence the default 1.
    """

    batch_size: int = 256
    estimators: tuple[str, ...] = ESTIMATORS
    method: str = "auto"  # auto | double_backward | forward_over_reverse
    block: int = 1  # vectors per product call; > 1 also times batched calls (see above)
    dtype: str = "model"  # model | float64: the products' precision (estimators are float64)
    top_k: int = 5
    eig_tol: float | None = 1e-4  # relative eigenvalue error bound at which Lanczos stops
    tol: float | None = None  # and/or relative Ritz residual bound (the vectors' accuracy)
    max_steps: int = 100  # Lanczos steps (= products) at most for top_eigenvalues
    trace_method: str = "auto"  # auto | exact | hutch++ | hutchinson
    trace_products: int = 60
    exact_seconds: float = 10.0  # auto: the exact trace by n products if they fit in this time
    confidence: float = 0.95
    slq_probes: int = 4
    slq_steps: int = 40
    density_points: int = 201
    density_sigma: float = 0.01  # bump width as a fraction of the spectral range

    def _check(self) -> None:
        check_positive_ints("batch_size", self.batch_size)
        for name in self.estimators:
            check_choice("estimators", name, ESTIMATORS)
        check_choice("method", self.method, ("auto", *METHODS))
        check_choice("dtype", self.dtype, ("model", "float64"))
        check_choice("trace_method", self.trace_method, TRACE_METHODS)
        for name in ("block", "top_k", "max_steps", "slq_probes", "slq_steps"):
            check_positive_ints(name, getattr(self, name))
        check_positive_ints("density_points", self.density_points, minimum=2)
        least = 2 if self.trace_method == "hutchinson" else 6
        if self.trace_products < least:
            method = "hutch++" if self.trace_method in ("auto", "exact") else self.trace_method
            raise SpecError(
                "trace_products",
                f"{self.trace_products!r} is not valid; {method} needs >= {least}",
            )
        if self.tol is None and self.eig_tol is None:
            raise SpecError("eig_tol", "eig_tol and tol cannot both be null (Lanczos needs a stop)")
        for name in ("tol", "eig_tol"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("confidence", self.confidence, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("exact_seconds", self.exact_seconds, 0.0)
        check_range("density_sigma", self.density_sigma, 0.0, lo_open=True)


@register_probe("hessian")
class HessianProbe(Probe):
    """Top eigenvalues, trace and eigenvalue density of the loss Hessian (Lanczos, Hutch++, SLQ)."""

    Params = HessianParams
    params: HessianParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        p = self.params
        batch = batch.head(p.batch_size)
        if len(batch.y) == 0:
            raise ProbeError("the batch is empty; the Hessian needs at least one sample")
        with frozen_statistics(model, batch.x):
            return self._measure(model, batch, seed)

    def _measure(self, model: nn.Module, batch: ProbeBatch, seed: int) -> dict[str, Any]:
        p = self.params
        first = next(model.parameters(), None)
        dtype = torch.float64 if p.dtype == "float64" or first is None else first.dtype
        if first is not None and not supports_float64(first.device):
            dtype = torch.float32  # MPS: no float64 (stated as ``product_dtype``)
        storage = torch.float64 if dtype == torch.float64 else torch.float32  # kept vectors
        # (the kept vectors live on the host beside the recurrence: see HessianOperator._join)
        loss_of, params = model_loss(model, batch, dtype)
        batched = "never" if p.block == 1 else "auto"
        op = HessianOperator(loss_of, params, method=p.method, batched=batched)
        if op.methods == ("double_backward",):
            loss = op.build_graph()  # the loss comes with the graph: no extra forward pass
        else:  # (auto tries forward-over-reverse first, before any graph is retained)
            with torch.no_grad():
                loss = loss_of(params)
        if loss.ndim != 0 or not torch.isfinite(loss):
            op.close()
            raise ProbeError(f"the loss must be a finite scalar, got {loss!r}")
        gen = torch.Generator().manual_seed(seed)
        out: dict[str, Any] = {
            "n_params": op.n,
            "n_samples": len(batch.y),
            "loss": float(loss),
            **dict.fromkeys(
                ["top_eigenvalues", "top_residuals", "top_error_bounds", "lanczos_steps"]
            ),
            "converged": None,
            **dict.fromkeys(["trace", "trace_stderr", "trace_ci", "trace_confidence"]),
            "trace_method": None,
            "trace_note": None,
            "density": None,
        }
        try:
            if "eigenvalues" in p.estimators:
                top = lanczos.top_eigenvalues(
                    op,
                    op.n,
                    p.top_k,
                    tol=p.tol,
                    eig_tol=p.eig_tol,
                    max_steps=p.max_steps,
                    generator=gen,
                    storage=storage,
                )
                out.update(
                    top_eigenvalues=top.values,
                    top_residuals=top.residuals,
                    top_error_bounds=top.error_bounds,
                    lanczos_steps=top.steps,
                    converged=top.converged,
                )
            if "trace" in p.estimators:
                tr, note = self._trace(model, batch, dtype, storage, op, gen)
                out.update(
                    trace=tr.value,
                    trace_stderr=tr.stderr,
                    trace_ci=[tr.low, tr.high],
                    trace_confidence=tr.confidence,
                    trace_method=tr.method,
                    trace_note=note,
                )
            if "density" in p.estimators:
                nodes, weights = lanczos.slq(
                    op,
                    op.n,
                    p.slq_probes,
                    p.slq_steps,
                    generator=gen,
                    block=p.block,
                    storage=storage,
                )
                grid, values, sigma = lanczos.density(
                    nodes, weights, points=p.density_points, sigma=p.density_sigma
                )
                out["density"] = {
                    "grid": grid.tolist(),
                    "values": values.tolist(),
                    "sigma": sigma,
                    "nodes": nodes.tolist(),
                    "weights": weights.tolist(),
                }
        finally:
            op.close()
        out.update(
            hvp_count=op.products,
            method=op.used(),
            hvp_seconds=op.timings(),
            hvp_failures=dict(op.failures),
            product_dtype=str(dtype).removeprefix("torch."),
        )
        return out

    def _trace(
        self,
        model: nn.Module,
        batch: ProbeBatch,
        dtype: torch.dtype,
        storage: torch.dtype,
        op: HessianOperator,
        gen: torch.Generator,
    ) -> tuple[lanczos.TraceEstimate, str | None]:
        """The trace by ``trace_method``, and why ``auto`` did not take the exact one."""
        p = self.params
        note = None
        if p.trace_method in ("auto", "exact"):
            note = gauss_newton.not_piecewise_linear(model, batch.x)
            if note is None:
                value = gauss_newton.gauss_newton_trace(model, batch, dtype)
                return lanczos.TraceEstimate(value, 0.0, value, value, p.confidence, "exact"), None
            if p.trace_method == "exact":
                raise ProbeError(
                    f"the exact trace needs a network piecewise linear in each parameter: {note} "
                    "(use trace_method: hutch++ or auto)"
                )
            note = f"exact trace not available: {note}"
            if p.trace_method == "auto":
                exact = self._exact_by_products(op)
                if exact is not None:
                    return exact, f"exact by {op.n} Hessian-vector products ({note})"
        estimator = (
            lanczos.hutchinson
            if p.trace_method == "hutchinson"
            else functools.partial(lanczos.hutchpp, storage=storage)
        )
        tr = estimator(
            op, op.n, p.trace_products, generator=gen, block=p.block, confidence=p.confidence
        )
        return tr, note

    def _exact_by_products(self, op: HessianOperator) -> lanczos.TraceEstimate | None:
        """tr H = Σ_i (H e_i)_i over all n unit vectors in batched blocks, if the products fit in
        ``exact_seconds`` at the fastest cost per product measured (on the first blocks, which
        time each implementation looped and batched and count towards the sum); None
        otherwise."""
        p, n = self.params, op.n
        # Ten times over the budget even at the fastest cost seen: batching cannot save it.
        if op.seconds and min(op.seconds.values()) * n > 10 * p.exact_seconds:
            return None
        block = 16
        total, done = 0.0, 0
        modes = op.batch_modes
        op.batch_modes = (False, True)  # batched calls where the model allows; timed
        try:
            while done < n:
                rows = op(_unit_rows(done, min(n, done + block), n))
                idx = torch.arange(len(rows), device=rows.device)
                total += float(rows[idx, done + idx].sum())
                done += len(rows)
                if done >= 2 * block and done < n:
                    left = (n - done) * min(op.seconds.values())
                    if left > p.exact_seconds:
                        return None
                    block = 64
        finally:
            op.batch_modes = modes
        return lanczos.TraceEstimate(total, 0.0, total, total, p.confidence, "exact")


def _unit_rows(start: int, stop: int, n: int) -> torch.Tensor:
    """Rows ``e_start … e_{stop−1}`` of the n×n identity, float64."""
    rows = torch.zeros(stop - start, n, dtype=torch.float64, device="cpu")
    cols = torch.arange(start, stop, device="cpu")
    rows[torch.arange(stop - start, device="cpu"), cols] = 1.0
    return rows
