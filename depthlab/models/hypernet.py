"""``hypernet``: a hypernetwork that generates every weight of a target MLP, per sample.

The first ``cond_dim`` input features are the conditioning input z (a task code, or a scalar
hyperparameter per sample, in [0, 1]); the rest, u, are the target's input. A hypernetwork H —
an MLP of ``depth`` hidden layers of ``width`` units with the spec's ``act``, ``init`` and
``norm`` — maps z to the flat vector θ(z) of all weights and biases of a target MLP with
``target_depth`` hidden layers of ``target_width`` units and the same activation, which then
computes the output from u: f(x) = target(u; θ(z)). Two parametrizations (Ortiz et al. 2023,
``formulas.md`` *Hypernetworks*):

- ``default``: θ = H(z). The output's magnitude grows with ‖z‖ (exactly proportional for a
  bias-free ReLU H), which Ortiz et al. show makes optimisation unstable or stalls it;
- ``mip`` (magnitude-invariant): z is encoded as [cos(πz/2), sin(πz/2)] (unit norm per
  feature, whatever z) and H predicts a residual, θ = θ₀ + H(encoding), θ₀ a learned,
  input-independent parameter initialised like a standard target network.

Each generated weight matrix is used as W_l = θ_l / √fan_in_l (a fixed multiplier, so a
unit-scale θ gives the target the variance of LeCun init); θ₀ ~ N(0, σ_w²) with σ_w² the
activation's critical gain, so θ₀ alone is a well-scaled target.

How the probes see it. The hypernetwork's ``Linear`` layers are the network's parameters and
its *layers* (``depthlab.probes.layers``): signal, gradients and correlation measure H's depth
(with z as its input), and the verdict speaks of H. The target's weights are *activations* of
H — a different matrix for every sample — so the target's layers (``target.<l>``, modules
without parameters) are not layers to the probes; forward hooks on them still see the target's
pre-activations (shape ``(N, width)``). The gradient reaching a generated weight flows back into
H's parameters, and only those are trained; θ₀ (``mip``) is a parameter outside any layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthlab.exceptions import DepthlabError, SpecError
from depthlab.layers.inits import InitContext, critical_sigma_w2_for
from depthlab.models.base import Parts, flat_dim, register_arch
from depthlab.spec import ArchSpec


class GeneratedLinear(nn.Module):
    """y_n = W_n u_n + b_n with W_n, b_n given per sample (no parameters of its own)."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out

    def forward(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum("noi,ni->no", w, u) / math.sqrt(self.fan_in) + b


class HyperNet(nn.Module):
    """f(x) = target(u; θ(z)), z the first ``cond_dim`` features (module doc)."""

    def __init__(
        self, cond_dim: int, in_dim: int, out_dim: int, spec: ArchSpec, parts: Parts
    ) -> None:
        super().__init__()
        self.cond_dim, self.mip = cond_dim, spec.parametrization == "mip"
        dims = [in_dim, *([spec.target_width] * spec.target_depth), out_dim]
        self.shapes = [(b, a) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        self.n_theta = sum(o * i + o for o, i in self.shapes)
        layers: list[nn.Module] = []
        fan_in = 2 * cond_dim if self.mip else cond_dim
        for width in spec.widths():
            layers += [nn.Linear(fan_in, width, bias=spec.bias), parts.norm(width), parts.act()]
            layers.append(parts.dropout())
            fan_in = width
        layers.append(nn.Linear(fan_in, self.n_theta, bias=spec.bias))
        self.hyper = nn.Sequential(*layers)
        self.target = nn.ModuleList(GeneratedLinear(i, o) for o, i in self.shapes)
        self.acts = nn.ModuleList(parts.act() for _ in self.shapes[:-1])
        if self.mip:
            self.theta0 = nn.Parameter(torch.zeros(self.n_theta))

    @torch.no_grad()
    def init_seeded(self, init: object, ctx: InitContext) -> None:
        """θ₀ ~ N(0, σ_w²), σ_w² the activation's critical value (1 where there is none)."""
        if self.mip:
            try:
                sw2 = critical_sigma_w2_for(ctx.act, ctx.sigma_b)
            except DepthlabError:
                sw2 = 1.0
            draw = torch.randn(self.n_theta, generator=ctx.generator, dtype=self.theta0.dtype)
            self.theta0.copy_(draw * math.sqrt(sw2))

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """MIP: [cos(πz/2), sin(πz/2)], unit norm per feature; default: z itself."""
        if not self.mip:
            return z
        return torch.cat([torch.cos(math.pi * z / 2), torch.sin(math.pi * z / 2)], dim=-1)

    def generate(self, z: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-sample (W_l, b_l) of every target layer: W_l ``(N, out, in)``, b_l ``(N, out)``."""
        theta = self.hyper(self.encode(z))
        if self.mip:
            theta = theta + self.theta0
        out, start = [], 0
        for o, i in self.shapes:
            w = theta[:, start : start + o * i].reshape(len(z), o, i)
            start += o * i
            out.append((w, theta[:, start : start + o]))
            start += o
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1)
        z, u = x[:, : self.cond_dim], x[:, self.cond_dim :]
        h = u
        for i, ((w, b), layer) in enumerate(zip(self.generate(z), self.target, strict=True)):
            h = layer(h, w, b)
            if i < len(self.acts):
                h = self.acts[i](h)
        return h


@register_arch("hypernet")
def hypernet(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Hypernetwork: the first ``cond_dim`` features generate all weights of a target MLP."""
    if spec.residual != "none":
        raise SpecError("residual", f"{spec.residual!r}: a hypernet's layers take no residual")
    d = flat_dim(in_shape)
    if d <= spec.cond_dim:
        raise SpecError(
            "cond_dim",
            f"{spec.cond_dim} conditioning features leave no target input in {d} features; "
            f"expected 1 <= cond_dim < {d}",
        )
    return HyperNet(spec.cond_dim, d - spec.cond_dim, out_dim, spec, parts)
