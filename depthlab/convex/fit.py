"""``fit_convex``: the global optimum of a two-layer ReLU network with weight decay, certified.

For data X (N, d) and targets y the non-convex objective

    (1/(2N)) Σ_n (f(x_n) − y_n)² + (λ/2) Σ_j (‖w_j‖² + v_j²),  f(x) = Σ_j v_j relu(w_jᵀ[x, 1]),

(or the mean logistic loss for labels ±1) has the optimum of the convex program over the
activation patterns (Pilanci & Ergen 2020). Several outputs are solved as one program each:
what is certified then is the optimum of one two-layer network per output, summed.

The result says what it certifies. ``certified`` is true only when a lower bound valid for the
*full* program (every pattern) is within ``cert_tol`` of an objective some network attains:
with exactly enumerated patterns that is the solver's own gap; with sampled patterns it needs
dual feasibility checked over all patterns, exact when the rank of [X, 1] is ≤ 3. Otherwise the
result is an upper bound (the objective of a real network) and, where one can be computed, a
valid but loose lower bound — never called global.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch

from depthlab.convex.certify import (
    dual_bound,
    gated_dual_norm,
    loose_relu_dual_norm,
    relu_dual_norm,
)
from depthlab.convex.losses import LOSSES, make_loss
from depthlab.convex.patterns import (
    MAX_EXACT_PATTERNS,
    MAX_EXACT_RANK,
    PatternSet,
    exact_patterns,
    max_patterns,
    sampled_patterns,
)
from depthlab.convex.programs import MODELS, Program
from depthlab.convex.recover import from_gated, from_relu
from depthlab.convex.solvers import SolverResult, first_order, working_set
from depthlab.exceptions import DataError, SpecError

__all__ = ["ConvexResult", "fit_convex", "targets", "SOLVERS"]

SOLVERS = ("auto", "working-set", "first-order")
SOLVER_NAMES = {
    "working-set": "working-set interior point",
    "first-order": "first-order (accelerated proximal gradient; augmented Lagrangian for ReLU)",
}


@dataclasses.dataclass(frozen=True, eq=False)
class ConvexResult:
    """The optimum (or its bounds) of the convex program; ``weights`` one tensor per output."""

    objective: float
    lower_bound: float | None
    lower_bound_scope: str
    certified: bool
    statement: str
    n_patterns: int
    exact_patterns: bool
    neurons: int
    solver: str
    seconds: float
    model: str
    loss: str
    lam: float
    outputs: int
    weights: list[torch.Tensor]
    gates: torch.Tensor
    in_dim: int

    @property
    def gap(self) -> float | None:
        return None if self.lower_bound is None else self.objective - self.lower_bound

    def module(self) -> torch.nn.Module:
        """The equivalent network (float64), pruned to its non-zero neurons."""
        if self.model == "relu":
            return from_relu(self.weights, self.in_dim)
        return from_gated(self.weights, self.gates, self.in_dim)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "lower_bound": self.lower_bound,
            "lower_bound_scope": self.lower_bound_scope,
            "gap": self.gap,
            "certified": self.certified,
            "statement": self.statement,
            "n_patterns": self.n_patterns,
            "exact_patterns": self.exact_patterns,
            "neurons": self.neurons,
            "solver": self.solver,
            "seconds": self.seconds,
            "model": self.model,
            "loss": self.loss,
            "lam": self.lam,
            "outputs": self.outputs,
        }


def targets(y: np.ndarray | torch.Tensor, loss: str) -> torch.Tensor:
    """Targets as (N, outputs) float64: real values as given; integer labels as ±1 when binary,
    one-hot columns otherwise (squared loss only; logistic needs binary labels)."""
    y = torch.as_tensor(np.asarray(y))
    if y.is_floating_point():
        if loss == "logistic":
            vals = set(torch.unique(y).tolist())
            if not vals <= {-1.0, 1.0, 0.0} or len(vals) != 2:
                raise DataError(
                    f"logistic loss needs binary labels (0/1 or ±1); y holds {len(vals)} "
                    "distinct real values"
                )
            return torch.where(y > 0, 1.0, -1.0).to(torch.float64).reshape(-1, 1)
        return y.to(torch.float64).reshape(len(y), -1)
    labels = torch.unique(y)
    if len(labels) == 2:
        return torch.where(y == labels[1], 1.0, -1.0).to(torch.float64).reshape(-1, 1)
    if loss == "logistic":
        raise DataError(
            f"logistic loss needs binary labels; y holds {len(labels)} classes "
            f"({', '.join(str(int(v)) for v in labels[:6])}{', ...' if len(labels) > 6 else ''}); "
            "choices: --loss squared (one program per class) or two classes"
        )
    return (y[:, None] == labels[None, :]).to(torch.float64)


def _patterns(xt: np.ndarray, patterns: str | int, seed: int) -> PatternSet:
    if patterns == "exact":
        return exact_patterns(xt)
    if isinstance(patterns, str):
        try:
            patterns = int(patterns)
        except ValueError:
            raise SpecError(
                "patterns", f"{patterns!r} is not valid; choices: exact, or a number >= 1"
            ) from None
    return sampled_patterns(xt, patterns, seed=seed)


def fit_convex(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    lam: float,
    model: str = "relu",
    loss: str = "squared",
    patterns: str | int = "exact",
    seed: int = 0,
    tol: float = 1e-8,
    cert_tol: float = 1e-6,
    max_seconds: float = math.inf,
    solver: str = "auto",
    warm: list[torch.Tensor] | None = None,
) -> ConvexResult:
    """Solve the convex program of a two-layer ReLU (or gated-ReLU) network on (x, y).

    ``x`` (N, d) without a bias column (it is added); ``y`` real targets or integer labels
    (see ``targets``); ``patterns`` ``"exact"`` or a number of sampled gates. ``solver``:
    ``working-set`` (interior point on a working set of patterns: high accuracy, CPU, small
    problems), ``first-order`` (accelerated proximal gradient with gap-safe screening for
    gated ReLU; an augmented Lagrangian warm-started from it for ReLU: problems of ordinary
    size, on the device of ``x`` when it is a tensor) or ``auto`` (working-set for exactly
    enumerated patterns, first-order otherwise). ``warm``: weights of an earlier result on
    the same patterns (a λ path) to start from. Past ``max_seconds`` the best bounds found so
    far are returned, never nothing."""
    if not (isinstance(lam, int | float) and lam > 0 and math.isfinite(lam)):
        raise SpecError("lam", f"{lam!r} is not valid; expected a number > 0")
    if model not in MODELS:
        raise SpecError("model", f"unknown model {model!r}; choices: {', '.join(MODELS)}")
    if solver not in SOLVERS:
        raise SpecError("solver", f"{solver!r} is not valid; choices: {', '.join(SOLVERS)}")
    if loss not in LOSSES:
        raise SpecError("loss", f"unknown loss {loss!r}; choices: {', '.join(LOSSES)}")
    start = time.perf_counter()
    deadline = start + max_seconds
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    xa = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    xt = np.concatenate([xa, np.ones((len(xa), 1))], axis=1)
    ys = targets(y, loss)
    if len(ys) != len(xt):
        raise DataError(f"x has {len(xt)} samples but y has {len(ys)}; they must match")
    pats = _patterns(xt, patterns, seed)
    if solver == "auto":
        solver = "working-set" if pats.exact else "first-order"
    if solver == "working-set":
        device = torch.device("cpu")  # the interior point runs where scipy's NNLS does
    xt_t = torch.from_numpy(xt).to(device)
    d_t = torch.from_numpy(pats.d.astype(np.float64)).to(device)
    gates = torch.from_numpy(pats.gates)
    ys = ys.to(device)
    weights: list[torch.Tensor] = []
    total_obj, total_low, closed = 0.0, 0.0, True
    scope = "all patterns" if pats.exact else "sampled patterns"
    for col in range(ys.shape[1]):
        prog = Program(xt_t, d_t, make_loss(loss, ys[:, col]), float(lam), model)
        res: SolverResult
        if solver == "first-order":
            u0 = None if warm is None or col >= len(warm) else warm[col].to(xt_t)
            res = first_order(prog, tol=tol, deadline=deadline, u0=u0)
        else:
            res = working_set(prog, gates, tol=tol, deadline=deadline)
        u, obj = _prune(prog, res.u, res.objective, tol)
        weights.append(u.cpu())
        total_obj += obj
        low: float | None = res.lower_bound
        low_scope = scope
        if not pats.exact:
            low, low_scope = _global_lower_bound(prog, u, pats)
        scope = low_scope
        if low is None:
            closed = False
            total_low = math.nan
        else:
            total_low += low
        closed = closed and res.converged
    lower: float | None = None if math.isnan(total_low) else total_low
    certified = (
        lower is not None
        and scope.startswith("all patterns")
        and (total_obj - lower) <= cert_tol * max(abs(total_obj), 1e-12)
    )
    neurons = sum(int((w.norm(dim=-1) > 0).sum()) for w in weights)
    return ConvexResult(
        objective=total_obj,
        lower_bound=lower,
        lower_bound_scope=scope,
        certified=bool(certified),
        statement=_statement(model, certified, pats, scope, ys.shape[1]),
        n_patterns=pats.n_patterns,
        exact_patterns=pats.exact,
        neurons=neurons,
        solver=SOLVER_NAMES[solver],
        seconds=time.perf_counter() - start,
        model=model,
        loss=loss,
        lam=float(lam),
        outputs=ys.shape[1],
        weights=weights,
        gates=gates,
        in_dim=xa.shape[1],
    )


def _prune(prog: Program, u: torch.Tensor, obj: float, tol: float) -> tuple[torch.Tensor, float]:
    """Zero the blocks an interior point leaves barely non-zero, if the objective allows."""
    norms = u.norm(dim=-1)
    top = float(norms.max()) if norms.numel() else 0.0
    if top == 0.0:
        return u, obj
    pruned = torch.where((norms > 1e-6 * top)[..., None], u, torch.zeros_like(u))
    new = prog.objective(pruned) if prog.model == "gated" else prog.network_objective(pruned)
    if new <= obj + tol / 10 * max(abs(obj), 1e-12):
        return pruned, new
    return u, obj


def _global_lower_bound(
    prog: Program, u: torch.Tensor, pats: PatternSet
) -> tuple[float | None, str]:
    """A lower bound on the full program from a solution over sampled patterns."""
    if prog.model == "gated":
        w = prog.loss.grad(prog.predict(u))
    else:
        w = prog.loss.grad(prog.network_predict(u))
    xt = prog.x
    n = len(xt)
    if pats.rank <= MAX_EXACT_RANK and max_patterns(n, pats.rank) <= MAX_EXACT_PATTERNS:
        xc, wc = xt.cpu(), w.cpu()
        full = exact_patterns(xc.numpy())
        d_all = torch.from_numpy(full.d.astype(np.float64))
        if prog.model == "gated":
            norm = gated_dual_norm(xc, d_all, wc)
        else:
            norm = relu_dual_norm(xc, d_all, wc, prog.lam)
        return dual_bound(prog.loss, w, prog.lam, norm), "all patterns"
    if prog.model == "gated":
        norm = float(torch.linalg.matrix_norm(xt, ord=2)) * float(w.norm())
    else:
        norm = loose_relu_dual_norm(xt, w)
    return dual_bound(prog.loss, w, prog.lam, norm), "all patterns (loose bound)"


def _statement(model: str, certified: bool, pats: PatternSet, scope: str, outputs: int) -> str:
    what = (
        "the global optimum of the two-layer ReLU network with weight decay"
        if model == "relu"
        else "the optimum of the gated-ReLU program over all gates"
    )
    per = f", one network per output ({outputs} outputs, summed)" if outputs > 1 else ""
    if certified:
        how = "exact pattern enumeration" if pats.exact else "dual feasibility over all patterns"
        return f"certified: {what}{per}, within the stated gap ({how})"
    if pats.exact:
        return f"not certified: the solver did not close the gap on {what}{per}"
    lower = (
        "a valid lower bound over all patterns" + (" (loose)" if "loose" in scope else "")
        if scope.startswith("all patterns")
        else "no lower bound"
    )
    return (
        f"not certified: optimum over {pats.n_patterns} sampled patterns only, an upper bound on "
        f"{what}{per}; {lower}"
    )
