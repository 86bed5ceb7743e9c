"""Advice that fits the architecture, and the first concrete fix as an edit of the run file.

The text of each finding's advice depends on what the network is (``architecture.kind`` of the
diagnosis, or the run spec's family): a transformer is told about pre-LN, warm-up and the scale
of its residual branches, never to use SELU; a CNN about batch norm and He init; an MLP about
its activation's critical initialisation (mean-field theory), SELU with LeCun, normalization and
1/√L residual scaling.

:func:`candidate_fixes` lists spec edits (``{"arch.init": "he"}``, ``{"train.lr": 0.001}``, …)
for the verdict's cause, most specific first; :func:`advise` applies them to the run spec in
turn, diagnoses each edited run (its own trial included) and returns the first that is predicted
to train, so the advised fix has been checked on the very network, data and budget.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from depthlab import _registry as reg
from depthlab.diagnosis.graph_rules import GRAPH_VERDICTS, graph_fixes
from depthlab.exceptions import DepthlabError

#: Activations whose critical σ_w² (mean field) the advice states.
CRITICAL_ADVICE = ("relu", "tanh", "selu", "sigmoid", "elu", "softplus")
#: The init that puts each activation at (or nearest to) the edge of chaos.
CRITICAL_INIT = {
    "relu": "he",
    "leaky_relu": "he",
    "gelu": "he",
    "silu": "he",
    "mish": "he",
    "elu": "critical",
    "tanh": "critical",
    "sigmoid": "critical",
    "softplus": "critical",
    "selu": "lecun",
}


def architecture_kind(results: Mapping[str, Any], setup: Mapping[str, Any]) -> str:
    """``transformer``, ``cnn``, ``mlp``, ``graph`` or ``other``."""
    arch = results.get("architecture") or {}
    if arch.get("kind"):
        return str(arch["kind"])
    family = str((setup.get("arch") or {}).get("family", ""))
    if family in ("mlp", "resmlp", "icnn"):
        return "mlp"
    if family.startswith("cnn"):
        return "cnn"
    if family:
        return "graph" if family in reg.ARCHS and "graph" in family else "other"
    if results.get("meanfield"):
        return "mlp"
    return "other"


class Advice:
    """The advice sentences of a diagnosis, worked out only when a finding needs them."""

    def __init__(self, results: Mapping[str, Any], setup: Mapping[str, Any]) -> None:
        self._meanfield: Mapping[str, Any] = results.get("meanfield") or {}
        self._setup = setup
        self.kind = architecture_kind(results, setup)
        self._optimizer = str(setup.get("optimizer", "adam"))
        self._lr = setup.get("lr")
        self._stable_lr = (results.get("stability") or {}).get("stable_lr")

    @functools.cached_property
    def _critical(self) -> str:
        """The mean-field sentence for an MLP's own activation, or ''."""
        mf = self._meanfield
        act = str(mf.get("activation", "")).lower()
        if not act:
            return ""
        where = f"χ₁ = {mf['chi1']:.3g} (σ_w² = {mf['sigma_w2']:.3g}): {mf['phase']} phase; "
        return where + _critical_phrase(act, mf.get("sigma_b2", 0.0))

    def _join(self, *parts: str) -> str:
        return "; ".join(p.strip().rstrip(";") for p in parts if p.strip())

    @property
    def vanishing(self) -> str:
        if self.kind == "transformer":
            return self._join(
                "use pre-LN blocks (LayerNorm before attention and MLP)",
                "scale the residual branches' output projections by 1/√(2·layers) at init",
                "warm the learning rate up over the first steps",
            )
        if self.kind == "cnn":
            return self._join(
                "use He init for ReLU-family activations",
                "add batch norm after each convolution",
                "add residual connections",
            )
        if self.kind == "graph":
            return self._join(
                "add initial-residual connections or PairNorm",
                "decouple transformation and propagation",
            )
        return self._join(
            self._critical,
            "use SELU with LeCun init, normalization layers, or residual branches scaled by 1/√L",
        )

    @property
    def exploding(self) -> str:
        if self.kind == "transformer":
            return self._join(
                "use pre-LN blocks",
                "lower the learning rate and warm it up",
                "scale attention logits by 1/√d_head and residual branches by 1/√(2·layers)",
            )
        if self.kind == "cnn":
            return self._join(
                "lower the weight scale (He init)", "add batch norm", "clip gradients"
            )
        return self._join(
            self._critical,
            "lower the weight scale, add normalization, or scale residual branches by 1/√L "
            "(or ReZero)",
        )

    @property
    def dead(self) -> str:
        return self._join(
            "units that never vary pass no gradient: lower the learning rate",
            "use leaky_relu or a critical init" if self.kind in ("mlp", "cnn") else "",
            "check the input scale",
        )

    def correlation(self, rising: bool) -> str:
        if self.kind == "mlp":
            return self._join(
                self._critical,
                "at the critical init ξ_c diverges and depth stops being the limit"
                if rising
                else "lower σ_w² toward the critical point",
                "residual branches scaled by 1/√L keep the input geometry at any depth",
            )
        return self._join(
            "residual connections and normalization keep the input geometry at depth",
            "fewer layers" if self.kind != "transformer" else "pre-LN blocks",
        )

    @property
    def conditioning(self) -> str:
        return self._join(
            "normalization layers or a critical init decorrelate the kernel",
            "check for duplicated or constant inputs",
        )

    def step_size(self, limit: float) -> str:
        return f"lower the learning rate below {limit:.3g} (half of it is a safe start)"

    @property
    def diverges(self) -> str:
        lr = f" (now {float(self._lr):.3g})" if self._lr else ""
        extra = (
            "warm the learning rate up; clip gradients"
            if self.kind == "transformer"
            else "clip gradients"
        )
        if self._stable_lr and math.isfinite(self._stable_lr):
            first = (
                f"lower the learning rate{lr} below the edge of stability "
                f"{self._stable_lr:.3g} = 2(1 + β)/λ_max; {self._stable_lr / 2:.2g} is a safe start"
            )
        else:
            first = f"lower the learning rate by 10×{lr}"
        return self._join(first, extra)

    @property
    def slow(self) -> str:
        structure = {
            "graph": "initial-residual connections or decoupled propagation keep deep graph "
            "networks from smoothing",
            "transformer": "pre-LN blocks and a learning-rate warm-up help deep transformers start",
        }.get(
            self.kind,
            "a critical init or residual scaling shortens the path the signal must travel",
        )
        if self._optimizer in ("sgd", "momentum"):
            return self._join("raise the learning rate or use Adam", structure)
        lr = float(self._lr) if self._lr else None
        step = (
            "raise the learning rate toward 1e-3"
            if lr is None or lr < 1e-3
            else f"a longer budget (the trial saw {lr:.3g} learn too slowly)"
        )
        return self._join(step, structure)


def _critical_phrase(act: str, sigma_b2: float) -> str:
    """The critical init of the network's activation (a registry name), by mean-field theory."""
    from depthlab.exceptions import SpecError
    from depthlab.theory import critical_sigma_w2

    if act not in CRITICAL_ADVICE:
        return "use init: critical for this activation"
    if act == "relu":
        return "for ReLU σ_w² = 2 (He, σ_b = 0) is critical"
    try:
        sw2 = critical_sigma_w2(reg.ACTIVATIONS.get(act).fn, sigma_b2=sigma_b2)
    except SpecError:
        return "use init: critical"
    return f"for {act} at σ_b² = {sigma_b2:.3g} the critical σ_w² is {sw2:.3g} (init: critical)"


# ---------------------------------------------------------------- fixes as run-file edits

Edit = dict[str, Any]


def candidate_fixes(verdict: str, spec: Any, stable_lr: float | None = None) -> list[Edit]:
    """Spec edits that address ``verdict`` for the run ``spec`` (a ``RunSpec``), in order.

    ``stable_lr``, the edge of stability 2(1 + β)/λ_max when known, makes the first fix of an
    unstable SGD run half of it."""
    arch, train = spec.arch, spec.train
    act = arch.act if isinstance(arch.act, str) else ""
    sgd = train.optimizer in ("sgd", "momentum")
    edits: list[Edit] = []
    lower = {"train.lr": _round(train.lr / 10)}
    raise_lr = {"train.lr": _round(min(train.lr * 10, 0.1 if sgd else 3e-3))}
    critical = CRITICAL_INIT.get(act)
    init_fix = {"arch.init": critical} if critical and arch.init != critical else None
    residual: Edit | None = None
    if arch.family == "mlp" and arch.depth >= 4 and isinstance(arch.width, int):
        residual = {"arch.family": "resmlp", "arch.residual": "inv_sqrt_depth", "arch.norm": "none"}
    elif arch.family == "resmlp" and arch.residual != "inv_sqrt_depth":
        residual = {"arch.residual": "inv_sqrt_depth"}
    adam = {"train.optimizer": "adam", "train.lr": 1e-3}
    if verdict in ("diverges", "unstable step size"):
        if stable_lr and sgd and math.isfinite(stable_lr) and stable_lr < train.lr:
            edits.append({"train.lr": _round(stable_lr / 2)})
        edits += [lower, {"train.lr": _round(train.lr / 100)}]
        if init_fix:
            edits.append({**lower, **init_fix})
    elif verdict in ("exploding signal", "exploding gradients"):
        edits += [e for e in (init_fix, lower, residual) if e]
    elif verdict in (
        "vanishing signal",
        "vanishing gradients",
        "correlation collapse",
        "chaotic",
        "dead units",
    ):
        edits += [e for e in (init_fix, residual) if e]
        if init_fix and residual:
            edits.append({**init_fix, **residual})
        if sgd:
            edits.append(adam)
    elif verdict in GRAPH_VERDICTS:  # graph rules (depthlab.diagnosis.graph_rules)
        edits += graph_fixes(verdict, spec)
    elif verdict in ("no progress", "won't train in budget", "ill-conditioned"):
        if (sgd and train.lr < 0.1) or (not sgd and train.lr < 3e-3):
            edits.append(raise_lr)
        edits += [e for e in (init_fix, residual) if e]
        if sgd:
            edits.append(adam)
    elif verdict == "disconnected":  # pruning emptied a layer: rank each layer on its own
        pruned = [dict(t, scope="layer") if t.get("name") == "prune_at_init" else t
                  for t in train.techniques]  # fmt: skip
        if pruned != list(train.techniques):
            edits.append({"train.techniques": tuple(pruned)})
    if not edits:
        edits.append(adam if sgd else lower)
    unique: list[Edit] = []
    for e in edits:
        if e not in unique:
            unique.append(e)
    return unique


def apply_edit(spec: Any, edit: Edit) -> Any:
    """The run spec with ``edit``'s dotted fields replaced (checked like any run file)."""
    from depthlab.spec import RunSpec

    data = spec.to_dict()
    for path, value in edit.items():
        section, field = path.split(".", 1)
        data[section][field] = value
    return RunSpec.from_dict(data)


def advise(
    spec: Any,
    verdict: str,
    diagnose_spec: Callable[[Any], Mapping[str, Any]],
    *,
    stable_lr: float | None = None,
    tries: int = 4,
) -> dict[str, Any] | None:
    """The first candidate fix of ``verdict`` whose own diagnosis predicts it trains.

    ``diagnose_spec(run_spec)`` diagnoses a run spec (the same probes and options as the
    original). Returns ``{"edit", "spec", "p_trains", "verdict", "checked"}`` — the edit with the
    highest P(trains) when none reaches 0.5 (``checked: false``) — or ``None`` when there is
    nothing to change.
    """
    best: dict[str, Any] | None = None
    for edit in candidate_fixes(verdict, spec, stable_lr)[:tries]:
        try:
            fixed = apply_edit(spec, edit)
            result = diagnose_spec(fixed)
        except DepthlabError:
            continue  # an edit this network cannot take (no critical point for its activation)
        p = float(result.get("p_trains", 0.0))
        entry = {
            "edit": edit,
            "spec": fixed,
            "p_trains": p,
            "verdict": result.get("verdict"),
            "checked": p >= 0.5,
        }
        if p >= 0.5:
            return entry
        if best is None or p > best["p_trains"]:
            best = entry
    return best


def _round(x: float) -> float:
    """A learning rate rounded to two significant digits (run files stay readable)."""
    if x <= 0 or not math.isfinite(x):
        return x
    return float(f"{x:.2g}")
