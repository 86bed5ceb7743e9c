"""One Markdown page per claim, generated from the registry (``depthlab claims --docs DIR``).

A page states the claim, its source, the criterion, the experiment and its negative control,
the command that re-runs it, its running time, and the plot ``NAME.png`` that
``depthlab reproduce NAME --quick --out DIR`` saves beside the page.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from depthlab.claims.base import Claim, claim_names, get_claim

__all__ = ["claim_page", "write_docs"]


def claim_page(cls: type[Claim]) -> str:
    """The Markdown page of one claim."""
    outcome = (
        "Reproduces on a 2-core CPU machine (quick and full mode)."
        if cls.reproduces
        else "**Does not reproduce** on a 2-core CPU machine; `reproduce` exits non-zero."
    )
    parts = [
        f"# `{cls.name}`",
        f"**Source:** {cls.paper}",
        f"**Claim:** {cls.statement}",
        f"**Pass criterion** (fixed before the experiment was tuned): {cls.criterion}",
    ]
    if cls.experiment_doc:
        parts.append(f"**Experiment:** {_text(cls.experiment_doc)}")
    if cls.control_doc:
        parts.append(
            f"**Negative control** (`--control`, must come out not held): {_text(cls.control_doc)}"
        )
    parts.append(
        "**Run it:**\n\n```bash\n"
        f"depthlab reproduce {cls.name} --quick --out out/   # quick mode, <= 90 s\n"
        f"depthlab reproduce {cls.name} --out out/           # full mode"
        + (f": {cls.full_time}" if cls.full_time else "")
        + f"\ndepthlab reproduce {cls.name} --quick --control  # the negative control\n```"
    )
    parts.append(f"**Outcome here:** {outcome}")
    if cls.analysis:
        parts.append(f"**Analysis:** {_text(cls.analysis)}")
    parts.append(f"![{cls.name}]({cls.name}.png)")
    return "\n\n".join(parts) + "\n"


def write_docs(out: str | Path) -> list[Path]:
    """Write ``NAME.md`` for every claim and an ``index.md`` listing them; return the paths."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    pages = []
    rows = ["| claim | source | statement |", "|---|---|---|"]
    for name in claim_names():
        cls = get_claim(name)
        page = d / f"{name}.md"
        page.write_text(claim_page(cls))
        pages.append(page)
        rows.append(f"| [`{name}`]({name}.md) | {cls.paper} | {cls.statement} |")
    index = d / "index.md"
    index.write_text(
        "# Claims depthlab re-runs\n\n"
        "Each published claim behind a technique or probe, as an experiment with a fixed pass "
        "criterion. `depthlab reproduce NAME --quick` re-runs one.\n\n" + "\n".join(rows) + "\n"
    )
    return [index, *pages]


def _text(doc: str) -> str:
    return " ".join(textwrap.dedent(doc).split())
