"""Zero-cost proxies: one-batch scores of a network at initialisation, used to rank architectures.

The baselines that neural-architecture search compares "will it train" predictors with
(Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS"; Mellor et al. 2021, "Neural
Architecture Search without Training"). Sums run over the *weight layers* (``nn.Linear``,
``nn.Conv1d``, ``nn.Conv2d``, found as :func:`depthlab.probes.layers.weight_layers` finds them),
weights only, as in Abdelfattah et al.; L is the batch's mean loss.

- ``grad_norm`` = Σ_layers ‖∂L/∂W‖_F.
- ``snip`` = Σ_layers Σ_ij |∂L/∂W_ij · W_ij| (connection sensitivity, Lee et al. 2019).
- ``synflow`` = Σ_layers Σ_ij θ_ij ∂R/∂θ_ij with every parameter and floating buffer replaced
  by its absolute value |θ|, an all-ones input of one sample and R = Σ of the output (Tanaka et
  al. 2020). Data-independent: only the input's shape is used. Computed on a float64 copy,
  where the product of L layers' absolute weights stays finite far deeper than in float32
  (3^300 ≈ 1e143 is fine; float32 overflows past ≈ 3.4e38). Batch norm is
  evaluated in eval mode with its (absolute) running statistics, as Tanaka et al. do; at
  initialisation (running mean 0, variance 1) it is the identity up to its ε, the same as the
  BN-free copy Abdelfattah et al. score.
- ``naswot`` = log|det K| (Mellor et al. 2021, v2): every unit of every elementwise activation
  module gets a binary code over the batch, c_k(x) = 1[pre-activation_k(x) > 0]; with N_A
  units, K_ij = N_A − Hamming(c(x_i), c(x_j)). For the ReLU family the code is the unit's
  on/off pattern, as in the paper; for any other activation (tanh, SELU, GELU, ...) it is the
  sign of the pre-activation, the same formula with no on/off meaning. −inf when K is singular.
- ``n_params``: the number of parameters (all of them, trainable or not).

Gradient proxies run in train mode (batch norm on batch statistics), as the proxies' papers
do; the model's mode, parameters and gradients are restored afterwards.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import typing
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from depthlab._device import wide_dtype, widen
from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes.base import Probe, ProbeBatch, preserved, register_probe
from depthlab.probes.layers import activation_modules, hooked, weight_layers
from depthlab.spec import Spec
from depthlab.spec.base import check_choice, check_min

__all__ = [
    "PROXIES",
    "ProxiesParams",
    "ProxiesProbe",
    "naswot_kernel",
    "naswot_score",
    "zero_cost_proxies",
]

PROXIES = ("grad_norm", "snip", "synflow", "naswot", "n_params")


@dataclasses.dataclass(frozen=True)
class ProxiesParams(Spec):
    """Which proxies to compute, on the first ``batch_size`` samples of the batch."""

    proxies: tuple[str, ...] = PROXIES
    batch_size: int = 64

    def _check(self) -> None:
        check_min("batch_size", self.batch_size, 1)
        if not self.proxies:
            raise SpecError("proxies", f"is empty; choose from {', '.join(PROXIES)}")
        for name in self.proxies:
            check_choice("proxies", name, PROXIES)


def _weights(model: nn.Module, proxy: str) -> list[tuple[str, torch.Tensor]]:
    layers = [(n, typing.cast(torch.Tensor, m.weight)) for n, m in weight_layers(model)]
    if not layers:
        raise ProbeError(
            f"proxy {proxy} needs a weight layer (nn.Linear, nn.Conv1d, nn.Conv2d); the model "
            "has none"
        )
    return layers


def _loss_gradients(
    model: nn.Module, batch: ProbeBatch, proxy: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(W, ∂L/∂W)`` per weight layer from one backward pass of the mean loss (train mode)."""
    layers = _weights(model, proxy)
    model.train()
    model.zero_grad(set_to_none=True)
    for _, w in layers:
        w.requires_grad_(True)
    loss = batch.loss_fn(model(batch.x), batch.y)
    if not torch.isfinite(loss):
        raise ProbeError(f"proxy {proxy}: the loss is {loss.item()} at these weights")
    grads = torch.autograd.grad(loss, [w for _, w in layers], allow_unused=True)
    return [
        (w.detach(), torch.zeros_like(w) if g is None else g.detach())
        for (_, w), g in zip(layers, grads, strict=True)
    ]


def _grad_norm(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(widen(g).norm() for _, g in pairs))


def _snip(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum((widen(g) * widen(w)).abs().sum() for w, g in pairs))


def _synflow(model: nn.Module, x: torch.Tensor) -> float:
    """Σ θ ⊙ ∂R/∂θ over weight-layer weights, |θ| everywhere, R = Σ f(1), float64, eval mode."""
    _weights(model, "synflow")  # raises when there is nothing to score
    if not torch.is_floating_point(x):
        raise ProbeError(
            f"proxy synflow feeds an all-ones float input; this model takes {x.dtype} inputs"
        )
    # A float64 copy with |θ| in place: the user's model is never touched, and weights shared
    # between modules stay shared (one tensor), as a functional call would not keep them here.
    wide = wide_dtype(x.device)  # float64 where the device has it (MPS: float32)
    twin = copy.deepcopy(model).to(wide)
    with torch.no_grad():
        for t in itertools.chain(twin.parameters(), twin.buffers()):
            if torch.is_floating_point(t):
                t.abs_()
    for p in twin.parameters():
        p.requires_grad_(False)
    weights = [typing.cast(torch.Tensor, m.weight) for _, m in weight_layers(twin)]
    for w in weights:
        w.requires_grad_(True)
    twin.eval()
    ones = torch.ones((1, *x.shape[1:]), dtype=wide, device=x.device)
    with torch.enable_grad():
        out = twin(ones)
        if not isinstance(out, torch.Tensor):
            raise ProbeError("proxy synflow needs a model returning one tensor")
        grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
    terms = [(w.detach() * g).sum() for w, g in zip(weights, grads, strict=True) if g is not None]
    score = float(torch.stack(terms).sum()) if terms else 0.0
    if not math.isfinite(score):
        raise ProbeError(f"proxy synflow is {score} even in float64 (the net is too deep)")
    return score


def naswot_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K_ij = N_A − Hamming(c_i, c_j) for binary codes ``codes`` of shape (samples, N_A).

    Equals c cᵀ + (1 − c)(1 − c)ᵀ: the number of units on which two samples agree. float64.
    """
    c = widen(codes)
    return c @ c.T + (1.0 - c) @ (1.0 - c).T


def naswot_score(codes: torch.Tensor) -> float:
    """log|det K| of :func:`naswot_kernel` (Mellor et al. 2021); −inf when K is singular."""
    _, logabsdet = torch.linalg.slogdet(naswot_kernel(codes))
    return float(logabsdet)


def _naswot(model: nn.Module, batch: ProbeBatch) -> float:
    acts = activation_modules(model)
    if not acts:
        raise ProbeError(
            "proxy naswot needs elementwise activation modules (nn.ReLU, nn.Tanh, ...) to read "
            "unit codes from; the model has none (a functional call such as F.relu is not seen)"
        )
    codes: list[torch.Tensor] = []

    def keep(call: Any) -> None:
        pre = call.args[0]
        codes.append((pre.detach() > 0).reshape(len(pre), -1))

    model.train()
    with torch.no_grad(), hooked(acts, keep):
        model(batch.x)
    return naswot_score(torch.cat(codes, dim=1))


def _compute(model: nn.Module, batch: ProbeBatch, proxies: Iterable[str]) -> dict[str, float]:
    wanted = list(proxies)
    out: dict[str, float] = {}
    if "grad_norm" in wanted or "snip" in wanted:
        proxy = "grad_norm" if "grad_norm" in wanted else "snip"
        pairs = _loss_gradients(model, batch, proxy)
        if "grad_norm" in wanted:
            out["grad_norm"] = _grad_norm(pairs)
        if "snip" in wanted:
            out["snip"] = _snip(pairs)
    if "synflow" in wanted:
        out["synflow"] = _synflow(model, batch.x)
    if "naswot" in wanted:
        out["naswot"] = _naswot(model, batch)
    if "n_params" in wanted:
        out["n_params"] = float(sum(p.numel() for p in model.parameters()))
    return {k: out[k] for k in wanted}


def zero_cost_proxies(
    model: nn.Module,
    batch: ProbeBatch | tuple[torch.Tensor, torch.Tensor],
    *,
    proxies: Iterable[str] = PROXIES,
    seed: int = 0,
) -> dict[str, float]:
    """Every requested proxy of ``model`` on ``batch`` (a ProbeBatch, or ``(x, y)``) as a float.

    The whole batch is used; the model is left exactly as it was. A proxy that cannot apply
    raises :class:`ProbeError` naming it; an unknown name raises :class:`SpecError`.
    """
    params = ProxiesParams(proxies=tuple(proxies))
    if not isinstance(batch, ProbeBatch):
        batch = ProbeBatch.from_tensors(*batch)
    with preserved(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _compute(model, batch, params.proxies)


@register_probe("proxies")
class ProxiesProbe(Probe):
    """Zero-cost proxies at the current weights: grad_norm, snip, synflow, naswot, n_params."""

    Params = ProxiesParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        batch = batch.head(self.params.batch_size)
        out: dict[str, Any] = dict(_compute(model, batch, self.params.proxies))
        if "n_params" in out:
            out["n_params"] = int(out["n_params"])
        out["n_samples"] = len(batch.x)
        return out
