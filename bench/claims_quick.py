"""Wall time of every claim's quick mode (and its negative control) against the 90 s budget.

    python bench/claims_quick.py [--threads 1] [NAME ...]

Prints one row per claim: quick-mode time, control time, the outcome, and whether it is the
recorded one. Times on a shared machine are noise; run it on quiet cores.
"""

from __future__ import annotations

import argparse

import torch

from depthlab.claims import claim_names, get_claim, reproduce

BUDGET = 90.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="claims to time (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names or claim_names()
    print(f"{'claim':22s} {'quick':>8s} {'control':>8s}  outcome")
    worst = 0.0
    for name in names:
        get_claim(name)
        quick = reproduce(name, quick=True)
        control = reproduce(name, quick=True, control=True)
        worst = max(worst, quick.seconds, control.seconds)
        outcome = "held" if quick.passed else "not held"
        recorded = "as recorded" if quick.as_recorded and control.as_recorded else "CHANGED"
        print(f"{name:22s} {quick.seconds:7.1f}s {control.seconds:7.1f}s  {outcome}, {recorded}")
    print(f"slowest quick mode or control: {worst:.1f} s (budget {BUDGET:.0f} s on 2 cores)")


if __name__ == "__main__":
    main()
