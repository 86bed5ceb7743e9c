"""The empirical NTK of linear and convolutional layers by layer-by-layer contraction.

For y = W a + b with δ_k(x) = ∂f_k(x)/∂y, the per-sample gradient is ∂f_k/∂W = Σ_p δ_kp a_pᵀ
(p runs over the positions the layer is applied at: one for a plain linear layer, the output
positions of a convolution on its unfolded input), so the layer's share of the traced kernel is

    Θ_ij = Σ_k Σ_{p,q} (δ_k(x_i)_p · δ_k(x_j)_q) (a(x_i)_p · a(x_j)_q)   (weight)
         + Σ_k (Σ_p δ_k(x_i)_p) · (Σ_q δ_k(x_j)_q)                         (bias)

without ever forming a parameter-sized Jacobian (formulas.md, "Empirical NTK"; Novak et al.
2022, "Fast finite width neural tangent kernel", structured derivatives). a comes from forward
hooks, δ from one backward pass per output k.

A module is contracted here only if it passes every check that makes the contraction exact:
exact type ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d``, no parametrization, parameters owned by no
other module, batch-first inputs (leading dimension N for a batch of N and 1 for a batch of one),
and, at run time, Σ_i Σ_k c_ik ∂f_k(x_i)/∂θ rebuilt from the hooked a and δ equals autograd's
gradient of Σ c_ik f_k(x_i) for random c (this catches weights used outside the module, e.g.
tied weights, and hooks that change the layer's output). Everything else is left to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from depthlab._device import wide_dtype

CONTRACTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def candidate_layers(model: nn.Module) -> list[nn.Module]:
    """The modules the contraction may handle: exact linear/conv type, plain own parameters
    ``weight``/``bias`` (at least one trainable), owned by this module alone."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    out = []
    for module in model.modules():
        if type(module) not in CONTRACTED or parametrize.is_parametrized(module):
            continue
        own = dict(module.named_parameters(recurse=False))
        if "weight" not in own or not set(own) <= {"weight", "bias"}:
            continue
        if any(owners[id(p)] > 1 for p in own.values()):
            continue
        if any(p.requires_grad for p in own.values()):
            out.append(module)
    return out


def _conv_padding(module: nn.Module, spatial: int) -> list[int]:
    """``F.pad`` amounts (last dimension first) that reproduce the conv's own padding."""
    k, d = module.kernel_size, module.dilation
    if module.padding == "valid":
        pads = [(0, 0)] * spatial
    elif module.padding == "same":
        total = [d[i] * (k[i] - 1) for i in range(spatial)]
        pads = [(t // 2, t - t // 2) for t in total]
    else:
        pads = [(p, p) for p in module.padding]
    return [v for lo_hi in reversed(pads) for v in lo_hi]


def layer_inputs(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The input as ``(N, P, G, d)``: P positions, G groups, d features per group."""
    n = a.shape[0]
    if isinstance(module, nn.Linear):
        return a.reshape(n, -1, 1, a.shape[-1])
    spatial = a.dim() - 2
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    pads = _conv_padding(module, spatial)
    a = F.pad(a, pads, mode=mode) if any(pads) else a
    if spatial == 1:  # unfold a 1-D conv as a 2-D one of height 1
        a = a.unsqueeze(2)
        ksize, dil, stride = (1, *module.kernel_size), (1, *module.dilation), (1, *module.stride)
    else:
        ksize, dil, stride = module.kernel_size, module.dilation, module.stride
    cols = F.unfold(a, ksize, dilation=dil, stride=stride)  # (N, C_in·k, P), channel-major
    g = module.groups
    return cols.transpose(1, 2).reshape(n, cols.shape[2], g, -1)


def layer_deltas(module: nn.Module, d: torch.Tensor) -> torch.Tensor:
    """Output gradients ``(N, K, *y.shape[1:])`` as ``(N, P, G, K, d_out)``."""
    n, k = d.shape[:2]
    if isinstance(module, nn.Linear):  # a view, no copy, for the usual 2-D input
        return d.reshape(n, k, -1, 1, d.shape[-1]).permute(0, 2, 3, 1, 4)
    g = module.groups
    return d.reshape(n, k, g, d.shape[2] // g, -1).permute(0, 4, 2, 1, 3)


def layer_block(
    a: torch.Tensor, d: torch.Tensor, weight: bool, bias: bool, budget: int
) -> torch.Tensor:
    """The layer's ``(N, N)`` share of Θ from inputs ``(N, P, G, di)`` and deltas
    ``(N, P, G, K, do)``; ``budget`` caps the elements of any intermediate."""
    n, p, g, k, do = d.shape
    di = a.shape[-1]
    theta = a.new_zeros(n, n)
    if bias:
        gb = d.sum(1).reshape(n, -1)  # per-sample bias gradient, all k
        theta += gb @ gb.T
    if not weight:
        return theta
    for gi in range(g):
        ag = a[:, :, gi]  # (N, P, di)
        dg = d[:, :, gi].reshape(n, p, k * do)  # (N, P, K·do)
        if p == 1:
            theta += (dg[:, 0] @ dg[:, 0].T) * (ag[:, 0] @ ag[:, 0].T)
            continue
        pairwise = n * n * p * p * (k * do + di)
        per_sample = n * p * k * do * di + n * n * k * do * di
        if per_sample < pairwise and n * k * do * di <= budget:
            # The layer's own per-sample gradient Σ_p δ_kp a_pᵀ (layer-sized, not model-sized)
            # is cheaper when positions are many and the layer is small.
            grads = torch.einsum("npko,npi->nkoi", dg.reshape(n, p, k, do), ag).reshape(n, -1)
            theta += grads @ grads.T
            continue
        flat_d, flat_a = dg.reshape(n * p, k * do), ag.reshape(n * p, di)
        rows = max(1, min(n, budget // max(1, p * n * p)))
        for r in range(0, n, rows):  # Σ over position pairs, a block of samples at a time
            s = slice(r, min(n, r + rows))
            dd = dg[s].reshape(-1, k * do) @ flat_d.T
            aa = ag[s].reshape(-1, di) @ flat_a.T
            theta[s] += (dd * aa).reshape(-1, p, n, p).sum((1, 3))
    return theta


def _rebuilt_grads(
    module: nn.Module, a: torch.Tensor, d: torch.Tensor, c: torch.Tensor
) -> tuple[dict[str, torch.Tensor], float]:
    """Σ_i Σ_k c_ik ∂f_k(x_i)/∂θ of the module from hooked (a, δ), and a bound on the size of
    the terms summed (for the roundoff tolerance)."""
    e = torch.einsum("nk,npgko->npgo", c, d)
    out = {"weight": torch.einsum("npgo,npgi->goi", e, a).reshape(module.weight.shape)}
    if module.bias is not None:
        out["bias"] = e.sum((0, 1)).reshape(-1)
    scale = float(e.norm()) * (float(a.norm()) + math.sqrt(a.shape[0] * a.shape[1]))
    return out, scale


def layerwise_kernel(
    model: nn.Module,
    x: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    budget: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, set[int], dict[str, Any]]:
    """Θ (float64, ``(N, N)``) over the parameters of the layers the contraction handles, the
    ids of those parameters, and counts. ``forward(x)`` is the model's ``(N, K)`` output."""
    n = len(x)
    layers = candidate_layers(model)
    small: dict[nn.Module, list[int]] = {m: [] for m in layers}
    calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in layers}
    big: dict[nn.Module, list[int]] = {m: [] for m in layers}

    def first_arg(args: tuple, kwargs: dict) -> torch.Tensor:
        return args[0] if args else kwargs["input"]

    def shape_hook(mod: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        small[mod].append(first_arg(args, kwargs).shape[0])

    def capture_hook(mod: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> Any:
        a = first_arg(args, kwargs)
        big[mod].append(a.shape[0])
        if a.shape[0] != n or out.shape[0] != n:
            return None
        calls[mod].append((a.detach().clone(), out))
        # Downstream in-place ops (ReLU(inplace=True)) then edit the clone, not the tensor we
        # differentiate at, which stays the layer's own output y = W a + b.
        return out.clone()

    handles = [m.register_forward_hook(shape_hook, with_kwargs=True, prepend=True) for m in layers]
    try:
        with torch.no_grad():
            forward(x[:1])
    finally:
        for h in handles:
            h.remove()
    handles = [
        m.register_forward_hook(capture_hook, with_kwargs=True, prepend=True) for m in layers
    ]
    try:
        out = forward(x)
    finally:
        for h in handles:
            h.remove()
    keep = [
        m
        for m in layers
        if len(small[m]) == len(big[m]) == len(calls[m])
        and (n == 1 or (all(s == 1 for s in small[m]) and all(b == n for b in big[m])))
    ]
    if not out.requires_grad:  # no trainable parameter reaches the output: Θ = 0
        keep = []
    outputs = [y for m in keep for _, y in calls[m]]
    k_out = out.shape[1]
    deltas = [y.new_zeros((n, k_out, *y.shape[1:])) for y in outputs]
    for k in range(k_out if outputs else 0):
        grads = torch.autograd.grad(out[:, k].sum(), outputs, retain_graph=True, allow_unused=True)
        for buf, g in zip(deltas, grads, strict=True):
            if g is not None:
                buf[:, k] = g
    # Self-check with random output weights c: rebuilt Σ c_ik ∂f_k(x_i)/∂θ against autograd.
    # drawn on the host (the same on every device), moved once
    c = torch.randn(out.shape, generator=generator, dtype=torch.float64, device="cpu")
    c = c.to(device=out.device, dtype=out.dtype)
    params = [p for m in keep for p in m.parameters(recurse=False) if p.requires_grad]
    true = torch.autograd.grad((out * c).sum(), params, allow_unused=True) if params else ()
    true_of = {id(p): g for p, g in zip(params, true, strict=True)}
    eps = torch.finfo(out.dtype).eps
    theta = torch.zeros(n, n, dtype=wide_dtype(out.device), device=out.device)
    covered: set[int] = set()
    contracted = 0
    it = iter(deltas)
    for m in keep:
        # A module called several times: its per-sample gradient sums over the calls, so the
        # calls' positions are concatenated (cross terms between calls included).
        shaped = [(layer_inputs(m, a), layer_deltas(m, next(it)).detach()) for a, _ in calls[m]]
        if not shaped:
            continue
        a, d = shaped[0]
        if len(shaped) > 1:
            a = torch.cat([s[0] for s in shaped], dim=1)
            d = torch.cat([s[1] for s in shaped], dim=1)
        rebuilt, scale = _rebuilt_grads(m, a, d, c)
        ok = True
        for name, p in m.named_parameters(recurse=False):
            if p.requires_grad:
                g = true_of[id(p)]
                g = torch.zeros_like(p) if g is None else g
                err = float((rebuilt[name] - g).norm())
                ok = ok and err <= math.sqrt(eps) * (scale + float(g.norm()))
        if not ok:
            continue
        w, b = m.weight.requires_grad, m.bias is not None and m.bias.requires_grad
        theta += layer_block(a, d, w, b, budget).to(theta.dtype)
        covered.update(id(p) for p in m.parameters(recurse=False) if p.requires_grad)
        contracted += 1
    return theta, covered, {"layers": len(layers), "contracted": contracted}
