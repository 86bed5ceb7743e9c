"""Annealed gradient noise (Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning
for Very Deep Networks").

After each backward pass, every gradient gets g_t ← g_t + ε_t with ε_t ~ N(0, σ_t² I) and
σ_t² = η / (1 + t)^γ, t the optimiser step (from 0). The paper uses γ = 0.55 and
η ∈ {0.01, 0.3, 1.0}. Noise is drawn from the run's seeded generator.
"""

from __future__ import annotations

import dataclasses

import torch

from depthlab.spec import Spec
from depthlab.spec.base import check_min
from depthlab.train.callbacks import Technique, TrainState, register_technique


@dataclasses.dataclass(frozen=True)
class GradientNoiseParams(Spec):
    eta: float = 0.3
    gamma: float = 0.55

    def _check(self) -> None:
        check_min("eta", self.eta, 0)
        check_min("gamma", self.gamma, 0)


def noise_variance(step: int, eta: float, gamma: float) -> float:
    """σ_t² = η / (1 + t)^γ."""
    return eta / (1.0 + step) ** gamma


@register_technique("gradient_noise")
class GradientNoise(Technique):
    """Annealed Gaussian gradient noise, variance η/(1+t)^γ (Neelakantan et al. 2015)."""

    Params = GradientNoiseParams
    params: GradientNoiseParams

    @torch.no_grad()
    def on_after_backward(self, state: TrainState) -> None:
        std = noise_variance(state.step, self.params.eta, self.params.gamma) ** 0.5
        if std == 0.0:
            return
        for p in state.model.parameters():
            if p.grad is not None:
                # drawn on the host from the run's generator (the same noise on every device)
                noise = torch.randn(
                    p.grad.shape, generator=state.generator, dtype=p.grad.dtype, device="cpu"
                )
                p.grad.add_(noise.to(p.grad.device), alpha=std)
