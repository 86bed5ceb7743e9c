"""The input–output Jacobian J = ∂f(x)/∂x and the gain of every layer (dynamical isometry).

Singular values of J over ``samples`` inputs (pooled): dynamical isometry (Pennington et al.
2017) is all of them near 1, i.e. mean squared singular value ≈ 1 with a small spread.
Per-layer gains come from forward-mode AD: a random unit input tangent v is pushed through the net
and, at every layer output, gain^l = ‖δh^l‖² / ‖δh^{l−1}‖² (averaged over samples), the
finite-width measurement of mean field's χ₁. Each layer output is read per sample at its own
batch dimension; a layer without one is left out (``skipped_layers``).

Token models (integer inputs) cannot be differentiated with respect to their input: J is then
taken with respect to the output of the embedding that reads the token ids (``wrt`` names it),
the first point where the input is continuous. A model whose integer input reaches no such
embedding is skipped with that reason.

Graph networks (a model holding its graph as ``edge_index``): J_i = ∂F_i/∂X is node i's
output against every node's input, from the full-graph forward pass (nodes are coupled, not
samples), for the first ``samples`` nodes (``depthlab.probes.graph_kernels``); the gains follow
a random tangent on every node's input through the whole graph.

Evaluated in the probes' mode policy with the batch statistics of the measured samples held
fixed (``frozen_statistics``), attention by its math kernel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vmap

from depthlab._device import wide_dtype, widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import (
    Probe,
    ProbeBatch,
    frozen_statistics,
    functional_state,
    register_probe,
)
from depthlab.probes.graph_kernels import graph_input_jacobians, is_graph_model
from depthlab.probes.layers import Call, hooked, per_sample, recording, weight_layers
from depthlab.probes.ntk_func import quiet_vmap
from depthlab.spec import Spec
from depthlab.spec.base import check_min


@dataclasses.dataclass(frozen=True)
class JacobianParams(Spec):
    samples: int = 16

    def _check(self) -> None:
        check_min("samples", self.samples, 1)


def token_embedding(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The module that reads the integer input ``x`` itself and returns floats: the embedding
    of the token ids (position and type embeddings read other integers)."""
    found: list[tuple[str, nn.Module]] = []

    def on_call(call: Call) -> None:
        a = call.args[0] if call.args else None
        if (
            isinstance(a, torch.Tensor)
            and not a.is_floating_point()
            and a.shape == x.shape
            and torch.equal(a, x)
            and isinstance(call.output, torch.Tensor)
            and call.output.is_floating_point()
            and not any(m is call.module for _, m in found)
        ):
            found.append((call.name, call.module))

    modules = [(n or "model", m) for n, m in model.named_modules() if m is not model]
    with torch.no_grad(), hooked(modules, on_call):
        model(x)
    # the innermost (a wrapper's forward also receives x): the last one to finish comes first
    if not found:
        raise ProbeError(
            "the input is integer (token ids) and no module turns it into floats "
            "(an embedding): the Jacobian needs a continuous input"
        )
    return found[0]


@contextlib.contextmanager
def replaced(module: nn.Module | None, value: Callable[[], torch.Tensor]) -> Iterator[None]:
    """While open, ``module``'s output is ``value()`` (nothing when ``module`` is None)."""
    if module is None:
        yield
        return
    with hooked([("input", module)], lambda call: value()):
        yield


class InputPoint:
    """Where J starts: the model's input (float inputs) or a token embedding's output."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        self.name: str | None = None
        self.module: nn.Module | None = None
        if not torch.is_floating_point(x):
            self.name, self.module = token_embedding(model, x)

    def start(self) -> torch.Tensor:
        """The value of the starting point on ``x``, ``(N, ...)``."""
        if self.module is None:
            return self.x
        with torch.no_grad(), recording([("e", self.module)]) as calls:
            self.model(self.x)
        return calls[0].output.detach()

    def call(self, state: Any, z: torch.Tensor, x: torch.Tensor) -> Any:
        """The model on input ``x`` with the starting point set to ``z``."""
        if self.module is None:
            return functional_call(self.model, state, (z,))
        with replaced(self.module, lambda: z):
            return functional_call(self.model, state, (x,))


def input_jacobians(
    model: nn.Module, x: torch.Tensor, point: InputPoint | None = None
) -> torch.Tensor:
    """``(N, outputs, inputs)``: per-sample Jacobians of the flattened output w.r.t. the input
    (or the starting ``point``). ``vmap`` over samples, or a loop where ``vmap`` cannot run the
    model (data-dependent indexing, ``.item()``)."""
    point = point or InputPoint(model, x)
    state = functional_state(model)
    z = point.start()

    def f(zi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return point.call(state, zi.unsqueeze(0), xi.unsqueeze(0)).reshape(-1)

    try:
        with quiet_vmap():  # an op without a batching rule loops, with the same numbers
            jac = vmap(jacrev(f))(z, x)
    except (RuntimeError, NotImplementedError, ValueError):
        jac = torch.stack([jacrev(f)(z[i], x[i]) for i in range(len(x))])
    return jac.reshape(len(x), jac.shape[1], -1)


def layer_gains(
    model: nn.Module,
    x: torch.Tensor,
    seed: int,
    point: InputPoint | None = None,
    skipped: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Squared-norm gain of a random input perturbation through each layer.

    One forward-mode pass (``torch.func.jvp``) carries the tangent v to every layer output.
    Layers whose output has no batch dimension, and the token embedding itself (its input is
    not perturbed), are left out (the former named in ``skipped`` with the reason).
    """
    point = point or InputPoint(model, x)
    layers = [(n, m) for n, m in weight_layers(model) if m is not point.module]
    state = functional_state(model)
    z = point.start()
    n = len(x)

    def outputs(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with recording(layers) as calls:
            point.call(state, inp, x)
        return tuple(
            c.output if isinstance(c.output, torch.Tensor) else inp.new_zeros(0) for c in calls
        )

    with recording(layers) as calls, torch.no_grad():
        point.call(state, z, x)
    names = [c.name for c in calls]
    gen = torch.Generator().manual_seed(seed)  # drawn on the host, moved once: same v anywhere
    v = torch.randn(z.shape, generator=gen, dtype=z.dtype, device="cpu").to(z.device)
    v = v / v.reshape(n, -1).norm(dim=1).reshape(-1, *[1] * (z.dim() - 1))
    tangents = jvp(outputs, (z,), (v,))[1]
    rows, previous = [], torch.ones(n, dtype=wide_dtype(z.device), device=z.device)
    gains: list[torch.Tensor] = []
    # A layer applied several times (weight sharing) reports each application in order.
    for name, tangent in zip(names, tangents, strict=False):
        try:
            current = widen(per_sample(tangent, n)).pow(2).sum(1)
        except ValueError as err:
            if skipped is not None:
                skipped[name] = str(err)
            continue
        ok = previous > 0
        # NaN when no sample had signal left (mean of an empty selection)
        gains.append((current[ok] / previous[ok]).mean())
        rows.append({"name": name})
        previous = current
    # every gain read back in one transfer
    for row, gain in zip(rows, torch.stack(gains).tolist() if gains else [], strict=True):
        row["gain"] = gain
    return rows


@register_probe("jacobian")
class JacobianProbe(Probe):
    """Input–output Jacobian spectrum and per-layer gains."""

    Params = JacobianParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        if is_graph_model(model):  # every node: the full-graph forward
            with frozen_statistics(model, batch.x):
                return self._measure(model, batch.x, seed, self.params.samples)
        x = batch.x[: self.params.samples]
        with frozen_statistics(model, x):
            return self._measure(model, x, seed)

    def _measure(
        self, model: nn.Module, x: torch.Tensor, seed: int, nodes: int | None = None
    ) -> dict[str, Any]:
        point = InputPoint(model, x)
        try:
            if nodes is not None and point.module is None:
                jac = graph_input_jacobians(model, x, nodes)
            else:
                jac = input_jacobians(model, x, point)
        except RuntimeError as exc:
            raise ProbeError(
                f"cannot differentiate the model w.r.t. its input: {str(exc).splitlines()[0]}"
            ) from None
        sv = torch.linalg.svdvals(widen(jac)).flatten().sort(descending=True).values.cpu()
        sq = sv.pow(2)
        skipped: dict[str, str] = {}
        gains = layer_gains(model, x, seed, point, skipped)
        inner = [g["gain"] for g in gains[1:-1] if g["gain"] > 0] or [
            g["gain"] for g in gains if g["gain"] > 0
        ]
        return {
            "singular_values": sv.tolist(),
            "mean_squared_singular_value": sq.mean().item(),
            "max_singular_value": sv[0].item(),
            "min_singular_value": sv[-1].item(),
            "spread": (sq.std() / sq.mean()).item() if sq.mean() > 0 and len(sq) > 1 else 0.0,
            "layers": gains,
            "mean_gain": math.exp(sum(math.log(g) for g in inner) / len(inner))
            if inner
            else math.nan,
            "wrt": "input" if point.name is None else f"output of {point.name}",
            "skipped_layers": skipped,
            "n_samples": len(jac),
        }
