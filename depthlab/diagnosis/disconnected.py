"""The *disconnected* rule: a pruned layer that no input signal can cross.

Domain: networks carrying pruning masks (``depthlab.train.techniques.masks``); silent on every
other network. The diagnosis records, under ``sparsity``, each masked layer's kept fraction,
the layers with every weight pruned (``empty_layers``) and whether the network's output still
varies with its input over the probe batch (``input_reaches_output``). A fully pruned layer on
the only path from input to output leaves the output a function of the biases alone: no
learning rate or budget can make it fit anything but a constant (Hayou et al. 2021 show global
magnitude and gradient pruning at initialisation doing exactly this to deep nets). A fully
pruned layer inside a residual branch only removes that branch; the input still reaches the
output and the rule stays silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERDICT = "disconnected"


def disconnected(results: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(evidence, advice)`` when a fully pruned layer cuts the input off, else ``None``."""
    sparse = results.get("sparsity") or {}
    empty = list(sparse.get("empty_layers") or [])
    if not empty or sparse.get("input_reaches_output") is True:
        return None
    named = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    plural = "s" if len(empty) > 1 else ""
    evidence = (
        f"every weight of layer{plural} {named} is pruned "
        f"(overall sparsity {100 * float(sparse.get('sparsity', 0.0)):.1f} %): "
        "no signal from the input reaches the output"
    )
    advice = (
        "prune each layer to the same fraction (prune_at_init scope: layer) so global scores "
        "cannot empty a layer, or lower the sparsity"
    )
    return evidence, advice
