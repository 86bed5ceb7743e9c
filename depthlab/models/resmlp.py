"""``resmlp``: residual MLP blocks on a constant width, pre- or post-norm.

Input projection to ``width``, then ``depth`` blocks with branch f(x) = Linear(act(x)):
pre-norm x + α f(norm(x)) (a final norm before the readout), or post-norm norm(x + α f(x)).
This is the residual form of mean-field theory (unit-gain branch at the critical init).
"""

from __future__ import annotations

from torch import nn

from depthlab.exceptions import SpecError
from depthlab.models.base import Parts, flat_dim, register_arch
from depthlab.spec import ArchSpec


@register_arch("resmlp")
def resmlp(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Residual MLP: embedding, ``depth`` residual blocks, readout."""
    widths = set(spec.widths()) or {spec.width if isinstance(spec.width, int) else 1}
    if len(widths) != 1:
        raise SpecError("width", f"{spec.width!r}: resmlp blocks share one width; give one integer")
    (width,) = widths
    layers: list[nn.Module] = [nn.Flatten()] if len(in_shape) != 1 else []
    layers.append(nn.Linear(flat_dim(in_shape), width, bias=spec.bias))
    pre = spec.norm_placement == "pre"
    for _ in range(spec.depth):
        branch = nn.Sequential(
            parts.norm(width) if pre else nn.Identity(),
            parts.act(),
            parts.dropout(),
            nn.Linear(width, width, bias=spec.bias),
        )
        layers.append(parts.residual(branch, post=None if pre else parts.norm(width)))
    if pre and parts.has_norm():
        layers.append(parts.norm(width))
    layers.append(parts.act())
    layers.append(nn.Linear(width, out_dim, bias=spec.bias))
    return nn.Sequential(*layers)
