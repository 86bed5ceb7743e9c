"""Hessian–vector products of a model's loss, on flat vectors, two ways, timed against each other.

``model_loss`` turns a model and a batch into L(θ), the mean loss as a function of the trainable
parameters (through ``torch.func.functional_call``: the model is never written to), and
``HessianOperator`` multiplies rows of flat vectors by H = ∇²L(θ) without forming it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from depthlab.exceptions import ProbeError
from depthlab.probes.base import ProbeBatch, functional_state

METHODS = ("double_backward", "forward_over_reverse")


def _warm_up_forward_mode() -> None:
    """Forward-mode AD pays once per process for lazy imports (~1 s) and for torch's jvp
    decompositions, whose import calls the deprecated ``torch.jit.script``. Pay it here, outside
    any timed product and with that one warning silenced, so a ``-W error`` run (our test suite)
    does not fail inside torch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated")
        load = getattr(torch.autograd.forward_ad, "_maybe_load_decompositions", None)
        if load is not None:
            load()
        one = torch.ones(1, device="cpu")
        jvp(grad(_cube_sum), (one,), (one,))


def _cube_sum(t: torch.Tensor) -> torch.Tensor:
    return (t**3).sum()


Tensors = tuple[torch.Tensor, ...]


class HessianOperator:
    """``V ↦ H V`` on rows ``V (b, n)`` (float64 in and out), H the Hessian of ``loss_of`` at
    ``params`` with respect to all their entries, flattened in order (n of them).

    Implementations: ``double_backward`` builds g = ∇L with ``create_graph`` once, then each
    product is ∂(g·v)/∂θ through the retained graph (batched: ``is_grads_batched``, a vmap over
    the backward pass); ``forward_over_reverse`` is ``jvp(grad(L), (θ,), (v,))`` with
    ``torch.func`` (batched: ``vmap`` over the jvp), which re-runs the forward pass every time.
    ``method="auto"`` times one product of each on rows the estimators ask for anyway (none is
    wasted: both are exact), forward-over-reverse first so that its transient memory is freed
    before the graph is retained, and keeps the faster; an implementation that raises (an op
    without forward-mode AD, or without a double backward) is dropped and the other used
    (``failures`` says why). ``batched="auto"`` does the same for
    batched against looped calls on blocks of rows. θ is not copied when it already has the
    products' dtype: the parameters enter as detached views.
    """

    def __init__(
        self,
        loss_of: Callable[[Tensors], torch.Tensor],
        params: Tensors,
        *,
        method: str = "auto",
        batched: str = "never",
    ) -> None:
        self.loss_of = loss_of
        self.params = tuple(t.detach() for t in params)
        self.sizes = [t.numel() for t in self.params]
        self.n, self.dtype = sum(self.sizes), self.params[0].dtype
        self.device = self.params[0].device
        self.products = 0
        self.methods = tuple(reversed(METHODS)) if method == "auto" else (method,)
        self.batch_modes = {"auto": (False, True), "always": (True,), "never": (False,)}[batched]
        self.seconds: dict[tuple[str, bool], float] = {}
        self.counts: dict[tuple[str, bool], int] = {}
        self.loss: torch.Tensor | None = None
        self.failures: dict[str, str] = {}  # implementations dropped, with their error
        self._leaves: Tensors = ()
        self._grads: Tensors = ()
        self._warm = False  # forward mode's one-time set-up, paid before its first product

    def _split(self, v: torch.Tensor) -> Tensors:
        """Rows ``(b, n)`` → one ``(b, *shape)`` piece per parameter, in the product dtype, on
        the parameters' device (the rows may come from the host, where Lanczos runs)."""
        pieces = v.to(device=self.device, dtype=self.dtype).split(self.sizes, dim=1)
        return tuple(c.view(len(v), *t.shape) for c, t in zip(pieces, self.params, strict=True))

    def _join(self, pieces: Tensors, b: int) -> torch.Tensor:
        """One piece per parameter, ``(b, *shape)`` → float64 rows ``(b, n)`` on the host: the
        Lanczos recurrence and the trace estimators run there in float64 (which every device
        does not have), so each block product moves its rows across once each way."""
        out = torch.empty(b, self.n, dtype=torch.float64, device="cpu")
        parts = out.split(self.sizes, dim=1)
        for c, piece, t in zip(parts, pieces, self.params, strict=True):
            if piece.dim() == t.dim():  # a batched grad materialises an unused input unbatched
                piece = piece.expand(b, *t.shape)
            c.copy_(piece.reshape(b, -1))
        return out

    # -- the two implementations ------------------------------------------------------------
    def build_graph(self) -> torch.Tensor:
        """Build (once) and retain the graph of g = ∇L for ``double_backward``; returns L."""
        if self.loss is None or not self._leaves:
            with torch.enable_grad():
                self._leaves = tuple(
                    t.requires_grad_(True) for t in (t.detach() for t in self.params)
                )
                loss = self.loss_of(self._leaves)
                grads = torch.autograd.grad(
                    loss, self._leaves, create_graph=True, materialize_grads=True
                )
            self._grads, self.loss = grads, loss.detach()
        assert self.loss is not None
        return self.loss

    def _double_backward(self, v: torch.Tensor, batched: bool) -> Tensors:
        self.build_graph()
        # entries of g that do not depend on θ (H rows of zeros) cannot be differentiated again
        live = [i for i, g in enumerate(self._grads) if g.requires_grad]
        outputs = [self._grads[i] for i in live]
        pieces = self._split(v)
        if not live:
            return tuple(torch.zeros_like(c) for c in pieces)

        def hvp(rows: Tensors) -> Tensors:
            return torch.autograd.grad(
                outputs,
                self._leaves,
                [rows[i] for i in live],
                retain_graph=True,
                is_grads_batched=batched,
                materialize_grads=True,
            )

        if batched:
            return hvp(pieces)
        per_row = [hvp(tuple(c[r] for c in pieces)) for r in range(len(v))]
        return tuple(torch.stack(cs) for cs in zip(*per_row, strict=True))

    def _forward_over_reverse(self, v: torch.Tensor, batched: bool) -> Tensors:
        def hvp(tangents: Tensors) -> Tensors:
            return jvp(grad(self.loss_of), (self.params,), (tangents,))[1]

        pieces = self._split(v)
        if batched:
            return vmap(hvp)(pieces)
        per_row = [hvp(tuple(c[r] for c in pieces)) for r in range(len(v))]
        return tuple(torch.stack(cs) for cs in zip(*per_row, strict=True))

    # -- dispatch ---------------------------------------------------------------------------
    def _untried(self, b: int) -> tuple[str, bool] | None:
        for mode in self.batch_modes:
            for method in self.methods:
                if (method, mode) not in self.seconds and (b > 1 or not mode):
                    return method, mode
        return None

    def _best(self, b: int) -> tuple[str, bool]:
        keys = [k for k in self.seconds if b > 1 or not k[1]] or [(self.methods[0], False)]
        return min(keys, key=lambda k: self.seconds.get(k, 0.0))

    def _run(self, key: tuple[str, bool], v: torch.Tensor) -> torch.Tensor:
        method, batched = key
        impl = self._double_backward if method == "double_backward" else self._forward_over_reverse
        if method == "double_backward":
            self.build_graph()  # one-time, not part of a product's time
        elif not self._warm:
            _warm_up_forward_mode()
            self._warm = True
        start = time.perf_counter()
        with torch.enable_grad():
            try:
                pieces = impl(v, batched)
            except Exception:
                if not batched:
                    raise
                # an op without a batching rule: never batch again, loop over the rows
                self.batch_modes = (False,)
                key = (method, False)
                pieces = impl(v, False)
            out = self._join(pieces, len(v))
        seconds = (time.perf_counter() - start) / len(v)
        self.seconds[key] = min(self.seconds.get(key, seconds), seconds)
        self.counts[key] = self.counts.get(key, 0) + len(v)
        self.products += len(v)
        return out

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        done = []
        while len(v) and (key := self._untried(len(v))) is not None:
            take = 1 if not key[1] else len(v)  # a looped trial needs one row only
            try:
                done.append(self._run(key, v[:take]))
            except Exception as exc:
                # What works, not only what is fastest: an implementation some op of the model
                # lacks (forward-mode AD or a double backward) is dropped, the next one tried.
                others = tuple(m for m in self.methods if m != key[0])
                if not others:
                    raise
                self.methods = others
                self.failures[key[0]] = str(exc).strip().splitlines()[0] if str(exc) else ""
                if key[0] == "double_backward":
                    self.close()
                continue
            v = v[take:]
        if len(v):
            done.append(self._run(self._best(len(v)), v))
        return done[0] if len(done) == 1 else torch.cat(done)

    def timings(self) -> dict[str, float]:
        """Fastest seconds per product seen for each implementation tried."""
        return {_label(k): t for k, t in self.seconds.items()}

    def used(self) -> str:
        """The implementation that computed the most products (``/batched`` if batched)."""
        return _label(max(self.counts, key=self.counts.__getitem__)) if self.counts else ""

    def close(self) -> None:
        """Drop the retained graph."""
        self._leaves = self._grads = ()


def _label(key: tuple[str, bool]) -> str:
    return key[0] + ("/batched" if key[1] else "")


def cast_to(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """Detach and cast floating tensors to ``dtype`` (no copy when they already have it)."""

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(dtype) if t.is_floating_point() else t.detach()

    return cast


def model_function(
    model: nn.Module, dtype: torch.dtype
) -> tuple[Callable[[Tensors, torch.Tensor], torch.Tensor], Tensors]:
    """``(f, θ)``: ``f(θ, x)`` is the model's output as a function of its trainable parameters
    (a tuple, in ``named_parameters`` order), and θ their current values.

    The model is called through ``torch.func.functional_call`` with every parameter and buffer
    cast to ``dtype``; the model itself is never written to.
    """
    trainable, rest = functional_state(model)
    if not trainable:
        raise ProbeError("the model has no trainable parameters; the Hessian is empty")
    cast = cast_to(dtype)
    names = list(trainable)
    fixed = {k: cast(t) for k, t in rest.items()}

    def f(params: Tensors, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **dict(zip(names, params, strict=True))}, (x,))

    return f, tuple(cast(p) for p in trainable.values())


def model_loss(
    model: nn.Module, batch: ProbeBatch, dtype: torch.dtype
) -> tuple[Callable[[Tensors], torch.Tensor], Tensors]:
    """``(L, θ)``: the mean loss as a function of the trainable parameters (``model_function``),
    and their current values."""
    f, params = model_function(model, dtype)
    cast = cast_to(dtype)
    x, y = cast(batch.x), cast(batch.y)

    def loss_of(params: Tensors) -> torch.Tensor:
        return batch.loss_fn(f(params, x), y)

    return loss_of, params
