"""Neural collapse of a classifier's penultimate features (Papyan, Han & Donoho 2020).

The features h ∈ ℝᵈ are the input of the classifier, by default the last ``nn.Linear`` in
``model.modules()`` order, captured with a forward hook. With the C classes present in the batch,
class means μ_c, global mean μ_G (mean over all N samples) and n_c samples in class c:

- Σ_W = (1/N) Σᵢ (hᵢ − μ_{yᵢ})(hᵢ − μ_{yᵢ})ᵀ, Σ_B = (1/C) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ.
- NC1 = (1/C) tr(Σ_W Σ_B⁺): within-class variability relative to the class-mean spread; → 0.
- NC2 = ‖MᵀM − (C/(C−1))(I − 11ᵀ/C)‖_F, M (d×C) with columns (μ_c − μ_G)/‖μ_c − μ_G‖:
  distance of the centred class means' Gram matrix from a simplex equiangular tight frame; → 0.
- equinorm = std/mean (population std) of the centred norms ‖μ_c − μ_G‖; → 0.
- NC3 = ‖W/‖W‖_F − Mᵀ/‖M‖_F‖_F, W (C×d) the classifier's weight rows of the present classes
  and M as in NC2 (so ‖M‖_F = √C): self-duality of classifier and class means; → 0.
- NC4 = fraction of samples whose classifier prediction (argmax of the classifier's output,
  bias included) equals the nearest-class-mean prediction argmin_c ‖h − μ_c‖; → 1.

For imbalanced classes, Dang et al. (2023, "Neural Collapse in Deep Linear Networks: From
Balanced to Imbalanced Data") prove that bias-free deep linear networks trained with MSE reach
*orthogonal* un-centred class means whose norms depend on (are ordered by) the class size; with
weight decay the feature means shrink as the class grows (the ``neural-collapse`` claim measured
Spearman −1, consistent with ‖μ_c‖ ∝ n_c^(−1/4) from the per-class optimum). The probe reports the
cosine matrix of the un-centred means μ_c, its largest off-diagonal |cosine| and the Spearman rank
correlation between class sizes n_c and norms ‖μ_c‖ (``None`` when either is constant).

A classifier applied to every token (``(N, T, d)`` features, as GPT-2's score head) is pooled
as the model pools: for each sample the token whose classifier output is the model's output
(the last token, CLS), or the mean over tokens when that is what the model returns; a model
that pools otherwise is skipped with that reason.

All quantities are computed in float64. Features are measured in the probes' mode policy with
the batch statistics of the whole batch held fixed (``eval_mode``, the default: dropout off,
batch norm by the statistics of the batch in train mode, sample by sample), or as the model is.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes.base import Probe, ProbeBatch, frozen_statistics, register_probe
from depthlab.probes.layers import recording
from depthlab.spec import Spec


@dataclasses.dataclass(frozen=True)
class CollapseParams(Spec):
    """``classifier``: the ``named_modules`` name of the classifier ``nn.Linear`` ("" = the last
    ``nn.Linear``). ``eval_mode``: measure with the model in eval mode (dropout off, norm layers
    on running statistics). ``chunk_size``: samples per forward pass (0 = all at once).
    ``rcond``: singular values of the centred class-mean matrix below ``rcond`` × the largest
    count as zero in the pseudo-inverse Σ_B⁺ (Σ_B has rank at most C − 1)."""

    classifier: str = ""
    eval_mode: bool = True
    chunk_size: int = 0
    rcond: float = 1e-10

    def _check(self) -> None:
        if self.chunk_size < 0:
            raise SpecError(
                "chunk_size", f"{self.chunk_size!r} is not valid; expected >= 1, or 0 for all"
            )
        if not 0.0 <= self.rcond < 1.0:
            raise SpecError("rcond", f"{self.rcond!r} is not valid; expected 0 <= rcond < 1")


def find_classifier(model: nn.Module, name: str = "") -> tuple[str, nn.Linear]:
    """The module named ``name``, or the last ``nn.Linear`` in ``model.modules()`` order."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not name:
        if not linears:
            raise ProbeError(
                f"collapse needs a classifier nn.Linear, but {type(model).__name__} has none"
            )
        return linears[-1]
    modules = dict(model.named_modules())
    choices = ", ".join(n for n, _ in linears) or "(none)"
    if name not in modules:
        raise ProbeError(f"no module named {name!r}; nn.Linear modules: {choices}")
    module = modules[name]
    if not isinstance(module, nn.Linear):
        raise ProbeError(
            f"classifier {name!r} is a {type(module).__name__}, not an nn.Linear; "
            f"nn.Linear modules: {choices}"
        )
    return name, module


def penultimate(
    model: nn.Module, classifier: nn.Linear, x: torch.Tensor, chunk_size: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)``: the input and output of ``classifier`` for every sample of ``x``,
    shapes (N, d) and (N, K). The classifier must be called exactly once per forward pass."""
    step = len(x) if chunk_size == 0 else chunk_size
    feats, logits = [], []
    with recording([("classifier", classifier)]) as calls, torch.no_grad():
        for start in range(0, len(x), step):
            calls.clear()
            chunk = x[start : start + step]
            pooled = model(chunk)
            if len(calls) != 1:
                raise ProbeError(
                    f"the classifier was called {len(calls)} times in one forward pass; "
                    "collapse needs exactly one call (name it with classifier=...)"
                )
            h, out = calls[0].args[0].detach(), calls[0].output.detach()
            if h.ndim == 3 and h.shape[0] == len(chunk) and isinstance(pooled, torch.Tensor):
                h, out = pool_tokens(h, out, pooled.detach())
            if h.ndim != 2 or h.shape[0] != len(chunk):
                raise ProbeError(
                    f"classifier input has shape {tuple(h.shape)}; collapse needs one "
                    f"feature vector per sample, shape ({len(chunk)}, features)"
                )
            feats.append(h)
            logits.append(out)
    return torch.cat(feats), torch.cat(logits)


def pool_tokens(
    h: torch.Tensor, out: torch.Tensor, pooled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, T, d)`` and per-token outputs ``(N, T, K)`` of a classifier applied to
    every token → ``(N, d)`` and ``(N, K)``, pooled as the model's output ``pooled (N, K)``
    shows: the one token whose output it is, for each sample, or the mean over tokens."""
    n = len(h)
    flat = pooled.reshape(n, 1, -1)
    if flat.shape[2] != out.shape[2]:
        raise ProbeError(
            f"the classifier's per-token outputs {tuple(out.shape)} do not match the model's "
            f"output {tuple(pooled.shape)}; collapse cannot tell how the model pools its tokens"
        )
    scale = 1e-5 * (1.0 + out.abs().amax(dim=(1, 2)))
    err = (out - flat).abs().amax(dim=2)  # (N, T)
    best = err.argmin(dim=1)
    rows = torch.arange(n)
    if bool((err[rows, best] <= scale).all()):
        return h[rows, best], out[rows, best]
    if bool(((out.mean(1) - flat[:, 0]).abs().amax(1) <= scale).all()):
        return h.mean(1), out.mean(1)
    raise ProbeError(
        "the classifier runs on every token but the model's output is neither one token's "
        "output nor their mean; collapse cannot tell how the model pools its tokens"
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's ρ: Pearson correlation of the (tie-averaged) ranks; ``None`` if either is
    constant (ρ undefined)."""
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denom = float(np.sqrt((ra @ ra) * (rb @ rb)))
    return None if denom == 0.0 else float(ra @ rb) / denom


def collapse_metrics(
    h: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    logits: np.ndarray,
    rcond: float = 1e-10,
) -> dict[str, Any]:
    """The neural-collapse numbers of the module docstring from features ``h`` (N, d), integer
    labels ``y`` (N,), classifier weight (K, d) and classifier output ``logits`` (N, K)."""
    classes, y_idx, sizes = np.unique(y, return_inverse=True, return_counts=True)
    c = len(classes)
    if c < 2:
        raise ProbeError(f"collapse needs at least 2 classes in the batch; found {c}")
    n, d = h.shape
    means = np.zeros((c, d))
    np.add.at(means, y_idx, h)
    means /= sizes[:, None]  # (C, d): μ_c
    mu_g = h.mean(axis=0)
    centred = means - mu_g  # (C, d): μ_c − μ_G
    within = h - means[y_idx]  # (N, d): h_i − μ_{y_i}

    # NC1 without forming d×d matrices: Σ_B = (1/C) DDᵀ with D = centredᵀ (d×C), so
    # Σ_B⁺ = C D⁺ᵀD⁺ and tr(Σ_W Σ_B⁺)/C = tr(D⁺ Σ_W D⁺ᵀ) = ‖within · D⁺ᵀ‖_F² / N.
    d_pinv = np.linalg.pinv(centred.T, rcond=rcond)  # (C, d)
    nc1 = float(np.sum((within @ d_pinv.T) ** 2) / n)

    norms_c = np.linalg.norm(centred, axis=1)
    if np.any(norms_c == 0.0):
        raise ProbeError("a class mean equals the global mean; class means do not separate")
    m = (centred / norms_c[:, None]).T  # (d, C), unit columns
    etf = (c / (c - 1)) * (np.eye(c) - np.ones((c, c)) / c)
    nc2 = float(np.linalg.norm(m.T @ m - etf))
    equinorm = float(norms_c.std() / norms_c.mean())

    w = weight[classes]  # (C, d): rows of the present classes
    w_norm = np.linalg.norm(w)
    nc3 = None if w_norm == 0 else float(np.linalg.norm(w / w_norm - m.T / np.linalg.norm(m)))

    # argmin_c ‖h − μ_c‖² = argmin_c (‖μ_c‖² − 2h·μ_c): no (N, C, d) array
    dists = (means**2).sum(1)[None, :] - 2 * h @ means.T
    ncc = classes[np.argmin(dists, axis=1)]
    nc4 = float(np.mean(np.argmax(logits, axis=1) == ncc))

    raw_norms = np.linalg.norm(means, axis=1)
    safe = np.where(raw_norms == 0.0, 1.0, raw_norms)
    cosines = (means @ means.T) / np.outer(safe, safe)
    off = np.abs(cosines[~np.eye(c, dtype=bool)])

    return {
        "nc1": nc1,
        "nc2": nc2,
        "nc3": nc3,
        "nc4": nc4,
        "equinorm": equinorm,
        "classes": [int(k) for k in classes],
        "class_sizes": [int(k) for k in sizes],
        "mean_norms": [float(v) for v in raw_norms],
        "centred_mean_norms": [float(v) for v in norms_c],
        "mean_cosines": [[float(v) for v in row] for row in cosines],
        "max_offdiag_cosine": float(off.max()),
        "size_norm_spearman": spearman(sizes.astype(float), raw_norms),
        "n_classes": c,
        "n_samples": int(n),
        "n_features": int(d),
    }


@register_probe("collapse")
class Collapse(Probe):
    """Neural collapse NC1–NC4, equinorm and the imbalanced-class orthogonality structure of the
    classifier's input features (Papyan, Han & Donoho 2020; Dang et al. 2023)."""

    Params = CollapseParams
    params: CollapseParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        if batch.task != "classification" or torch.is_floating_point(batch.y):
            raise ProbeError(
                f"collapse needs a classification batch with integer labels; got task "
                f"{batch.task!r} with {batch.y.dtype} targets"
            )
        name, classifier = find_classifier(model, self.params.classifier)
        y = batch.y.reshape(-1)
        if len(y) != len(batch.x):
            raise ProbeError(f"x has {len(batch.x)} samples but y has {len(y)} labels")
        if len(y) == 0:
            raise ProbeError("collapse needs samples; the batch is empty")
        if int(y.min()) < 0 or int(y.max()) >= classifier.out_features:
            raise ProbeError(
                f"labels span {int(y.min())}..{int(y.max())} but classifier {name!r} has "
                f"{classifier.out_features} outputs"
            )
        with frozen_statistics(model, batch.x) if self.params.eval_mode else nullcontext():
            h, logits = penultimate(model, classifier, batch.x, self.params.chunk_size)
        if not (bool(torch.isfinite(h).all()) and bool(torch.isfinite(logits).all())):
            raise ProbeError(f"the input or output of classifier {name!r} holds NaN/inf values")
        out = collapse_metrics(
            # the metrics run on the host in float64 (numpy): each array read back once
            h.cpu().double().numpy(),
            y.cpu().numpy(),
            classifier.weight.detach().cpu().double().numpy(),
            logits.cpu().double().numpy(),
            self.params.rcond,
        )
        out["classifier"] = name
        return out
