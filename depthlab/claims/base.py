"""A published claim as an experiment with a fixed pass criterion.

A claim is a :class:`Claim` subclass in its own file under ``depthlab/claims/``, registered with
``@register_claim``. Its class attributes say where it comes from and what would count as
reproducing it — ``paper``, ``statement`` and ``criterion`` are fixed from the paper's statement
*before* the experiment is tuned (the honesty rule) — and :meth:`Claim.experiment` runs it::

    @register_claim
    class SNNFixedPoint(Claim):
        name = "snn-fixed-point"
        paper = "Klambauer et al. 2017, Self-Normalizing Neural Networks"
        statement = "A SELU MLP with LeCun init keeps mean 0 and variance 1 through 64 layers."
        criterion = "every layer: |mean| <= 0.1 and 0.8 <= var <= 1.25; ReLU/LeCun fails it"
        full_time = "20 s on 2 cores"

        def experiment(self, ctx: Context) -> Evidence:
            ...
            return Evidence(checks=[Check("max |mean|", 0.03, "<= 0.1", 0.03 <= 0.1), ...])

A claim holds when every :class:`Check` holds. ``ctx.control`` asks for the claim's negative
control: the same criterion on a configuration where the claim should *not* hold (ReLU instead
of SELU, say); the control must come out failed, which is what shows the criterion can fail.
A claim that honestly does not reproduce on this machine sets ``reproduces = False`` and an
``analysis`` saying what was measured and why; its test asserts that outcome.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from depthlab import _registry as reg
from depthlab._json import to_json

__all__ = [
    "Check",
    "Claim",
    "ClaimResult",
    "Context",
    "Evidence",
    "claim_names",
    "claim_figure",
    "get_claim",
    "register_claim",
    "reproduce",
    "torch_threads",
]


@dataclasses.dataclass(frozen=True)
class Check:
    """One part of a criterion: what was measured, what was required, and whether it held.

    ``measured`` is a number (or a short string); ``expected`` states the requirement as text
    (``"<= 0.1"``, ``"in [0.8, 1.25]"``, ``"> unguided in >= 2 of 3 seeds"``).
    """

    name: str
    measured: Any
    expected: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "expected": self.expected,
            "ok": bool(self.ok),
        }


@dataclasses.dataclass
class Evidence:
    """What an experiment returns: its checks, a table of everything measured, and data to plot.

    ``table`` is a list of rows (mappings of column → value) shown by ``reproduce`` and written
    to the JSON; ``data`` is whatever :meth:`Claim.plot` needs (JSON-able, also written).
    """

    checks: list[Check]
    table: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Context:
    """How to run an experiment: quick or full, the seed, and whether it is the control.

    ``seed`` offsets every seed the experiment uses (seed 0 is the documented run);
    ``progress(text)`` reports a step of a long experiment on stderr.
    """

    quick: bool = True
    seed: int = 0
    control: bool = False
    progress: Callable[[str], None] = lambda text: None

    def seeds(self, n: int) -> list[int]:
        """``n`` consecutive seeds starting at ``seed``."""
        return list(range(self.seed, self.seed + n))


class Claim(abc.ABC):
    """A published claim, re-run as an experiment. Subclasses fill in the class attributes."""

    #: Registry name, kebab-case (``depthlab reproduce NAME``).
    name: ClassVar[str]
    #: Authors, year and title of the source.
    paper: ClassVar[str]
    #: The claim in one line, in depthlab's words.
    statement: ClassVar[str]
    #: The pass criterion, fixed before tuning; every number in it is a check's ``expected``.
    criterion: ClassVar[str]
    #: What the experiment does (networks, data, seeds) in quick and in full mode.
    experiment_doc: ClassVar[str] = ""
    #: The negative control's configuration, in one line.
    control_doc: ClassVar[str] = ""
    #: Wall-clock time of the full mode on 2 cores, e.g. ``"about 4 min on 2 cores"``.
    full_time: ClassVar[str] = ""
    #: False for a claim that does not reproduce here (``analysis`` says why).
    reproduces: ClassVar[bool] = True
    #: For a claim that does not reproduce: what was measured, and a short analysis.
    analysis: ClassVar[str] = ""
    #: Intra-op torch threads the experiment runs with (``None``: whatever is set); the
    #: previous count is restored afterwards (see :func:`torch_threads`).
    threads: ClassVar[int | None] = None

    @abc.abstractmethod
    def experiment(self, ctx: Context) -> Evidence:
        """Run the experiment (or its negative control when ``ctx.control``); return evidence."""

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        """Save a figure of the evidence to ``path`` (PNG); ``None`` if the claim has none."""
        return None


def register_claim(cls: type[Claim]) -> type[Claim]:
    """Class decorator: register a claim under its ``name``."""
    for attr in ("name", "paper", "statement", "criterion"):
        if not getattr(cls, attr, ""):
            raise TypeError(f"claim {cls.__name__} must set {attr!r}")
    reg.CLAIMS.register(cls.name, cls, cls.statement)
    return cls


def get_claim(name: str) -> type[Claim]:
    """The claim class registered as ``name``; a miss lists the claims."""
    cls: type[Claim] = reg.CLAIMS.get(name, field="claim")
    return cls


def claim_names() -> list[str]:
    return reg.CLAIMS.names()


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """The outcome of one ``reproduce``; its JSON has claim, passed, measured and expected."""

    claim: str
    passed: bool
    checks: tuple[Check, ...]
    evidence: Evidence
    quick: bool
    seed: int
    control: bool
    seconds: float
    reproduces: bool
    figure: Path | None = None

    @property
    def as_recorded(self) -> bool:
        """Did the run reach the claim's recorded outcome (held, or for a control: failed)?"""
        expected = self.reproduces and not self.control
        return self.passed == expected

    def to_dict(self) -> dict[str, Any]:
        out = {
            "claim": self.claim,
            "passed": self.passed,
            "measured": {c.name: c.measured for c in self.checks},
            "expected": {c.name: c.expected for c in self.checks},
            "checks": [c.to_dict() for c in self.checks],
            "table": self.evidence.table,
            "data": self.evidence.data,
            "notes": self.evidence.notes,
            "quick": self.quick,
            "seed": self.seed,
            "control": self.control,
            "seconds": self.seconds,
            "known_to_reproduce": self.reproduces,
            "figure": str(self.figure) if self.figure is not None else None,
        }
        result: dict[str, Any] = to_json(out)
        return result


def reproduce(
    name: str,
    *,
    quick: bool = True,
    seed: int = 0,
    control: bool = False,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ClaimResult:
    """Run claim ``name`` (or its negative control); with ``out``, save its plot there."""
    cls = get_claim(name)
    say = progress or (lambda text: None)
    ctx = Context(quick=quick, seed=seed, control=control, progress=say)
    started = time.perf_counter()
    with torch_threads(cls.threads):
        evidence = cls().experiment(ctx)
    seconds = time.perf_counter() - started
    if not evidence.checks:
        raise RuntimeError(f"claim {name!r} returned no checks")
    checks = tuple(_finite_ok(c) for c in evidence.checks)
    figure = None
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        suffix = "-control" if control else ""
        figure = cls().plot(evidence, d / f"{name}{suffix}.png")
    return ClaimResult(
        claim=name,
        passed=all(c.ok for c in checks),
        checks=checks,
        evidence=evidence,
        quick=quick,
        seed=seed,
        control=control,
        seconds=seconds,
        reproduces=cls.reproduces,
        figure=figure,
    )


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous count.

    ``None`` leaves the count alone. A claim's numbers can depend on the thread count (the
    order of a reduction's partial sums), so a claim that fixes it declares ``threads``.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def claim_figure(
    path: Path, nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], dpi: int = 100
) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure and its axes (as ``plt.subplots`` returns them) saved to ``path``.

    On leaving the block the layout is tightened and the PNG written at ``dpi``; the figure is
    closed either way. matplotlib is imported here, on the file-only Agg backend.
    """
    from depthlab.report.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def _finite_ok(check: Check) -> Check:
    """A NaN measurement never passes a check, whatever the comparison said."""
    m = check.measured
    if isinstance(m, float) and math.isnan(m) and check.ok:
        return dataclasses.replace(check, ok=False)
    return check


def stderr_progress(name: str) -> Callable[[str], None]:
    """A ``progress`` callback printing ``[name] text`` on stderr."""
    return lambda text: print(f"[{name}] {text}", file=sys.stderr, flush=True)
