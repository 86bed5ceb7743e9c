"""The empirical neural tangent kernel (Jacot, Gabriel & Hongler 2018), outputs traced.

Θ_ij = Σ_k ∇_θ f_k(x_i) · ∇_θ f_k(x_j), an ``(N, N)`` matrix over the first ``samples`` inputs,
θ the trainable parameters (``requires_grad``), f the flattened output (K = its size per sample).
Gradient descent with step η moves the outputs by −η Θ ∇_f L, so Θ's spectrum sets which
directions of the data a network fits and how fast: a large condition number λ_max/λ_min means
some directions train orders of magnitude more slowly than others.

Methods (all exact; they agree to roundoff):

* ``layerwise``: linear and conv layers by layer-by-layer contraction (``ntk_layerwise``),
  every other parameter (norm affine, ReZero scalars, any user module) by per-sample
  Jacobians of just those parameters. Cheapest by far for wide networks.
* ``jacobian``: the full per-sample Jacobian, N·K·P numbers, contracted (``ntk_func``).
* ``ntvp``: NTK-vector products; memory O(P) per vector, never N·K·P.
* ``auto``: the cheapest of ``layerwise`` and ``jacobian`` by a flop estimate among those whose
  Jacobians fit in ``memory_mb``, else ``ntvp``.

The kernel is measured in the probes' mode policy with the batch statistics of the N samples
held fixed (``frozen_statistics``): f(x_i) then depends on x_i alone, with batch norm normalising
it by the statistics training would use on this batch, and dropout off (in plain train mode the
outputs of one sample depend on the rest of the batch and on dropout draws, and a per-sample
kernel is not defined). Token models get the kernel of their parameters as usual; only inputs
need not be continuous.

Conditioning is computed in float64 (``precision``): the kernel of a float64 copy of the
model, never the user's. A float32 kernel's smallest eigenvalues are lost below N·eps·λ_max
(≈ 1.5e-5·λ_max at N = 128), far above the true ones of many transformers. Below the floor
N·eps·λ_max of the precision used, λ_min is not resolved: ``condition_number`` is then the
floor's value λ_max / (N·eps·λ_max) with ``condition_number_is_bound: true`` ("≥ that").

Graph networks (a model holding its graph as ``edge_index``): nodes are coupled, not samples,
so Θ is the full-graph kernel Θ_ij = Σ_k ⟨∂F_ik/∂θ, ∂F_jk/∂θ⟩ of the forward pass over every
node, restricted to the first ``samples`` nodes (``depthlab.probes.graph_kernels``); ``method``
is then ``graph`` whatever was asked (the per-sample methods do not apply).

``relative_change``: a deep copy (never the user's model) takes ``train_steps`` full-batch steps
of SGD or Adam on the probe batch (in eval mode, so that the function trained is the one whose
kernel is measured), then ‖Θ_k − Θ_0‖_F / ‖Θ_0‖_F. Near 0: the lazy (kernel) regime; order 1:
the rich (feature learning) regime (Chizat, Oyallon & Bach 2019).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import ProbeError
from depthlab.probes.base import (
    Probe,
    ProbeBatch,
    frozen_statistics,
    functional_state,
    register_probe,
)
from depthlab.probes.graph_kernels import graph_ntk, is_graph_model
from depthlab.probes.ntk_func import jacobian_kernel, ntvp_kernel
from depthlab.probes.ntk_layerwise import candidate_layers, layerwise_kernel
from depthlab.spec import Spec
from depthlab.spec.base import check_choice, check_range

METHODS = ("auto", "layerwise", "jacobian", "ntvp")
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class NTKParams(Spec):
    """``samples``: the first N inputs of the batch (all if fewer). ``method``: see above.
    ``train_steps`` > 0 adds ``relative_change`` after that many steps of ``optimizer`` with
    step ``lr`` on a copy. ``return_kernel`` adds Θ itself (N×N). ``memory_mb``: what the
    Jacobian-forming paths may hold; ``auto`` avoids methods over it, chunks are sized to it."""

    samples: int = 128
    method: str = "auto"
    train_steps: int = 0
    optimizer: str = "sgd"
    lr: float = 0.01
    return_kernel: bool = False
    memory_mb: float = 1024.0
    precision: str = "float64"  # float64 | model: the dtype Θ is computed in

    def _check(self) -> None:
        check_range("samples", self.samples, 1)
        check_choice("method", self.method, METHODS)
        check_range("train_steps", self.train_steps, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("memory_mb", self.memory_mb, 0.0, lo_open=True)
        check_choice("precision", self.precision, ("float64", "model"))


def choose_method(model: nn.Module, n: int, k: int, budget: int) -> str:
    """``auto``: flop estimates, N samples, K outputs, P trainable parameters, P_f of them
    outside linear/conv layers (budget in elements):

    jacobian  N·K·3P (per-sample backward passes) + N²·K·P (contraction), memory N·K·P;
    layerwise K·3·N·P (batched backward passes) + N²·Σ_layers (K·d_out + d_in)
              + the jacobian cost with P_f in place of P for the contraction, memory N·K·P_f;
    ntvp      when neither fits: N·K·3P + N²·K·3P flops, memory O(K·P).
    """
    params, _ = functional_state(model, detach=False)
    p_all = sum(p.numel() for p in params.values())
    layered, per_layer = 0, 0
    for m in candidate_layers(model):
        w = m.weight
        layered += sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad)
        per_layer += k * w.shape[0] + w[0].numel()
    p_rest = p_all - layered
    costs = {
        "layerwise": 3 * k * n * p_all
        + n * n * per_layer
        + (n * k * 3 * p_all + n * n * k * p_rest if p_rest else 0),
        "jacobian": n * k * 3 * p_all + n * n * k * p_all,
    }
    memory = {"layerwise": n * k * p_rest, "jacobian": n * k * p_all}
    fits = [m for m in costs if memory[m] <= budget]
    return min(fits, key=lambda m: costs[m]) if fits else "ntvp"


def empirical_ntk(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "auto",
    memory_mb: float = 1024.0,
    seed: int = 0,
    nodes: int | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Θ (float64, ``(N, N)``) of ``model`` as it is (mode included) on ``x``, and details:
    the method used, K, P and how many parameters each path covered. ``nodes``: ``model`` is a
    graph network, ``x`` every node's features, and Θ the full-graph kernel over the first
    ``nodes`` nodes (module docstring)."""
    check_choice("method", method, METHODS)
    params, _ = functional_state(model, detach=False)  # the parameters: `covered` holds ids
    if not params:
        raise ProbeError("the model has no trainable parameters (requires_grad); Θ is empty")
    if nodes is not None:
        itemsize = next(iter(params.values())).element_size()
        with torch.enable_grad():
            theta, sizes = graph_ntk(model, x, nodes, budget=int(memory_mb * 2**20 / itemsize))
        return theta, {"method": "graph", **sizes}
    with torch.no_grad():
        out = model(x[:1])
    if not isinstance(out, torch.Tensor):
        raise ProbeError(f"ntk needs a model that returns one tensor, got {type(out).__name__}")
    k = out.numel()
    itemsize = next(iter(params.values())).element_size()
    budget = int(memory_mb * 2**20 / itemsize)
    used = choose_method(model, len(x), k, budget) if method == "auto" else method
    names = list(params)
    info: dict[str, Any] = {"method": used, "n_outputs": k}
    info["n_params"] = sum(p.numel() for p in params.values())
    with torch.enable_grad():
        if used == "layerwise":
            gen = torch.Generator().manual_seed(seed)
            theta, covered, counts = layerwise_kernel(
                model, x, lambda z: model(z).reshape(len(z), -1), budget=budget, generator=gen
            )
            rest = [name for name, p in params.items() if id(p) not in covered]
            theta += jacobian_kernel(model, x, rest, budget=budget)
            info["fallback_params"] = sum(params[r].numel() for r in rest)
            info["contracted_layers"] = counts["contracted"]
        elif used == "jacobian":
            theta = jacobian_kernel(model, x, names, budget=budget)
        else:
            theta = ntvp_kernel(model, x, names, budget=budget)
    return theta, info


def spectrum(theta: torch.Tensor, dtype: torch.dtype) -> dict[str, Any]:
    """Eigenvalues (descending), trace and condition number of the symmetrised Θ.

    Θ is PSD; roundoff leaves eigenvalues of a singular Θ at ±N·eps·λ_max (eps of ``dtype``,
    the precision Θ was computed in). The eigenvalues are reported as computed, tiny negatives
    included; the condition number is λ_max/λ_min when λ_min > N·eps·λ_max (the floor), and
    otherwise the floor's value 1/(N·eps) with ``condition_number_is_bound`` true: the true
    condition number is at least that.
    """
    theta = theta.detach().to(device="cpu", dtype=torch.float64)  # an (N, N) read back once
    sym = (theta + theta.T) / 2
    ev = torch.linalg.eigvalsh(sym).flip(0)
    top, bottom = float(ev[0]), float(ev[-1])
    floor = len(ev) * torch.finfo(dtype).eps * max(top, 0.0)
    bound = not (top > 0 and bottom > floor)
    if top <= 0:
        cond = math.inf  # Θ = 0: no direction trains at all
    elif bound:
        cond = top / floor
    else:
        cond = top / bottom
    return {
        "eigenvalues": ev.tolist(),
        "condition_number": cond,
        "condition_number_is_bound": bound,
        "condition_floor": floor,
        "precision": str(dtype).removeprefix("torch."),
        "trace": float(torch.trace(sym)),
    }


def _in_float64(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor] | None:
    """A float64 copy of ``model`` and ``x`` (integer inputs stay as they are), or None when the
    model cannot be copied or does not run in float64."""
    try:
        twin = copy.deepcopy(model).double()
        x64 = x.double() if torch.is_floating_point(x) else x
        with torch.no_grad():
            twin(x64[:1])
    except Exception:  # noqa: BLE001 - any user module: fall back to the model's dtype
        return None
    return twin, x64


def _train_copy(model: nn.Module, batch: ProbeBatch, p: NTKParams) -> tuple[nn.Module, list]:
    try:
        clone = copy.deepcopy(model)
    except Exception as exc:  # any failure to copy a user's module
        raise ProbeError(f"cannot copy the model to train it ({exc}); set train_steps: 0") from exc
    clone.eval()
    trainable = list(functional_state(clone, detach=False)[0].values())
    opt_cls = torch.optim.SGD if p.optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls(trainable, lr=p.lr)
    losses = []
    with torch.enable_grad():
        for _ in range(p.train_steps):
            loss = batch.loss_fn(clone(batch.x), batch.y)
            losses.append(float(loss.detach()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            losses.append(float(batch.loss_fn(clone(batch.x), batch.y)))
    return clone, [losses[0], losses[-1]]


def _cast_batch(batch: ProbeBatch, x: torch.Tensor, dtype: torch.dtype) -> ProbeBatch:
    """The batch with floating inputs and targets in ``dtype`` (``x``: its cast first rows are
    not reused: training uses the whole batch)."""
    if x.dtype == batch.x.dtype and not batch.y.is_floating_point():
        return batch
    xs = batch.x.to(dtype) if batch.x.is_floating_point() else batch.x
    ys = batch.y.to(dtype) if batch.y.is_floating_point() else batch.y
    return dataclasses.replace(batch, x=xs, y=ys)


@register_probe("ntk")
class NTKProbe(Probe):
    """Empirical NTK spectrum (outputs traced) and, optionally, its change under training."""

    Params = NTKParams
    params: NTKParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        p = self.params
        if is_graph_model(model):  # every node: the kernel of the full-graph forward
            with frozen_statistics(model, batch.x):
                return self._measure(model, batch, batch.x, seed, min(p.samples, len(batch.x)))
        x = batch.x[: p.samples]
        with frozen_statistics(model, x):
            return self._measure(model, batch, x, seed)

    def _measure(
        self,
        model: nn.Module,
        batch: ProbeBatch,
        x: torch.Tensor,
        seed: int,
        nodes: int | None = None,
    ) -> dict[str, Any]:
        p = self.params
        first = next(iter(functional_state(model, detach=False)[0].values()), None)
        dtype = torch.float32 if first is None else first.dtype
        measured, xm = model, x
        if p.precision == "float64" and dtype != torch.float64 and first is not None:
            twin = _in_float64(model, x)
            if twin is not None:
                (measured, xm), dtype = twin, torch.float64
        theta, info = empirical_ntk(
            measured, xm, method=p.method, memory_mb=p.memory_mb, seed=seed, nodes=nodes
        )
        result: dict[str, Any] = {
            **spectrum(theta, dtype),
            "n_samples": len(x) if nodes is None else nodes,
            **info,
        }
        if p.train_steps > 0:
            clone, losses = _train_copy(measured, _cast_batch(batch, xm, dtype), p)
            method = p.method if nodes is not None else info["method"]
            moved, _ = empirical_ntk(
                clone, xm, method=method, memory_mb=p.memory_mb, seed=seed, nodes=nodes
            )
            base, change = float(theta.norm()), float((moved - theta).norm())
            if base > 0:
                result["relative_change"] = change / base
            else:
                result["relative_change"] = 0.0 if change == 0 else math.inf
            result["train_loss"] = losses
        if p.return_kernel:
            result["kernel"] = theta.tolist()
        return result
