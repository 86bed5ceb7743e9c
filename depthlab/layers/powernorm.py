"""Power normalization (Shen et al. 2020, "PowerNorm: Rethinking Batch Normalization in
Transformers"), registered as norm ``power``.

PowerNorm drops BatchNorm's mean subtraction and divides each feature by the square root of a
*running* quadratic mean ψ² instead of the batch's own statistic. Per feature ``f`` (every
leading dimension of a features-last input counts as batch, ``B`` rows in all):

    ψ_B² = (1/B) Σ_i x_if²                        batch quadratic mean
    x̂    = x / sqrt(ψ²_{t-1} + eps)               normalise by the *previous* running value
    y    = γ ⊙ x̂ + β                              learnable affine
    ψ²_t = α ψ²_{t-1} + (1 - α) ψ_B²              running update (paper's momentum α)

Note ``alpha`` weights the *old* value, as in the paper (α = 0.9 keeps 90 % of ψ²), the
opposite of ``torch.nn.BatchNorm1d``'s ``momentum``.

This implements the whole of the paper's Algorithm 1:

* forward: the four lines above, in training mode; eval mode uses ``y = γ ⊙ x/sqrt(ψ² + eps) + β``
  with the stored ψ² and updates nothing;
* backward (``approx_backward=True``, the default and the registered ``power`` norm): the
  paper's approximate backpropagation. With ``g = γ ⊙ ∂L/∂y``,

      ∂L/∂x = (g - ν_{t-1} ⊙ x̂) / sqrt(ψ²_{t-1} + eps)
      ν_t   = ν_{t-1} ⊙ (1 - (1 - α) Γ) + (1 - α) Λ,   Γ = (1/B) Σ_i x̂_i², Λ = (1/B) Σ_i x̂_i g_i

  ν (the buffer ``running_nu``, initialised to 0) is a running estimate of the batch term
  ``mean(x̂ g)`` that exact BatchNorm-style backpropagation through ψ_B would subtract; it is
  updated during the backward pass. γ and β get their exact gradients.

With ``approx_backward=False`` the forward is the same and autograd gives the exact gradient of
that forward, in which ψ²_{t-1} is a constant (so ∂L/∂x = g / sqrt(ψ²_{t-1} + eps)).

Not implemented: the official code's warm-up phase (normalising by batch statistics for the
first iterations) and its layer-scaling / masking for padded sequences; neither is in
Algorithm 1. The approximate backward is a custom ``torch.autograd.Function`` with a side
effect, so it does not compose with ``torch.func`` transforms (vmap, jvp) in training mode;
use eval mode or ``approx_backward=False`` there.

Shapes: input ``(..., F)``; output the same shape. For channels-first ``(N, C, L)`` wrap in
:class:`depthlab.layers.norms.ChannelsLast` (the registered factory does).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab.layers.norms import ChannelsLast


class _ApproxBackward(torch.autograd.Function):
    """x̂ = x · scale forward; the paper's approximate backward, which also updates ν."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, nu: torch.Tensor, alpha: float
    ) -> torch.Tensor:
        xhat = x * scale
        ctx.save_for_backward(xhat, scale)
        ctx.nu = nu  # the module's buffer, updated in place by backward
        ctx.alpha = alpha
        return xhat

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        xhat, scale = ctx.saved_tensors
        nu: torch.Tensor = ctx.nu
        alpha: float = ctx.alpha
        dims = tuple(range(xhat.dim() - 1))
        # ν_{t-1} stands in for the batch term mean(x̂ g) of exact backprop through ψ_B.
        grad_x = (grad - nu * xhat) * scale
        with torch.no_grad():
            gamma_stat = xhat.square().mean(dim=dims)
            lambda_stat = (xhat * grad).mean(dim=dims)
            nu.mul_(1 - (1 - alpha) * gamma_stat).add_((1 - alpha) * lambda_stat)
        return grad_x, None, None, None


class PowerNorm(nn.Module):
    """Power normalization over the last dimension; see the module docstring for the algorithm.

    Buffers: ``running_psi2`` (ψ², shape ``(F,)``, initialised to 1) and ``running_nu``
    (ν, shape ``(F,)``, initialised to 0). Parameters: ``weight`` (γ, ones) and ``bias``
    (β, zeros).
    """

    running_psi2: torch.Tensor
    running_nu: torch.Tensor

    def __init__(
        self,
        num_features: int,
        *,
        alpha: float = 0.9,
        eps: float = 1e-5,
        approx_backward: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_features = num_features
        self.alpha = alpha
        self.eps = eps
        self.approx_backward = approx_backward
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_psi2", torch.ones(num_features))
        self.register_buffer("running_nu", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"PowerNorm expects input (..., {self.num_features}), got {tuple(x.shape)}"
            )
        # ψ²_{t-1}: cloned so the in-place update below cannot touch what this pass used.
        scale = torch.rsqrt(self.running_psi2.clone() + self.eps)
        if not self.training:
            return x * scale * self.weight + self.bias
        if self.approx_backward and torch.is_grad_enabled():
            xhat = _ApproxBackward.apply(x, scale, self.running_nu, self.alpha)
        else:
            xhat = x * scale
        with torch.no_grad():
            batch_psi2 = x.detach().square().mean(dim=tuple(range(x.dim() - 1)))
            self.running_psi2.mul_(self.alpha).add_((1 - self.alpha) * batch_psi2)
        return xhat * self.weight + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, alpha={self.alpha}, eps={self.eps}, "
            f"approx_backward={self.approx_backward}"
        )


def _power(num_features: int, channels_first: bool) -> nn.Module:
    norm = PowerNorm(num_features)
    return ChannelsLast(norm) if channels_first else norm


reg.NORMS.register(
    "power", _power, "power normalization by a running quadratic mean (Shen et al. 2020)"
)
