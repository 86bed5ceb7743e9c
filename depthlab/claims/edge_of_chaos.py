"""``edge-of-chaos``: critical inits keep signal and correlations; off-critical ones lose them.

Mean-field theory (Poole et al. 2016; Schoenholz et al. 2017) follows the pre-activation length
``q^l = |h^l|²/N`` and the correlation ``c^l`` of two inputs through a wide random net
``h^l = W^l φ(h^{l−1}) + b^l``. Away from the edge of chaos (χ₁ ≠ 1) c^l reaches its fixed
point c* exponentially, ``|c^l − c*| ∝ exp(−l/ξ_c)``, and the input's correlation is forgotten
after a few ξ_c layers; for ReLU without bias the correlation map does not depend on σ_w² and
the off-critical failure is in the length instead, ``q^l ∝ (σ_w²/2)^l``. At criticality ξ_c is
infinite and both survive polynomially deep.

The experiment runs real random networks (one fresh Gaussian weight matrix per layer,
drawn from a seeded generator) on pairs of inputs of correlation 0.5, measures q^l and c^l at
every layer, iterates the mean-field maps of :mod:`depthlab.theory.meanfield` from the same
first layer, and fits depth scales to the measured curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.theory.meanfield import (
    c_star,
    chi1,
    correlation_map,
    critical_sigma_w2,
    depth_scales,
    length_map,
)

__all__ = ["EdgeOfChaos", "Config", "propagate", "theory_curves"]

DEPTH = 100  # "keeps signal and correlations through 100 layers" is judged at this layer
C0 = 0.5  # correlation of each input pair
TANH_SB2 = 0.05
XI_TOL = 0.2  # measured depth scale within 20 % of mean-field theory
KEEP_Q = (0.1, 10.0)  # signal kept: q^100 / q^1 within a factor 10 (off-critical: ~1e±9)
KEEP_C = 1e-3  # correlation kept: |c^100 − c*| >= 1e-3 (ξ_c ≈ 6 layers gives ~1e-8)
# Fit windows, fixed from the theory curve: the linear regime of the c-map above the noise
# floor of a finite net (ordered: 1 − c is resolved far below 1e-9).
ORDERED_WINDOW = (1e-9, 1e-2)
# Chaotic phase: two trajectories from either side of c*, fitted where theory's gap between them
# is at most 0.3 (linear regime) and the measured gap is >= 5 standard errors across nets.
CHAOTIC_C0S = (0.9, -0.3)
CHAOTIC_LINEAR = 0.3
CHAOTIC_DEPTH = 40
NOISE_SE = 5.0
CONTROL_INITS = ("tanh ordered", "ReLU vanishing")


def _act(name: str) -> Any:
    return torch.tanh if name == "tanh" else torch.relu


@dataclass(frozen=True)
class Config:
    """One initialisation: activation, σ_w², σ_b² and its role in the claim."""

    label: str
    act: str
    sigma_w2: float
    sigma_b2: float
    role: str  # critical | ordered | chaotic | vanishing | exploding


def configs() -> list[Config]:
    crit = critical_sigma_w2(torch.tanh, sigma_b2=TANH_SB2)
    return [
        Config("tanh critical", "tanh", crit, TANH_SB2, "critical"),
        Config("tanh ordered", "tanh", 1.2, TANH_SB2, "ordered"),
        Config("tanh chaotic", "tanh", 3.0, TANH_SB2, "chaotic"),
        Config("ReLU critical", "relu", 2.0, 0.0, "critical"),
        Config("ReLU vanishing", "relu", 1.6, 0.0, "vanishing"),
        Config("ReLU exploding", "relu", 2.5, 0.0, "exploding"),
    ]


def _pair_inputs(
    gen: torch.Generator, width: int, pairs: int, c0s: tuple[float, ...]
) -> torch.Tensor:
    """Rows: ``pairs`` base inputs u, then for each c₀ in ``c0s`` one partner per base input.

    Every input has |x|²/N = 1 and each partner has correlation exactly c₀ with its base input.
    """
    u = torch.randn(pairs, width, generator=gen)
    z = torch.randn(pairs, width, generator=gen)
    u = u / u.norm(dim=1, keepdim=True)
    z = z - (z * u).sum(1, keepdim=True) * u  # orthogonal to u: exact correlation below
    z = z / z.norm(dim=1, keepdim=True)
    rows = [u] + [c * u + math.sqrt(1 - c * c) * z for c in c0s]
    return torch.cat(rows) * math.sqrt(width)


@torch.no_grad()
def propagate(
    cfg: Config, *, width: int, depth: int, pairs: int, seed: int, c0s: tuple[float, ...] = (C0,)
) -> tuple[list[float], list[list[float]], list[list[float]]]:
    """One random net: per layer l = 1..depth, q^l, and per c₀ the mean c^l and mean 1 − c^l.

    ``q^l`` is |h^l|²/N averaged over all inputs (see :func:`_pair_inputs`); c^l is the
    correlation of a base input's pre-activation with its partner's, averaged over the
    ``pairs`` base inputs; ``1 − c`` is computed as ½‖h₁/‖h₁‖ − h₂/‖h₂‖‖², accurate where c
    itself rounds to 1. Returns ``(q[l], c[k][l], gap[k][l])`` for k over ``c0s``.
    """
    gen = torch.Generator().manual_seed(seed)
    a = _pair_inputs(gen, width, pairs, c0s)
    phi = _act(cfg.act)
    sw, sb = math.sqrt(cfg.sigma_w2 / width), math.sqrt(cfg.sigma_b2)
    qs: list[float] = []
    cs: list[list[float]] = [[] for _ in c0s]
    gaps: list[list[float]] = [[] for _ in c0s]
    for _ in range(depth):
        w = torch.randn(width, width, generator=gen) * sw
        b = torch.randn(width, generator=gen) * sb
        h = a @ w.T + b
        qs.append(float((h * h).mean()))
        n = h / h.norm(dim=1, keepdim=True)
        base = n[:pairs]
        for k in range(len(c0s)):
            other = n[pairs * (k + 1) : pairs * (k + 2)]
            cs[k].append(float((base * other).sum(1).mean()))
            gaps[k].append(float(0.5 * ((base - other) ** 2).sum(1).mean()))
        a = phi(h)
    return qs, cs, gaps


def theory_curves(cfg: Config, depth: int, c0: float = C0) -> tuple[list[float], list[float]]:
    """Mean-field q^l and c^l for l = 1..depth from inputs with |x|²/N = 1 and correlation c0."""
    phi = _act(cfg.act)
    q = cfg.sigma_w2 + cfg.sigma_b2
    c = (cfg.sigma_w2 * c0 + cfg.sigma_b2) / q
    qs, cs = [q], [c]
    kw = {"sigma_w2": cfg.sigma_w2, "sigma_b2": cfg.sigma_b2}
    for _ in range(depth - 1):
        # ReLU without bias is homogeneous: its correlation map does not depend on q, so it
        # is evaluated at q = 1 (an exploding q would need the widest quadrature for nothing).
        q_c = 1.0 if cfg.act == "relu" and cfg.sigma_b2 == 0.0 else q
        c = correlation_map(phi, c, q=q_c, **kw)
        q = length_map(phi, q, **kw)
        qs.append(q)
        cs.append(c)
    return qs, cs


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _fit_xi(values: list[float], layers: list[int]) -> float:
    """Depth scale −1/slope of log(values[i]) on layer i + 1 over ``layers`` (indices)."""
    idx = [i for i in layers if values[i] > 0]
    if len(idx) < 3:
        return math.nan
    slope = _slope([float(i + 1) for i in idx], [math.log(values[i]) for i in idx])
    return -1.0 / slope if slope < 0 else math.inf


@register_claim
class EdgeOfChaos(Claim):
    name = "edge-of-chaos"
    paper = (
        "Poole et al. 2016, Exponential expressivity in deep neural networks through transient "
        "chaos; Schoenholz et al. 2017, Deep Information Propagation"
    )
    statement = (
        "tanh and ReLU nets initialised on the edge of chaos (χ₁ = 1) keep the signal and the "
        "correlation between inputs through 100+ layers; off-critical inits lose them over the "
        "depth scale mean-field theory predicts."
    )
    criterion = (
        "critical tanh (σ_b² = 0.05) and ReLU (σ_w² = 2): at layer 100, q^100/q^1 in [0.1, 10] "
        "and |c^100 − c*| >= 1e-3; off-critical tanh (ordered σ_w² = 1.2, chaotic σ_w² = 3): "
        "fitted decay length of |c^l − c*| within 20 % of ξ_c; off-critical ReLU (σ_w² = 1.6, "
        "2.5): fitted decay length of log q^l within 20 % of −1/log(σ_w²/2)"
    )
    experiment_doc = (
        "Random fully connected nets (fresh Gaussian W ~ N(0, σ_w²/N), b ~ N(0, σ_b²) per "
        "layer, float32), 100 layers, fed pairs of inputs of correlation 0.5; q^l and c^l per "
        "layer, averaged over pairs, against the mean-field maps iterated from the same first "
        "layer. 1 − c is computed as ½‖h₁/‖h₁‖ − h₂/‖h₂‖‖², resolved far below 1e-9. Depth "
        "scales: least-squares slope of log(1 − c) (ordered; layers where theory's 1 − c is in "
        "[1e-9, 1e-2]), of log(c_A − c_B) for two trajectories started at c0 = 0.9 and −0.3 "
        "that approach c* from either side in the same nets, cancelling the nets' own "
        "finite-width wander of c* (chaotic; layers where theory's gap is <= 0.3 and the "
        "measured gap is >= 5 standard errors across nets), and of log q (ReLU, all layers). "
        "Quick: width 512, 4 nets x 32 pairs per init; chaotic 16 nets x 128 pairs at width "
        "256, 40 layers. Full: width 1024, 8 nets x 64 pairs; chaotic 32 nets x 128 pairs at "
        "width 512."
    )
    control_doc = (
        "the 'keeps signal and correlation through 100 layers' criterion applied to the "
        "off-critical nets (tanh ordered σ_w² = 1.2, ReLU σ_w² = 1.6); must fail"
    )
    full_time = "about 40 s on 2 cores (quick about 6 s; 3x that while other jobs share the cores)"

    def experiment(self, ctx: Context) -> Evidence:
        width, n_nets, pairs = (512, 4, 32) if ctx.quick else (1024, 8, 64)
        # The chaotic fit needs many more nets (its noise falls as 1/√(nets·N·pairs)) but only
        # CHAOTIC_DEPTH layers: the theory gap is below the noise floor by then.
        chaos_plan = (256, 16, 128) if ctx.quick else (512, 32, 128)
        wanted = CONTROL_INITS if ctx.control else None
        runs: dict[str, dict[str, Any]] = {}
        for k, cfg in enumerate(configs()):
            if wanted is not None and cfg.label not in wanted:
                continue  # the control needs only the off-critical nets it judges
            ctx.progress(f"{cfg.label}: {n_nets} nets, width {width}, {DEPTH} layers")
            w, n, p = chaos_plan if cfg.role == "chaotic" else (width, n_nets, pairs)
            depth = CHAOTIC_DEPTH if cfg.role == "chaotic" else DEPTH
            net_seeds = [1000 * k + s for s in ctx.seeds(n)]
            runs[cfg.label] = _measure(cfg, width=w, depth=depth, pairs=p, seeds=net_seeds)
        table = [r["row"] for r in runs.values()]
        keep = {label: _keep_checks(label, r) for label, r in runs.items()}
        if ctx.control:
            checks = [c for label in CONTROL_INITS for c in keep[label]]
        else:
            checks = keep["tanh critical"] + keep["ReLU critical"]
            checks += [r["xi_check"] for r in runs.values() if r["xi_check"] is not None]
        data = {
            "width": width,
            "nets": n_nets,
            "pairs": pairs,
            "depth": DEPTH,
            "chaotic_plan": {"width": chaos_plan[0], "nets": chaos_plan[1], "pairs": chaos_plan[2]},
            "curves": {label: r["curves"] for label, r in runs.items()},
        }
        notes = [
            "chaotic tanh: the decay is fitted to the gap between two correlation trajectories "
            f"(c0 = {CHAOTIC_C0S[0]} and {CHAOTIC_C0S[1]}) that approach c* from either side "
            "in the same nets, which cancels the finite-width wander of the nets' own c*"
        ]
        return Evidence(checks=checks, table=table, data=data, notes=notes)

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        with claim_figure(path, 2, 2, figsize=(11, 8), dpi=110) as (fig, axes):
            colors = {
                "critical": "tab:green",
                "ordered": "tab:blue",
                "chaotic": "tab:red",
                "vanishing": "tab:blue",
                "exploding": "tab:red",
            }
            for col, act in enumerate(("tanh", "relu")):
                ax_q, ax_c = axes[0, col], axes[1, col]
                for label, cv in d["curves"].items():
                    if cv["act"] != act:
                        continue
                    color = colors[cv["role"]]
                    layers = list(range(1, len(cv["dist"]) + 1))
                    name = f"{label} (σ_w²={cv['sigma_w2']:.3g})"
                    ax_q.plot(layers, cv["q_ratio"], color=color, label=name)
                    ax_q.plot(layers, cv["q_ratio_theory"], color=color, ls="--", lw=1)
                    dist = [max(v, 1e-18) for v in cv["dist"]]
                    dist_th = [max(v, 1e-18) for v in cv["dist_theory"]]
                    ax_c.plot(layers, dist, color=color, label=name)
                    ax_c.plot(layers, dist_th, color=color, ls="--", lw=1)
                ax_q.axhspan(*KEEP_Q, color="tab:green", alpha=0.1)
                ax_c.axhline(KEEP_C, color="k", lw=0.7, ls=":")
                ax_q.set(yscale="log", xlabel="layer", ylabel="q^l / q^1", title=f"{act}: length")
                ax_c.set(
                    yscale="log",
                    xlabel="layer",
                    ylabel="|c^l − c*|",
                    title=f"{act}: distance of the correlation from its fixed point",
                )
                ax_q.legend(fontsize=7)
                ax_c.legend(fontsize=7)
            fig.suptitle(
                f"Edge of chaos: measured (solid, width {d['width']}, {d['nets']} nets) vs "
                "mean-field theory (dashed)"
            )
        return path


def _mean(rows: list[list[float]]) -> list[float]:
    """Elementwise mean of equal-length lists."""
    return [sum(col) / len(col) for col in zip(*rows, strict=True)]


def _measure(
    cfg: Config, *, width: int, depth: int, pairs: int, seeds: list[int]
) -> dict[str, Any]:
    """Run one init on ``len(seeds)`` nets; its table row, curves and depth-scale check."""
    phi = _act(cfg.act)
    chaotic = cfg.role == "chaotic"
    c0s: tuple[float, ...] = CHAOTIC_C0S if chaotic else (C0,)
    nets = [propagate(cfg, width=width, depth=depth, pairs=pairs, seed=s, c0s=c0s) for s in seeds]
    # log q averaged over nets (a geometric mean: across nets q is close to log-normal)
    log_q = _mean([[math.log(v) for v in n[0]] for n in nets])
    q_th, c_th = theory_curves(cfg, depth, c0s[0])
    cs_th = c_star(phi, sigma_w2=cfg.sigma_w2, sigma_b2=cfg.sigma_b2)
    cs_th = cs_th if math.isfinite(cs_th) else 1.0
    row: dict[str, Any] = {"init": cfg.label, "σ_w²": cfg.sigma_w2, "σ_b²": cfg.sigma_b2}
    row["L"] = depth
    row["q^L/q^1"] = math.exp(log_q[-1] - log_q[0])
    row["q^L/q^1 theory"] = q_th[-1] / q_th[0]
    row["c* theory"] = cs_th
    if chaotic:
        # c_A − c_B per net and layer; both trajectories tend to the same c*.
        per_net = [[x - y for x, y in zip(n[1][0], n[1][1], strict=True)] for n in nets]
        dist = _mean(per_net)
        dist_th = [x - y for x, y in zip(c_th, theory_curves(cfg, depth, c0s[1])[1], strict=True)]
        se = [
            math.sqrt(sum((v[i] - dist[i]) ** 2 for v in per_net) / (len(nets) - 1) / len(nets))
            for i in range(depth)
        ]
        # linear regime of the theory curve, and above the measured noise floor
        window = [
            i
            for i in range(depth)
            if abs(dist_th[i]) <= CHAOTIC_LINEAR and dist[i] >= NOISE_SE * se[i]
        ]
        window = _first_run(window)
    else:
        dist = _mean([n[2][0] for n in nets])  # 1 − c (c* = 1 here)
        dist_th = [abs(c - cs_th) for c in c_th]
        lo, hi = ORDERED_WINDOW
        window = [i for i in range(depth) if lo <= dist_th[i] <= hi]
    # chaotic: the gap c_A − c_B between the two trajectories instead of |c − c*|
    row["|c^L − c*|"] = dist[-1]
    row["|c^L − c*| theory"] = abs(dist_th[-1])
    xi_check = None
    if cfg.role in ("ordered", "chaotic"):
        xi_th = depth_scales(phi, sigma_w2=cfg.sigma_w2, sigma_b2=cfg.sigma_b2)[1]
        xi_meas, quantity = _fit_xi(dist, window), "ξ_c of |c − c*|"
    elif cfg.role in ("vanishing", "exploding"):
        # ReLU is homogeneous: χ₁ = σ_w²/2 at every q and q^l ∝ χ₁^l exactly in mean field,
        # so the length's depth scale is 1/|log χ₁| (depth_scales gives ∞ when q* = ∞).
        xi_th = 1.0 / abs(math.log(chi1(phi, sigma_w2=cfg.sigma_w2, sigma_b2=0.0, q=1.0)))
        xi_meas = 1.0 / abs(_slope([float(i + 1) for i in range(depth)], log_q))
        quantity = "ξ of log q"
    if cfg.role not in ("critical",):
        row["ξ theory"], row["ξ measured"] = xi_th, xi_meas
        ratio = xi_meas / xi_th
        xi_check = Check(
            f"{cfg.label} (σ_w²={cfg.sigma_w2:g}): {quantity}, measured/theory",
            ratio,
            f"in [{1 - XI_TOL:g}, {1 + XI_TOL:g}] (theory ξ = {xi_th:.3g})",
            abs(ratio - 1.0) <= XI_TOL,
        )
    curves = {
        "act": cfg.act,
        "role": cfg.role,
        "sigma_w2": cfg.sigma_w2,
        "q_ratio": [math.exp(v - log_q[0]) for v in log_q],
        "q_ratio_theory": [q / q_th[0] for q in q_th],
        "dist": [abs(v) for v in dist],
        "dist_theory": [abs(v) for v in dist_th],
    }
    return {"row": row, "curves": curves, "xi_check": xi_check, "dist": dist}


def _first_run(indices: list[int]) -> list[int]:
    """The leading run of consecutive integers in a sorted list: [3, 4, 5, 9] -> [3, 4, 5]."""
    for j in range(1, len(indices)):
        if indices[j] != indices[j - 1] + 1:
            return indices[:j]
    return indices


def _keep_checks(label: str, r: dict[str, Any]) -> list[Check]:
    """'Keeps signal and correlation through 100 layers' for one init."""
    q_ratio, dist = r["row"]["q^L/q^1"], r["dist"][-1]
    return [
        Check(
            f"{label}: q^100/q^1",
            q_ratio,
            f"in [{KEEP_Q[0]}, {KEEP_Q[1]}]",
            KEEP_Q[0] <= q_ratio <= KEEP_Q[1],
        ),
        Check(f"{label}: |c^100 − c*|", dist, f">= {KEEP_C}", dist >= KEEP_C),
    ]
