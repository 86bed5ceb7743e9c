"""The probe interface: a measurement of any ``nn.Module`` that leaves it exactly as it was.

A probe is a ``Probe`` subclass with a nested ``Params`` spec, registered with
``@register_probe(name)``. ``probe.run(model, batch)`` returns a JSON-safe ``dict``. Probes reach
into models only through forward hooks and ``torch.func``; ``run`` is wrapped so that the model's
train/eval mode (of every submodule), its parameters, buffers and ``requires_grad`` flags are
restored bit for bit afterwards, whatever happens inside.

One mode policy for every probe (``MODE``): probes see the function training sees, so modules
that normalise by batch statistics (batch norm, and any module with ``running_*`` buffers) are
in train mode, and every other module is in eval mode: dropout, attention dropout and stochastic
depth are off unless ``run(..., dropout=True)`` asks for them. Probes that need a per-sample
function (Jacobians, the NTK, the Hessian) hold the batch statistics of their probe batch fixed
(``frozen_statistics``): batch norm then normalises every sample by the statistics the whole
batch had in train mode, and dropout stays off (a per-sample function has no dropout draws).
Attention is computed by the math kernel of ``scaled_dot_product_attention``
(``attention_math``), the one kernel with forward-mode and double-backward derivatives, so every
probe sees the same function.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from depthlab import _registry as reg
from depthlab._device import forked_rng, model_device
from depthlab.exceptions import ProbeError
from depthlab.spec import Spec

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeBatch:
    """The data a probe measures on: inputs ``x``, targets ``y`` and the mean loss.

    ``task`` is ``classification`` (integer ``y``, cross-entropy by default) or ``regression``.
    """

    x: torch.Tensor
    y: torch.Tensor
    loss_fn: LossFn
    task: str = "classification"

    @classmethod
    def from_tensors(cls, x: torch.Tensor, y: torch.Tensor, loss: str = "auto") -> ProbeBatch:
        """Integer ``y``: classification with mean cross-entropy; real ``y``: MSE."""
        if len(x) != len(y):
            raise ProbeError(f"x has {len(x)} samples but y has {len(y)}")
        integral = not torch.is_floating_point(y)
        task = "classification" if integral else "regression"
        name = loss if loss != "auto" else ("cross_entropy" if integral else "mse")
        if name == "cross_entropy":
            if not integral:
                raise ProbeError("loss cross_entropy needs integer class labels in y")
            return cls(x, y, F.cross_entropy, task)
        if name == "mse":
            if integral:

                def mse_onehot(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                    return F.mse_loss(out, F.one_hot(target, out.shape[-1]).to(out.dtype))

                return cls(x, y, mse_onehot, task)
            return cls(x, y, lambda out, t: F.mse_loss(out, t.reshape(out.shape)), task)
        raise ProbeError(f"unknown loss {loss!r}; choices: auto, cross_entropy, mse")

    def head(self, n: int) -> ProbeBatch:
        """The first ``n`` samples (all if fewer)."""
        return dataclasses.replace(self, x=self.x[:n], y=self.y[:n])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> ProbeBatch:
        """The batch on ``device`` (itself when already there)."""
        device = torch.device(device)
        if self.x.device == device and self.y.device == device:
            return self
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))


class Probe(abc.ABC):
    """A measurement. Subclasses set ``name``, ``Params`` and implement ``measure``."""

    name: ClassVar[str]
    Params: ClassVar[type[Spec]]

    def __init__(self, params: Spec | None = None) -> None:
        self.params: Any = params if params is not None else self.Params()

    @abc.abstractmethod
    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        """The probe's numbers; may change the model's mode and gradients (``run`` restores)."""

    #: Dropout during the measurement (``run(..., dropout=True)``); read through ``set_mode``.
    dropout: bool = False

    def run(
        self, model: nn.Module, batch: ProbeBatch, *, seed: int = 0, dropout: bool = False
    ) -> dict[str, Any]:
        """``measure`` with the model's state restored afterwards, bit for bit. The batch is
        moved to the model's device first (``depthlab._device``): a probe runs where the model
        lives."""
        self.dropout = dropout
        device = model_device(model)
        batch = batch.to(device)
        with preserved(model), forked_rng(device, seed), attention_math():
            return self.measure(model, batch, seed=seed)

    def set_mode(self, model: nn.Module) -> None:
        """The mode policy (module docstring): batch statistics on, dropout as asked."""
        set_mode(model, dropout=self.dropout)


#: The mode policy every probe states in its diagnosis (``mode`` key).
MODE = {
    "normalization": "train (batch statistics)",
    "dropout": "off",
    "per_sample": "batch statistics of the probe batch, held fixed; dropout off",
    "attention": "math kernel",
}


def uses_batch_statistics(module: nn.Module) -> bool:
    """A module whose train mode normalises by the batch: batch norm, or any module keeping
    ``running_*`` buffers (running means, PowerNorm's quadratic mean)."""
    return any(name.startswith("running") for name, _ in module.named_buffers(recurse=False))


def set_mode(model: nn.Module, *, dropout: bool = False) -> None:
    """Batch-statistics modules in train mode; every other module in eval mode (no dropout),
    or in train mode too with ``dropout``."""
    for m in model.modules():
        m.training = dropout or uses_batch_statistics(m)


@contextlib.contextmanager
def attention_math() -> Iterator[None]:
    """``scaled_dot_product_attention`` by its math kernel, and ``nn.MultiheadAttention``
    without its fused fast path: the fused CPU kernels have neither forward-mode AD nor a double
    backward, which Jacobian-vector and Hessian-vector products need."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch: no fused kernel choice either
        yield
        return
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        # nn.MultiheadAttention's inference fast path (a fused kernel without forward-mode AD)
        # is taken under torch.func, whose parameters do not require grad: off while probing
        mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)


@contextlib.contextmanager
def frozen_statistics(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Put ``model`` in the mode policy and, while open, hold its batch statistics fixed at
    those of ``x``.

    One forward pass in train mode (dropout off) records every batch norm's batch mean and
    (biased) variance on ``x`` into its running buffers; the norms are then switched to eval
    mode, so each sample is normalised exactly as in that train-mode pass, independently of the
    others. On exit the running buffers and momenta are restored (the modes stay as set).
    Other modules with running buffers (no batch statistics to freeze) are left on their
    running values, in eval mode.
    """
    set_mode(model)
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    for m in model.modules():
        if uses_batch_statistics(m) and m not in norms:
            m.eval()
    saved = [
        (m, m.momentum, {k: b.detach().clone() for k, b in m.named_buffers(recurse=False)})
        for m in norms
    ]
    counts: dict[int, int] = {}

    def count(mod: nn.Module, args: tuple[Any, ...]) -> None:
        counts[id(mod)] = args[0].numel() // args[0].shape[1]

    try:
        handles = [m.register_forward_pre_hook(count) for m in norms]
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: after one batch, the batch's statistics
            if norms:
                with torch.no_grad():
                    model(x)
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            for m in norms:
                k = counts.get(id(m), 0)
                if k > 1 and m.running_var is not None:
                    m.running_var.mul_((k - 1) / k)  # unbiased → the biased variance of train
                m.eval()
        yield
    finally:
        with torch.no_grad():
            for m, momentum, buffers in saved:
                m.momentum = momentum
                for key, b in m.named_buffers(recurse=False):
                    b.copy_(buffers[key])


def register_probe(name: str) -> Callable[[type[Probe]], type[Probe]]:
    """Register a ``Probe`` subclass under ``name``."""

    def wrap(cls: type[Probe]) -> type[Probe]:
        cls.name = name
        return reg.PROBES.register(name, cls)

    return wrap


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's mode, every parameter and buffer, ``requires_grad`` and
    ``.grad`` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    # which tensor objects each module holds: torch.func.functional_call leaves a plain tensor
    # in place of a Parameter when one module is called under two names (nn.Sequential(a, b, a))
    held = [(m, dict(m._parameters), dict(m._buffers)) for m in model.modules()]
    tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    flags = [
        (p, p.requires_grad, None if p.grad is None else p.grad.detach().clone())
        for p in model.parameters()
    ]
    try:
        yield
    finally:
        for m, params, buffers in held:
            for k, p in params.items():
                if m._parameters.get(k) is not p:
                    m._parameters[k] = p
            for k, b in buffers.items():
                if m._buffers.get(k) is not b:
                    m._buffers[k] = b
        with torch.no_grad():
            current = model.state_dict(keep_vars=True)
            for k, v in tensors.items():
                if not torch.equal(current[k], v) or current[k].dtype != v.dtype:
                    current[k].copy_(v)
        for p, requires_grad, grad in flags:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for m, training in modes:
            m.training = training


def functional_state(
    model: nn.Module, names: Iterable[str] | None = None, *, detach: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(params, rest)`` for ``torch.func.functional_call(model, (params, rest), args)``.

    ``params``: the parameters named ``names``, in that order (default: the trainable ones,
    ``requires_grad``, in ``named_parameters`` order); ``rest``: every other parameter, then
    every buffer. With ``detach`` the parameters are detached (fresh leaves for ``torch.func``,
    no graph back into the model); buffers are always passed as they are.
    """
    every = dict(model.named_parameters())
    keys = [k for k, p in every.items() if p.requires_grad] if names is None else list(names)

    def own(t: torch.Tensor) -> torch.Tensor:
        return t.detach() if detach else t

    params = {k: own(every[k]) for k in keys}
    rest = {k: own(p) for k, p in every.items() if k not in params}
    rest.update(dict(model.named_buffers()))
    return params, rest
