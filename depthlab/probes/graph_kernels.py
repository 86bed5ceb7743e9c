"""The NTK and the input Jacobian of a graph network, taken over the whole graph.

A graph network is one function of every node at once, F: (X ∈ ℝ^{N×F}; θ) ↦ ℝ^{N×K}: node
i's output depends on its neighbours' inputs, so there is no per-sample function f(x_i) to
differentiate, and running a node alone (or the subgraph of the first rows) changes what is
measured. Both kernels here come from the full-graph forward pass; a node subset S (the first
``nodes`` rows) selects rows of the full computation, never a subgraph:

* NTK: Θ_ij = Σ_k ⟨∂F_ik/∂θ, ∂F_jk/∂θ⟩ for i, j ∈ S, the kernel gradient descent on the nodes of S
  moves their outputs by (full-batch training on a graph is exactly this coupled kernel). One
  reverse pass per (node, output) pair, batched by ``vmap``, contracted output by output
  (memory |S|·P, P the trainable parameters).
* Input Jacobian: J_i = ∂F_i/∂X ∈ ℝ^{K × N·F} for i ∈ S, node i's output against every node's
  input (its neighbourhood included); one reverse pass per (node, output) pair.

A graph network is a model holding its graph as an ``edge_index`` tensor (2×E), as every
depthlab graph family does (``is_graph_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from depthlab._device import wide_dtype
from depthlab.probes.base import functional_state
from depthlab.probes.ntk_func import quiet_vmap


def is_graph_model(model: nn.Module) -> bool:
    """A model that holds its graph: an ``edge_index`` tensor of shape (2, E)."""
    edge_index = getattr(model, "edge_index", None)
    return isinstance(edge_index, torch.Tensor) and edge_index.dim() == 2 and len(edge_index) == 2


def forward_and_pullback(f: Callable[[Any], torch.Tensor], primal: Any) -> tuple[torch.Tensor, Any]:
    """``torch.func.vjp`` without auxiliary outputs: the value and its pullback."""
    value = vjp(f, primal)
    return value[0], value[1]


def _rows_of_pullback(
    pull: Callable[[torch.Tensor], tuple[Any, ...]],
    shape: tuple[int, int],
    k: int,
    chunk: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Any:
    """The pullback of e_{i,k} for every row i (output k fixed), stacked over i: ``vmap`` in
    chunks, or one row at a time where ``vmap`` cannot run the model's backward."""
    s, n_out = shape
    eye = torch.zeros(s, s, n_out, dtype=dtype, device=device)
    rows = torch.arange(s, device=device)
    eye[rows, rows, k] = 1.0
    try:
        with quiet_vmap():
            return vmap(pull, chunk_size=chunk)(eye)[0]
    except (RuntimeError, NotImplementedError):
        parts = [pull(eye[i])[0] for i in range(s)]
        if isinstance(parts[0], dict):
            return {name: torch.stack([p[name] for p in parts]) for name in parts[0]}
        return torch.stack(parts)


def graph_ntk(
    model: nn.Module, x: torch.Tensor, nodes: int, *, budget: int
) -> tuple[torch.Tensor, dict[str, int]]:
    """Θ (float64, ``(S, S)``, S the first ``nodes`` nodes) of the full-graph forward on ``x``
    (every node's features), over the trainable parameters; and K, P."""
    params, rest = functional_state(model)
    s = min(nodes, len(x))

    def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
        out = functional_call(model, {**rest, **p}, (x,))
        return out.reshape(len(x), -1)[:s]

    out, pull = forward_and_pullback(f, params)
    n_params = sum(v.numel() for v in params.values())
    k_out = out.shape[1]
    chunk = max(1, min(s, budget // max(1, 3 * n_params)))
    theta = torch.zeros(s, s, dtype=wide_dtype(out.device), device=out.device)
    for k in range(k_out):
        grads = _rows_of_pullback(pull, (s, k_out), k, chunk, out.dtype, out.device)
        jac = torch.cat([grads[name].reshape(s, -1) for name in params], dim=1)
        theta += (jac @ jac.T).to(theta.dtype)
    return theta, {"n_outputs": k_out, "n_params": n_params}


def graph_input_jacobians(model: nn.Module, x: torch.Tensor, nodes: int) -> torch.Tensor:
    """``(S, K, N·F)``: J_i = ∂F_i/∂X of the full-graph forward for the first ``nodes`` nodes,
    each against every node's input."""
    state = functional_state(model)
    merged = {**state[0], **state[1]}
    s = min(nodes, len(x))

    def f(z: torch.Tensor) -> torch.Tensor:
        return functional_call(model, merged, (z,)).reshape(len(z), -1)[:s]

    out, pull = forward_and_pullback(f, x)
    k_out = out.shape[1]
    rows = []
    for k in range(k_out):
        grads = _rows_of_pullback(pull, (s, k_out), k, s, out.dtype, out.device)
        rows.append(grads.reshape(s, -1))
    return torch.stack(rows, dim=1)
