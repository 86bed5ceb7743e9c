"""The empirical NTK with ``torch.func``: per-sample Jacobian contraction and NTK-vector products.

Both differentiate the per-sample function θ ↦ f(x_i; θ) ∈ R^K through ``functional_call`` on a
batch of one, so they work for any ``nn.Module`` whose outputs for a sample do not depend on the
other samples of the batch (eval mode).

* Jacobian contraction: J_i = ∂f(x_i)/∂θ ∈ R^{K×P} for every sample by ``vmap(jacrev)``, then
  Θ_ij = Σ_k J_ik · J_jk. Memory N·K·P (P: the parameters asked for); if ``vmap`` cannot run
  the model (data-dependent control flow, ``.item()``), a loop of N·K backward passes does it.
* NTK-vector products (Novak et al. 2022): the column Θ_{:,j} = Σ_k [J (J_jkᵀ)]_{:,k}, a
  ``jvp`` of the batched forward along the tangent J_jk (reverse over reverse for ops without
  forward-mode AD); memory O(chunk·K·P), never N·K·P.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap

from depthlab._device import wide_dtype, widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import functional_state


@contextlib.contextmanager
def quiet_vmap() -> Iterator[None]:
    with warnings.catch_warnings():
        # An op without a batching rule runs in a slow loop and warns; the numbers are the same.
        warnings.filterwarnings("ignore", message=".*performance drop.*")
        # torch's first forward-mode AD call scripts its own decompositions with the deprecated
        # torch.jit.script: torch's internals, nothing the caller can act on.
        warnings.filterwarnings("ignore", ".*torch.jit.script.*", DeprecationWarning)
        yield


def _chunk(budget: int, per_item: int, n: int) -> int:
    return max(1, min(n, budget // max(1, per_item)))


def per_sample_jacobians(
    model: nn.Module, x: torch.Tensor, names: list[str], *, budget: int
) -> torch.Tensor:
    """``(N, K·P)``: every sample's Jacobian of the flattened output w.r.t. ``names``."""
    wanted, fixed = functional_state(model, names)

    def f(p: dict, xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),)).reshape(-1)

    size = sum(v.numel() for v in wanted.values())
    try:
        with quiet_vmap():
            k = f(wanted, x[0]).numel()
            chunk = _chunk(budget, 4 * k * size, len(x))
            jac = vmap(jacrev(f), in_dims=(None, 0), chunk_size=chunk)(wanted, x)
        return torch.cat([jac[name].reshape(len(x), k, -1) for name in names], dim=2).reshape(
            len(x), -1
        )
    except (RuntimeError, NotImplementedError):
        return _looped_jacobians(model, x, names)


def _looped_jacobians(model: nn.Module, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """The same Jacobians by plain autograd, one backward pass per sample and output."""
    params = dict(model.named_parameters())
    wanted = [params[k] for k in names]
    rows = []
    for i in range(len(x)):
        out = model(x[i : i + 1]).reshape(-1)
        row = []
        for k in range(out.numel()):
            grads = torch.autograd.grad(out[k], wanted, retain_graph=True, allow_unused=True)
            row.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for p, g in zip(wanted, grads, strict=True)
                    ]
                )
            )
        rows.append(torch.cat(row))
    return torch.stack(rows)


def jacobian_kernel(
    model: nn.Module, x: torch.Tensor, names: list[str], *, budget: int
) -> torch.Tensor:
    """Θ over the parameters ``names`` by per-sample Jacobian contraction, float64 ``(N, N)``."""
    if not names:
        return torch.zeros(len(x), len(x), dtype=wide_dtype(x.device), device=x.device)
    jac = per_sample_jacobians(model, x, names, budget=budget)
    return widen(jac @ jac.T)


def ntvp_kernel(
    model: nn.Module, x: torch.Tensor, names: list[str], *, budget: int
) -> torch.Tensor:
    """Θ over the parameters ``names`` by NTK-vector products, float64 ``(N, N)``."""
    n = len(x)
    wanted, fixed = functional_state(model, names)

    def f_one(p: dict, xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),)).reshape(-1)

    def f_all(p: dict) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (x,)).reshape(n, -1)

    try:
        with quiet_vmap():
            return _ntvp_columns(f_one, f_all, wanted, x, budget)
    except (RuntimeError, NotImplementedError) as exc:
        raise ProbeError(
            f"method ntvp needs torch.func (vmap, jvp) to run the model, which failed: {exc}; "
            "use method layerwise or jacobian"
        ) from exc


def _ntvp_columns(
    f_one: Callable[[dict, torch.Tensor], torch.Tensor],
    f_all: Callable[[dict], torch.Tensor],
    wanted: dict[str, torch.Tensor],
    x: torch.Tensor,
    budget: int,
) -> torch.Tensor:
    n = len(x)
    out, pullback = vjp(f_all, wanted)
    k = out.shape[1]

    def push_forward(tangent: dict) -> torch.Tensor:  # J t by forward mode
        return jvp(f_all, (wanted,), (tangent,))[1]

    def push_reverse(tangent: dict) -> torch.Tensor:
        # J t = ∇_u ⟨Jᵀu, t⟩ (reverse over reverse), for ops without forward-mode AD.
        def inner(u: torch.Tensor) -> torch.Tensor:
            back = pullback(u)[0]
            return sum((back[name] * tangent[name]).sum() for name in back)

        return grad(inner)(torch.zeros_like(out))

    size = sum(v.numel() for v in wanted.values())
    chunk = _chunk(budget, 3 * k * size, n)
    theta = torch.zeros(n, n, dtype=wide_dtype(x.device), device=x.device)
    push = push_forward
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        rows = vmap(jacrev(f_one), in_dims=(None, 0))(wanted, xs)  # J_jk, (c, K, ...)
        tangents = {name: v.reshape(-1, *v.shape[2:]) for name, v in rows.items()}
        try:
            cols = vmap(push)(tangents)
        except (RuntimeError, NotImplementedError):
            push = push_reverse
            cols = vmap(push)(tangents)
        cols = cols.reshape(len(xs), k, n, k)  # [j, k, i, k']
        theta[:, start : start + len(xs)] = torch.einsum("jkik->ij", cols).to(theta.dtype)
    return theta
