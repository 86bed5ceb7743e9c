"""The exact trace of the loss Hessian of networks that are piecewise linear in each parameter.

With outputs f(x_n) ∈ R^K, J_n = ∂f(x_n)/∂θ (K × P) and a loss in which each sample's outputs
enter a term of their own (mean cross-entropy, MSE: Λ_n = ∂²L/∂f(x_n)² is K × K and ∂²L/∂f(x_n)
∂f(x_m) = 0 for n ≠ m), the Hessian splits into the Gauss–Newton part and a residual:

    H = Σ_n J_nᵀ Λ_n J_n  +  Σ_n Σ_k (∂L/∂f_k(x_n)) ∇²_θ f_k(x_n).

If, with the other parameters held fixed, every output is an affine function of each single
parameter, then ∂²f_k/∂θ_i² = 0: the residual has a zero diagonal and

    tr H = Σ_n tr(Λ_n J_n J_nᵀ)    exactly.

That holds wherever the pattern of a piecewise-linear network is locally constant (almost every
θ) for networks built from linear and convolutional layers, piecewise-linear activations (ReLU,
leaky ReLU, ReLU6, hard tanh), pooling, flattening, batch norm with running statistics in eval
mode, dropout in eval mode, and residual sums with a fixed or learned scalar, each parameter used
by one call. It fails for smooth activations (tanh: f is not affine in the weights before it),
layer norm, and weights used twice (f is then quadratic in them). ``not_piecewise_linear`` checks
the structure conservatively: only those exact module types (no subclasses, which may override
``forward``), no custom ``forward`` between them, no hooks, no shared or twice-called parameters.

Cost (``gauss_newton_trace``): K backward passes over the batch for the linear and
convolutional layers, contracted layer by layer, per-sample Jacobians for the few other
parameters, and K products with the loss's Hessian with respect to the outputs. On the MNIST-1D
CNN (1,000 samples) that takes about as long as five Hessian–vector products, for the exact
value instead of an estimate.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import jacrev, vmap

from depthlab._device import wide_dtype
from depthlab.exceptions import ProbeError
from depthlab.layers.dropout import AlphaDropout
from depthlab.layers.norms import ChannelsLast
from depthlab.layers.residual import Residual, ResidualScale
from depthlab.models.cnn1d import AddChannel
from depthlab.probes.base import ProbeBatch, functional_state
from depthlab.probes.hvp import cast_to, model_function
from depthlab.probes.layers import Call, hooked, recording
from depthlab.probes.ntk_layerwise import CONTRACTED, layer_deltas, layer_inputs

Tensors = tuple[torch.Tensor, ...]
ModelFunction = Callable[[Tensors, torch.Tensor], torch.Tensor]

# Modules whose output is the sum/composition of their children's in a way that keeps every
# output affine in each single parameter (their own forward is one of these, checked by type).
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, Residual, ChannelsLast)
# Leaves that are linear or piecewise linear in their input and affine in each own parameter.
LEAVES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    ResidualScale,
    AddChannel,
)
EVAL_IDENTITY: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    AlphaDropout,
)
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def not_piecewise_linear(model: nn.Module, x: torch.Tensor) -> str | None:
    """None if every output of ``model`` is affine in each single trainable parameter (almost
    everywhere; see the module docstring), else why not, naming the module. ``x``: a batch of
    inputs (one forward pass on its first two samples counts the calls of each module)."""
    global_hooks = (
        nn.modules.module._global_forward_hooks,
        nn.modules.module._global_forward_pre_hooks,
    )
    if any(global_hooks):
        return "global module hooks are registered"
    for name, module in model.named_modules():
        kind = type(module)
        label = f"module '{name or type(model).__name__}' ({kind.__name__})"
        if module._forward_hooks or module._forward_pre_hooks:
            return f"{label} has forward hooks"
        if any(True for _ in module.children()):
            if kind not in CONTAINERS:
                return f"{label} has a forward of its own"
        elif kind in EVAL_IDENTITY:
            if module.training:
                return f"{label} is in training mode"
        elif kind in BATCH_NORMS:
            if module.training or module.running_mean is None:
                return f"{label} normalises by batch statistics"
        elif kind not in LEAVES:
            return f"{label} is not piecewise linear"
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) in owners:
                return f"a parameter is shared by '{owners[id(p)]}' and '{name}'"
            owners[id(p)] = name
    owning = [
        (n, m) for n, m in model.named_modules() if next(m.parameters(False), None) is not None
    ]
    with recording(owning) as calls, torch.no_grad():
        model(x[:2])
    for name in {call.name for call in calls}:
        count = sum(call.name == name for call in calls)
        if count > 1:
            return f"module '{name}' is called {count} times per forward pass"
    return None


@contextlib.contextmanager
def _quiet_vmap() -> Iterator[None]:
    with warnings.catch_warnings():
        # An op without a batching rule runs in a slow loop and warns; the numbers are the same.
        warnings.filterwarnings("ignore", message=".*performance drop.*")
        yield


def output_hessians(batch: ProbeBatch, out: torch.Tensor) -> torch.Tensor:
    """``Λ (N, K, K)``: each sample's Hessian of the loss with respect to its own outputs (the
    model's outputs ``out`` flattened per sample). Raises ``ProbeError`` if the loss couples the
    outputs of different samples (then the Gauss–Newton split above does not hold)."""
    n = len(out)
    flat = out.detach().reshape(n, -1).requires_grad_(True)
    k = flat.shape[1]
    with torch.enable_grad():
        loss = batch.loss_fn(flat.view_as(out), batch.y)
        (g,) = torch.autograd.grad(loss, flat, create_graph=True)
        if not g.requires_grad:  # the loss is linear in the outputs
            return torch.zeros(n, k, k, dtype=flat.dtype, device=flat.device)

        def product(u: torch.Tensor) -> torch.Tensor:
            (hu,) = torch.autograd.grad(g, flat, u, retain_graph=True, materialize_grads=True)
            return hu

        eye = torch.eye(k, dtype=flat.dtype, device=flat.device)
        lam = torch.stack([product(eye[c].expand(n, k)) for c in range(k)], dim=2)
        # one more product with random per-sample signs and weights: a loss that couples samples
        # gives Σ_{m≠n} Λ_nm u_m ≠ 0, which a block-diagonal Λ cannot reproduce
        gen = torch.Generator().manual_seed(0)
        # drawn on the host (seeded, the same on every device) and moved once
        sign = torch.randint(0, 2, (n, 1), generator=gen, device="cpu") * 2 - 1
        u = (sign * torch.randn(n, k, generator=gen, device="cpu", dtype=torch.float64)).to(
            device=flat.device, dtype=flat.dtype
        )
        coupled = product(u)
    expected = torch.einsum("nkc,nc->nk", lam, u)
    scale = float(lam.abs().max()) * float(u.abs().max()) * k
    if not torch.allclose(coupled, expected, rtol=1e-4, atol=1e-5 * scale + 1e-30):
        raise ProbeError(
            "the loss couples the outputs of different samples; the exact trace needs a loss "
            "that is a sum or mean of per-sample terms (use trace_method: hutch++)"
        )
    return lam


def gauss_newton_trace(
    model: nn.Module,
    batch: ProbeBatch,
    dtype: torch.dtype,
    *,
    budget: int = 2**25,
    contract: bool = True,
) -> float:
    """Σ_n tr(Λ_n J_n J_nᵀ), in float64: the trace of the Gauss–Newton part of the Hessian of the
    loss over ``batch``, which is the Hessian's own trace when ``not_piecewise_linear`` returns
    None. Samples go through in chunks of at most ``budget`` elements of intermediates.

    With Λ_n = U_n diag(λ_n) U_nᵀ, tr(Λ_n J_n J_nᵀ) = Σ_j λ_nj ‖J_nᵀ u_nj‖². For a linear or
    convolutional layer (``contract``), J_nᵀ u_nj with respect to its weight is Σ_p δ̃_njp a_npᵀ,
    the rotated output gradients δ̃ = Σ_k U_kj ∂f_k/∂y and the inputs a at the positions p the
    layer is applied at (``ntk_layerwise``), so its squared norm needs no parameter-sized
    Jacobian: ‖a_n‖² ‖δ̃_nj‖² for a plain linear layer, Σ_pq (δ̃_p·δ̃_q)(a_p·a_q) or the layer's
    own per-sample gradient (whichever is smaller) for a convolution. The output gradients come
    from K backward passes per chunk. Every other parameter (batch-norm scales, residual
    scalars) goes through per-sample Jacobians (``vmap(jacrev)``). ``contract=False`` sends
    every parameter that way (a second implementation, for tests).
    """
    f, params = model_function(model, dtype)
    names = list(functional_state(model)[0])
    cast = cast_to(dtype)
    x = cast(batch.x)
    with torch.no_grad():
        out = f(params, x)
    lam_all, rot_all = torch.linalg.eigh(output_hessians(batch, out))
    n, k = lam_all.shape
    layers: list[nn.Module] = []  # the contracted linear and convolutional layers
    covered: set[str] = set()
    for name, module in model.named_modules() if contract else ():
        own = [f"{name}.{q}" if name else q for q, _ in module.named_parameters(recurse=False)]
        if type(module) in CONTRACTED and own and all(q in names for q in own):
            layers.append(module)
            covered.update(own)
    rest = [i for i, q in enumerate(names) if q not in covered]
    # elements held per sample: the hooked inputs and outputs (K gradients of each) and the
    # Jacobians of the other parameters
    per_sample = out[:1].numel() * (k + 2) + x[:1].numel()
    per_sample += (k + 2) * _hooked_elements(layers, f, params, x[:1])
    per_sample += 3 * k * sum(params[i].numel() for i in rest)
    chunk = max(1, min(n, budget // per_sample))
    total = torch.zeros((), dtype=wide_dtype(out.device), device=out.device)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lam, rot = lam_all[start:stop], rot_all[start:stop].to(out.dtype)
        if layers:
            total += _contracted(layers, f, params, x[start:stop], lam, rot)
        if rest:
            total += _jacobian_part(f, params, rest, x[start:stop], lam, rot)
    value = float(total)
    if not math.isfinite(value):
        raise ProbeError(f"the Gauss–Newton trace is not finite ({value})")
    return value


def _hooked_elements(
    layers: list[nn.Module], f: ModelFunction, params: Tensors, x1: torch.Tensor
) -> int:
    """Elements of the layers' inputs and outputs for one sample (one forward pass)."""
    with recording([("", m) for m in layers]) as calls, torch.no_grad():
        f(params, x1)
    return sum(call.args[0].numel() + call.output.numel() for call in calls)


def _contracted(
    layers: list[nn.Module],
    f: ModelFunction,
    params: Tensors,
    x: torch.Tensor,
    lam: torch.Tensor,
    rot: torch.Tensor,
) -> torch.Tensor:
    """Σ_n Σ_j λ_nj ‖J_nᵀ u_nj‖² over the weights and biases of ``layers``, for the samples
    ``x`` (their eigenpairs of Λ: ``lam (b, K)``, ``rot (b, K, K)``)."""
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(call: Call) -> torch.Tensor:
        seen[call.module] = (call.args[0].detach().clone(), call.output)
        return call.output.clone()  # in-place ops downstream edit the clone, not y

    with hooked([("", m) for m in layers], keep), torch.enable_grad():
        leaves = tuple(p.detach().requires_grad_(True) for p in params)
        out = f(leaves, x)
    b = len(x)
    out = out.reshape(b, -1)
    k = out.shape[1]
    mods = [m for m in layers if m in seen]
    ys = [seen[m][1] for m in mods]
    deltas = [y.new_zeros((b, k, *y.shape[1:])) for y in ys]
    for c in range(k):
        grads = torch.autograd.grad(out[:, c].sum(), ys, retain_graph=c + 1 < k, allow_unused=True)
        for buf, g in zip(deltas, grads, strict=True):
            if g is not None:
                buf[:, c] = g
    wide = wide_dtype(out.device)
    total = torch.zeros((), dtype=wide, device=out.device)
    for m, d in zip(mods, deltas, strict=True):
        # rotate the K output directions into Λ's eigenbasis, per sample
        d = torch.einsum("nk...,nkj->nj...", d, rot)
        a = layer_inputs(m, seen[m][0])  # (b, P, G, di)
        dd = layer_deltas(m, d)  # (b, P, G, K, do)
        sq = torch.zeros(b, k, dtype=wide, device=out.device)
        if m.bias is not None:
            sq += dd.sum(1).pow(2).sum((1, 3)).to(wide)  # ‖Σ_p δ̃_p‖² per (n, j)
        sq += _weight_norms(a, dd).to(wide)
        total += (lam * sq).sum()
    return total


def _weight_norms(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``(b, K)``: ‖Σ_p δ_njp a_npᵀ‖² summed over groups, from inputs ``(b, P, G, di)`` and
    deltas ``(b, P, G, K, do)``."""
    b, p, g, k, do = d.shape
    di = a.shape[-1]
    if p == 1:
        return (a[:, 0].pow(2).sum(-1)[:, :, None] * d[:, 0].pow(2).sum(-1)).sum(1)
    out = a.new_zeros(b, k)
    for gi in range(g):
        ag, dg = a[:, :, gi], d[:, :, gi]  # (b, P, di), (b, P, K, do)
        if p * (di + k * do) <= k * do * di:  # Gram over position pairs
            gram_a = ag @ ag.transpose(1, 2)  # (b, P, P)
            gram_d = torch.einsum("npko,nqko->nkpq", dg, dg)
            out += (gram_d * gram_a[:, None]).sum((2, 3))
        else:  # the layer's own per-sample gradient, (b, K, do, di)
            out += torch.einsum("npko,npi->nkoi", dg, ag).pow(2).sum((2, 3))
    return out


def _jacobian_part(
    f: ModelFunction,
    params: Tensors,
    rest: list[int],
    x: torch.Tensor,
    lam: torch.Tensor,
    rot: torch.Tensor,
) -> torch.Tensor:
    """Σ_n tr(Λ_n J_n J_nᵀ) over the parameters ``params[i], i in rest``, J_n by per-sample
    reverse mode (``vmap(jacrev)``)."""
    fixed = list(params)

    def one(sub: Tensors, xi: torch.Tensor) -> torch.Tensor:
        full = list(fixed)
        for i, t in zip(rest, sub, strict=True):
            full[i] = t
        return f(tuple(full), xi.unsqueeze(0)).reshape(-1)

    sub = tuple(params[i] for i in rest)
    with torch.no_grad(), _quiet_vmap():
        jac = vmap(jacrev(one), in_dims=(None, 0))(sub, x)  # one (b, K, *shape) per parameter
    b, k = lam.shape
    # ‖J_nᵀ u_nj‖² with J_n (K, P): rotate the rows, then square
    sq = sum(torch.einsum("nkp,nkj->njp", j.reshape(b, k, -1), rot).pow(2).sum(-1) for j in jac)
    return (lam * sq.to(lam.dtype)).sum()
