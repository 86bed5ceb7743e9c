"""``optimality``: how far from optimal is a trained network — honestly, per kind of network.

For a two-layer ReLU network f(x) = V relu(Wx + b) with one output (``TwoLayerReLU``, or any
module whose only layers are ``Linear`` → ``ReLU`` → ``Linear`` without output bias) the
objective (1/(2N))‖f(X) − y‖² + (λ/2)(‖W‖² + ‖b‖² + ‖V‖²) has a convex equivalent (Pilanci &
Ergen 2020), so the probe reports the trained objective, the optimum (or bounds) and the gap.

For any other network no global optimum is computable; the probe says so and reports what is:
the gradient norm of the same penalised objective (mean loss + (λ/2)‖θ‖²) and, for up to
``max_dense`` parameters, the smallest Hessian eigenvalue from the dense Hessian — negative
means a saddle, non-negative with a small gradient a local minimum.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.spec import Spec


def two_layer_parts(model: nn.Module) -> tuple[nn.Linear, nn.Linear] | None:
    """(hidden, out) when ``model`` is Linear → ReLU → Linear (one output, no output bias)."""
    kinds = [m for m in model.modules() if not list(m.children())]
    linears = [m for m in kinds if isinstance(m, nn.Linear)]
    others = [m for m in kinds if not isinstance(m, nn.Linear | nn.ReLU | nn.Identity)]
    if len(linears) != 2 or others:
        return None
    hidden, out = linears
    if hidden.bias is None or out.bias is not None or out.out_features != 1:
        return None
    return hidden, out


@dataclasses.dataclass(frozen=True)
class OptimalityParams(Spec):
    """``lam`` the weight decay λ of the objective; ``loss`` squared or logistic (two-layer
    case); ``patterns`` exact or a number of sampled gates; ``max_dense`` most parameters for a
    dense Hessian; ``max_seconds`` the convex solver's time limit."""

    lam: float = 1e-3
    loss: str = "squared"
    patterns: str = "exact"
    max_dense: int = 3000
    max_seconds: float = 300.0


@register_probe("optimality")
class Optimality(Probe):
    """Global gap for two-layer ReLU networks; gradient norm and Hessian λ_min otherwise."""

    Params = OptimalityParams
    params: OptimalityParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        lam = float(self.params.lam)
        if not lam > 0:
            raise ProbeError(f"optimality: lam {lam!r} is not valid; expected a number > 0")
        x = batch.x.reshape(len(batch.x), -1)
        parts = two_layer_parts(model)
        if parts is not None:
            return self._two_layer(model, parts, x, batch.y, lam)
        return self._local(model, batch, lam)

    def _two_layer(
        self,
        model: nn.Module,
        parts: tuple[nn.Linear, nn.Linear],
        x: torch.Tensor,
        y: torch.Tensor,
        lam: float,
    ) -> dict[str, Any]:
        from depthlab.convex import fit_convex, targets

        hidden, out = parts
        # the convex program is solved on the host in float64: the data is read back once
        yt = targets(y.cpu().numpy(), self.params.loss)
        if yt.shape[1] != 1:
            raise ProbeError("optimality: the convex gap needs one target (or two classes)")
        yt = yt[:, 0]
        with torch.no_grad():
            xd = x.cpu().double()
            w1, b1 = hidden.weight.cpu().double(), hidden.bias.cpu().double()
            f = torch.relu(xd @ w1.T + b1)
            f = (f @ out.weight.cpu().double().T).reshape(-1)
            if self.params.loss == "squared":
                data = float(((f - yt) ** 2).sum()) / (2 * len(yt))
            else:
                data = float(torch.nn.functional.softplus(-yt * f).mean())
            pen = float((w1**2).sum() + (b1**2).sum())
            pen += float((out.weight.cpu().double() ** 2).sum())
        trained = data + lam / 2 * pen
        res = fit_convex(
            xd.numpy(),
            yt.numpy(),
            lam=lam,
            loss=self.params.loss,
            patterns=self.params.patterns,
            max_seconds=self.params.max_seconds,
        )
        return {
            "kind": "two-layer ReLU",
            "global_gap_available": True,
            "trained_objective": trained,
            "optimum": res.objective if res.certified else None,
            "upper_bound": res.objective,
            "lower_bound": res.lower_bound,
            "gap": trained - res.objective,
            "certified": res.certified,
            "statement": res.statement,
        }

    def _local(self, model: nn.Module, batch: ProbeBatch, lam: float) -> dict[str, Any]:
        # The objective of the trained network is the deterministic one: no dropout, batch norm
        # on its running statistics (``run`` restores the mode afterwards).
        model.eval()
        params = [p for p in model.parameters() if p.requires_grad]
        n_params = sum(p.numel() for p in params)

        def objective(flat: torch.Tensor) -> torch.Tensor:
            chunks = torch.split(flat, [p.numel() for p in params])
            state = {
                name: c.view_as(p)
                for (name, p), c in zip(
                    [(n, p) for n, p in model.named_parameters() if p.requires_grad],
                    chunks,
                    strict=True,
                )
            }
            out = torch.func.functional_call(model, state, (batch.x,))
            return batch.loss_fn(out, batch.y) + lam / 2 * (flat * flat).sum()

        flat = torch.cat([p.detach().reshape(-1) for p in params])
        with torch.enable_grad():
            g = torch.func.grad(objective)(flat)
        result: dict[str, Any] = {
            "kind": "not a two-layer ReLU network",
            "global_gap_available": False,
            "statement": "no global optimum is computable for this network; only local "
            "information (gradient norm, Hessian λ_min) is reported",
            "gradient_norm": float(g.norm()),
            "parameters": n_params,
            "hessian_min_eigenvalue": None,
            "critical_point": None,
        }
        if n_params <= self.params.max_dense:
            with torch.enable_grad():
                h = torch.func.hessian(objective)(flat)
            eig = torch.linalg.eigvalsh((h + h.T) / 2)
            lmin, lmax = float(eig[0]), float(eig[-1])
            result["hessian_min_eigenvalue"] = lmin
            result["hessian_max_eigenvalue"] = lmax
            result["critical_point"] = "saddle" if lmin < -1e-6 * abs(lmax) else "local minimum"
        else:
            result["hessian_note"] = (
                f"{n_params} parameters exceed max_dense={self.params.max_dense}; no dense Hessian"
            )
        return result
