"""Representational similarity: linear centred kernel alignment (Kornblith et al. 2019).

For representations of the same ``n`` inputs, X (n×p) and Y (n×q), each column-centred,

    CKA(X, Y) = ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F)

which equals the HSIC form tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)) with linear kernels
K = XXᵀ, L = YYᵀ and centring matrix H = I − 11ᵀ/n. It is dimensionless, in [0, 1], 1 for
identical representations, and invariant to orthogonal maps and isotropic scaling of either
representation (not to anisotropic scaling).
"""

from __future__ import annotations

import torch


def _as_matrix(name: str, z: torch.Tensor) -> torch.Tensor:
    if z.dim() < 1:
        raise ValueError(f"{name} must have a leading example dimension, got a scalar")
    # Trailing dimensions are features: (n, ...) -> (n, prod(...)).
    return z.reshape(z.shape[0], -1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA between ``x`` (n, ...) and ``y`` (n, ...); a differentiable 0-dim tensor.

    Rows are examples, all trailing dimensions are flattened into features, and columns are
    centred here. Computed in feature space (p×q cross-covariance) or, when that is larger,
    in example space (n×n Gram matrices); both give the same number. A representation that
    is constant over the examples has no alignment defined and gives NaN.
    """
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of examples (rows), "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"linear CKA needs at least 2 examples, got n={n}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    xm = _as_matrix("x", x).to(dtype)
    ym = _as_matrix("y", y).to(dtype)
    xm = xm - xm.mean(dim=0, keepdim=True)
    ym = ym - ym.mean(dim=0, keepdim=True)
    p, q = xm.shape[1], ym.shape[1]
    if p * q <= n * n:
        cross = (ym.T @ xm).square().sum()
        self_x = torch.linalg.matrix_norm(xm.T @ xm)
        self_y = torch.linalg.matrix_norm(ym.T @ ym)
    else:
        # ‖YᵀX‖_F² = <XXᵀ, YYᵀ>_F and ‖XᵀX‖_F = ‖XXᵀ‖_F: cheaper when features outnumber n.
        gram_x = xm @ xm.T
        gram_y = ym @ ym.T
        cross = (gram_x * gram_y).sum()
        self_x = torch.linalg.matrix_norm(gram_x)
        self_y = torch.linalg.matrix_norm(gram_y)
    return cross / (self_x * self_y)


def cka_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − linear CKA: 0 for representations equal up to rotation and scale, at most 1."""
    return 1 - linear_cka(x, y)
