"""The verdict's graph rules: *oversmoothing* and *heterophily*, with advice for graph nets.

Every rule here reads probe results only and is silent outside its domain.

==================== ============================================================ ==========
verdict              rule                                                         threshold
==================== ============================================================ ==========
oversmoothing        the last message-passing layer's node features are            < 1e-4
                     indistinguishable: MAD (mean over edges of 1 − cos), or the
                     energy ratio (scale-free normalised Dirichlet energy) over
                     its largest value at an earlier layer
heterophily          class-adjusted homophily (Lim et al. 2021) of the labels on   < 0.2
                     the graph, for layers that average a node with its
                     neighbours through one shared map
==================== ============================================================ ==========

*Oversmoothing* comes before *vanishing signal* in the verdict's order: in a deep GCN the
activations shrink because propagation drives the nodes together, and the graph remedies
(initial residual, PairNorm, decoupling) address both.

For a graph network the generic *correlation collapse* / *chaotic* rules do not apply (their
depth scale ξ_c is mean-field theory's for independent inputs; a graph's nodes are coupled, and
the correlation probe counts the input and output maps as layers): :func:`graph_findings` says
so, and the correlation rules' domain (``independent inputs``) makes them context notes;
*oversmoothing* is what a graph net gets instead.

Thresholds, measured at initialisation (CSBM, 300 nodes, 3 classes, edge homophily 0.8, width
32, ReLU/He): the last layer's MAD is 0.05 for a 2-layer GCN, 2.5e-3 at 8 layers, 1.3e-5 at 16
and 3.5e-14 at 64 (energy ratio 1.3 → 7.7e-10); with initial residual α = 0.1 (GCNII) at 64
layers it stays at 0.056, with PairNorm 0.022 (ratio 1e-3 of its largest), with residual sums
scaled by 1/√L 2.2e-4. SAGE at 64 layers collapses every node onto one direction (MAD 9e-8)
while its energy ratio keeps 0.24: indistinguishable up to a scale, which a linear readout
cannot separate into more than two classes, so MAD alone suffices.

Heterophily, mean test accuracy on a 3-class CSBM (500 nodes, degree 5, signal 1.5, seeds 0-1,
Adam 0.01, 200 full-graph epochs; depth 2 and width 16, sheaf depth 4 with diagonal maps):

============== ============== ===== ===== ===== ===== ===== =====
edge homophily class-adjusted GCN   GIN   SAGE  sheaf MLP
============== ============== ===== ===== ===== ===== ===== =====
0.1            0.00           0.38  0.38  0.70  0.59  0.56
0.3            0.00           0.39  0.44  0.56  0.52  0.56
0.4            0.10           0.54  0.45  0.57  0.48  0.56
0.5            0.24           0.61  0.55  0.64  0.43  0.56
0.6            0.39           0.76  0.71  0.74  0.53  0.56
0.8            0.69           0.92  0.86  0.90  0.59  0.56
============== ============== ===== ===== ===== ===== ===== =====

GCN and GIN fall below an MLP on the node features at class-adjusted homophily 0.10 and
below, and not at 0.24: the threshold 0.2 sits between. SAGE, which keeps a node's own
features apart from its neighbours' mean (ego/neighbour separation), is outside the rule's
domain: it leads at every level up to 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAD_FLOOR = 1e-4
ENERGY_FLOOR = 1e-4
LOW_HOMOPHILY = 0.2

#: The verdicts this module can give (the verdict's ``ORDER`` places them).
GRAPH_VERDICTS = ("oversmoothing", "heterophily")

#: depthlab's graph families (run-file edits stay among them).
GRAPH_FAMILIES = ("gcn", "sage", "gin", "gat", "dagnn", "graph_transformer", "sheaf")

#: Message-passing layers that average a node with its neighbours through one shared map, which
#: assumes neighbours share the node's class: depthlab's gcn, gin, gat and DAGNN's propagation,
#: and PyG's convolutions of the same kind (by class name).
HOMOPHILOUS_LAYERS = {
    "GCNLayer": "gcn",
    "GINLayer": "gin",
    "GATLayer": "gat",
    "Propagate": "dagnn",
    "GCNConv": "GCNConv",
    "GINConv": "GINConv",
    "GATConv": "GATConv",
    "GATv2Conv": "GATv2Conv",
    "SGConv": "SGConv",
    "APPNP": "APPNP",
}


def is_graph_network(results: Mapping[str, Any]) -> bool:
    """A network that holds a graph: its architecture summary says ``graph``, or a graph probe
    (smoothing, homophily, over-squashing) ran on it."""
    kind = (results.get("architecture") or {}).get("kind")
    return kind == "graph" or any(results.get(p) for p in ("smoothing", "homophily"))


def graph_findings(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> tuple[list[Any], bool]:
    """The graph rules' findings, and whether this is a graph network (for which the verdict
    leaves out the correlation rules)."""
    from depthlab.diagnosis.verdict import Finding

    graph = is_graph_network(results)
    findings: list[Finding] = []
    if not graph:
        return findings, False
    smooth = oversmoothing(results)
    if smooth is not None:
        findings.append(Finding("oversmoothing", smooth["evidence"], oversmoothing_advice(smooth)))
    hetero = heterophily(results)
    if hetero is not None:
        findings.append(Finding("heterophily", hetero, HETEROPHILY_ADVICE))
    return findings, True


def oversmoothing(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """Node representations that have become indistinguishable by the last message-passing
    layer, or None.

    Domain: a graph network whose output depends on the input only through its last
    message-passing layer (the smoothing probe's ``readout_reads_last``; not DAGNN, jumping
    knowledge or skips to the readout, whose output may keep earlier layers' distinctions), with
    at least two message-passing layers. A layer is indistinguishable when its MAD is below
    ``MAD_FLOOR`` or its energy ratio has fallen below ``ENERGY_FLOOR`` times its largest value
    at an earlier layer; the rule fires when the last layer is, and reports the first layer from
    which every later one is. Layers with non-finite features (an exploding signal, judged by
    its own rule) are left out.
    """
    smooth = results.get("smoothing") or {}
    if smooth.get("readout_reads_last") is not True:
        return None
    hidden = [r for r in (smooth.get("layers") or [])[1:] if _finite(r)]
    depth = int(smooth.get("message_passing_layers") or len(smooth.get("layers") or []) - 1)
    if depth < 2 or not hidden:
        return None
    peak = 0.0
    flags = []
    for row in hidden:
        peak = max(peak, row["energy_ratio"])
        flat = peak > 0 and row["energy_ratio"] < ENERGY_FLOOR * peak
        flags.append(row["mad"] < MAD_FLOOR or flat)
    if not flags[-1]:
        return None
    first = len(flags) - 1
    while first > 0 and flags[first - 1]:
        first -= 1
    names = [r["name"] for r in hidden]
    at = _layer_number(names[first], first + 1)
    a, b = hidden[0], hidden[-1]
    rate = (smooth.get("decay") or {}).get("normalized_rate")
    fit = f", fitted decay {rate:.3g} e-folds per layer" if _is_number(rate) else ""
    maps = _maps(smooth)
    evidence = (
        f"node representations are indistinguishable from message-passing layer {at} of "
        f"{depth} onward (MAD < {MAD_FLOOR:g} or energy ratio < {ENERGY_FLOOR:g} × its peak): "
        f"normalized Dirichlet energy {a['normalized_energy']:.2g} at layer 1, "
        f"{b['normalized_energy']:.2g} at layer {depth}{fit}; MAD {a['mad']:.2g} → {b['mad']:.2g} "
        f"(input {smooth['layers'][0]['mad']:.2g}){maps}"
    )
    return {"evidence": evidence, "layer": at, "depth": depth}


def oversmoothing_advice(found: Mapping[str, Any]) -> str:
    """Remedies for oversmoothing, as run-file fields where depthlab has them."""
    keep = max(1, int(found["layer"]) - 1)
    return (
        "mix the input back into every layer (initial residual, GCNII: arch.initial_residual: "
        "0.1); normalize with PairNorm (arch.norm: pair); or decouple propagation from the "
        "transformation (DAGNN: arch.family: dagnn); or stop at fewer message-passing layers "
        f"(still distinct at layer {keep})"
    )


HETEROPHILY_ADVICE = (
    "use layers that do not assume neighbours share a class: neural sheaf diffusion "
    "(arch.family: sheaf), separate ego and neighbour embeddings (arch.family: sage keeps a "
    "node's own features apart from its neighbours' mean, as H2GCN does), or signed / "
    "high-pass filters (FAGCN, GPR-GNN, ACM-GCN)"
)


def heterophily(results: Mapping[str, Any]) -> str | None:
    """The evidence of a heterophily mismatch, or None.

    Domain: a classification task whose labels the ``homophily`` probe measured on the graph,
    and a network whose message-passing layers (the architecture summary's ``graph_layers``)
    include one that averages a node with its neighbours through one shared map
    (``HOMOPHILOUS_LAYERS``). Fires when the class-adjusted homophily is below
    ``LOW_HOMOPHILY`` (0: no more same-class edges than chance, 1: every edge within a class).
    """
    hom = results.get("homophily") or {}
    adjusted = hom.get("class_adjusted")
    layers = (results.get("architecture") or {}).get("graph_layers") or []
    assuming = sorted({HOMOPHILOUS_LAYERS[n] for n in layers if n in HOMOPHILOUS_LAYERS})
    if not isinstance(adjusted, int | float) or not math.isfinite(adjusted):
        return None
    if not assuming or adjusted >= LOW_HOMOPHILY:
        return None
    return (
        f"class-adjusted homophily {adjusted:.2f} (edge {hom.get('edge', math.nan):.2f}, node "
        f"{hom.get('node', math.nan):.2f}; 0 is chance, threshold {LOW_HOMOPHILY:g}): "
        f"{', '.join(assuming)} layers average a node with its neighbours, which assumes "
        "neighbours share its class"
    )


# ---------------------------------------------------------------- fixes as run-file edits


def graph_fixes(verdict: str, spec: Any) -> list[dict[str, Any]]:
    """Run-file edits for a graph verdict (``depthlab.diagnosis.advice.candidate_fixes``); none
    for a family that is not a graph network (the graph rules never fire there)."""
    arch = spec.arch
    edits: list[dict[str, Any]] = []
    if arch.family not in GRAPH_FAMILIES:
        return edits
    if verdict == "oversmoothing":
        if arch.family in ("gcn", "sage", "gin", "gat") and arch.initial_residual == 0:
            edits.append({"arch.initial_residual": 0.1})
        if arch.norm != "pair" and arch.family != "dagnn":
            edits.append({"arch.norm": "pair"})
        if arch.family != "dagnn":
            edits.append({"arch.family": "dagnn"})
    elif verdict == "heterophily":
        width = arch.width if isinstance(arch.width, int) else 0
        if width and width % 2 == 0:
            edits.append({"arch.family": "sheaf", "arch.stalk_dim": 2})
        edits.append({"arch.family": "sage"})
    return edits


def _maps(smooth: Mapping[str, Any]) -> str:
    before, after = smooth.get("input_maps") or [], smooth.get("output_maps") or []
    if not before and not after:
        return ""
    parts = []
    if before:
        parts.append(f"input map {', '.join(before)}")
    if after:
        parts.append(f"output map {', '.join(after)}")
    return f"; {' and '.join(parts)} not counted as layers"


def _layer_number(name: str, fallback: int) -> int:
    digits = name.removeprefix("layer")
    return int(digits) if digits.isdigit() else fallback


def _finite(row: Mapping[str, Any]) -> bool:
    return all(_is_number(row.get(k)) for k in ("mad", "energy_ratio", "normalized_energy"))


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
