"""depthlab's convex solvers against pyscnn (Mishkin et al. 2022), side by side, one thread.

Two suites (``--suite``):

* ``large`` — breast_cancer (569 × 30, standardised) and MNIST-1D (4000 × 40, generated locally
  by mnist1d's make_dataset; binary target: digit < 5 against the rest), ±1 targets, squared
  loss, λ = ``--lam``, ``--gates`` sampled gates (seed 0) given to *both* libraries, the bias a
  column of X̃. Every objective is computed here with one formula on each solver's own weights:
  gated (1/(2N))‖Σ_i D_iX̃u_i − y‖² + λΣ‖u_i‖; ReLU the same with the network's predictions
  Σ_i relu(X̃u_i) − relu(X̃u'_i) (a real network's objective, whatever the constraint violation).
  Reported: the peer's time and objective; depthlab's time to the peer's objective (from its
  trace) and to 1e-6 relative of the best objective either found.
* ``exact`` — the exact, certified ReLU solve on N random two-feature points (rank 3 with the
  bias): the largest N certified within ``--max-seconds``.

    python bench/convex_vs_pyscnn.py --suite large --datasets breast_cancer --gates 200

pyscnn comes from the ``bench`` extra (without its torchvision dependency, which does not import
beside this torch: ``pip install --no-deps pyscnn linalg_backends opt_einsum``).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from depthlab.convex import exact_patterns, fit_convex
from depthlab.convex.auglag import relu_auglag
from depthlab.convex.gated import gated_first_order
from depthlab.convex.losses import make_loss
from depthlab.convex.patterns import sampled_patterns
from depthlab.convex.programs import Program
from depthlab.data import load_data
from depthlab.spec import DataSpec


def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "breast_cancer":
        data = load_data(DataSpec(name="breast_cancer", val_fraction=0.0, test_fraction=0.0))
        x = data.x_train.double().numpy()
        return x, np.where(data.y_train.numpy() == 1, 1.0, -1.0)
    if name == "mnist1d":
        data = load_data(DataSpec(name="mnist1d", val_fraction=0.0, test_fraction=0.0))
        x = data.x_train.double().numpy()[:4000]
        return x, np.where(data.y_train.numpy()[:4000] < 5, 1.0, -1.0)
    raise SystemExit(f"unknown dataset {name!r}; choices: breast_cancer, mnist1d")


def time_to(trace: list[tuple[float, float, float]], target: float) -> float:
    """The first time the traced objective is at or below ``target`` (inf if never)."""
    return next((t for t, obj, _ in trace if obj <= target), math.inf)


def peer(kind: str, xt: np.ndarray, y: np.ndarray, gates: np.ndarray, lam: float, **kw):  # noqa: ANN003, ANN201
    """pyscnn on our gates: (seconds, objective) for gated, (seconds, weights (2, P, d)) for
    ReLU."""
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    cls, solver = (ConvexGatedReLU, RFISTA) if kind == "gated" else (ConvexReLU, AL)
    model = cls(gates.T.copy(), c=1)
    t = time.perf_counter()
    model, _ = optimize_model(
        model, solver(model, **kw), Metrics(), xt, y[:, None], regularizer=NeuronGL1(lam),
        unitize_data=False, dtype="float64", return_convex=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    params = [torch.from_numpy(np.asarray(p)[0]) for p in model.parameters]
    if kind == "gated":
        # pyscnn may reorder or prune its gates: its own predictions, our formula
        pred = torch.from_numpy(np.asarray(model(xt)).reshape(-1))
        obj = float(((pred - torch.from_numpy(y)) ** 2).sum()) / (2 * len(y))
        return seconds, obj + lam * float(params[0].norm(dim=1).sum())
    # the ReLU network the weights define does not depend on the order of the gates
    return seconds, torch.stack(params[:2])


def large(args: argparse.Namespace) -> None:
    for name in args.datasets.split(","):
        x, y = dataset(name)
        xt = np.c_[x, np.ones(len(x))]
        for n_gates in (int(g) for g in args.gates.split(",")):
            pats = sampled_patterns(xt, n_gates, seed=0)
            d = torch.from_numpy(pats.d.astype(np.float64))
            loss = make_loss("squared", torch.from_numpy(y))
            gated = Program(torch.from_numpy(xt), d, loss, args.lam, "gated")
            relu = Program(torch.from_numpy(xt), d, loss, args.lam, "relu")
            print(f"\n== {name} {x.shape[0]}×{x.shape[1]}, {pats.n_patterns} gates, "
                  f"λ = {args.lam} ==", flush=True)  # fmt: skip
            if "gated" in args.programs:
                run_gated(args, xt, y, pats.gates, gated)
            if "relu" in args.programs:
                run_relu(args, xt, y, pats.gates, gated, relu)


def run_gated(args: argparse.Namespace, xt, y, gates, gated: Program) -> None:  # noqa: ANN001
    peers = []
    if not args.no_peer:
        for tol in (1e-6, 1e-10):
            sec, obj = peer("gated", xt, y, gates, args.lam, max_iters=100_000, tol=tol)
            peers.append((tol, sec, obj))
            print(f"pyscnn R-FISTA tol {tol:.0e}: {sec:8.2f} s  objective {peers[-1][2]:.10f}",
                  flush=True)  # fmt: skip
    trace: list[tuple[float, float, float]] = []
    t = time.perf_counter()
    u, upper, lower, its, _ = gated_first_order(
        gated, tol=1e-9, trace=trace, deadline=t + args.max_seconds
    )
    sec = time.perf_counter() - t
    print(f"depthlab first-order: {sec:8.2f} s  objective {upper:.10f}  lower bound "
          f"{lower:.10f} (gap {(upper - lower) / upper:.1e}), {its} iterations, "
          f"{int((u.norm(dim=1) > 0).sum())} groups", flush=True)  # fmt: skip
    best = min([upper] + [p[2] for p in peers])
    target = best * (1 + 1e-6)
    print(f"  time to 1e-6 rel. of the best objective ({best:.10f}): depthlab "
          f"{time_to(trace, target):.2f} s; pyscnn "
          + ", ".join(f"tol {p[0]:.0e}: {p[1]:.2f} s" if p[2] <= target else
                      f"tol {p[0]:.0e}: not reached" for p in peers))  # fmt: skip
    for tol, psec, pobj in peers:
        ours = time_to(trace, pobj)
        print(f"  to pyscnn's tol-{tol:.0e} objective: depthlab {ours:.2f} s vs pyscnn "
              f"{psec:.2f} s: ratio {ours / psec:.2f}", flush=True)  # fmt: skip


def run_relu(args: argparse.Namespace, xt, y, gates, gated: Program, relu: Program) -> None:  # noqa: ANN001
    trace: list[tuple[float, float, float]] = []
    t = time.perf_counter()
    deadline = t + args.max_seconds
    ug, *_ = gated_first_order(gated, tol=1e-4, deadline=t + 0.25 * args.max_seconds)
    warm = time.perf_counter() - t
    u, upper, lower, its, _ = relu_auglag(
        relu, tol=1e-6, u0=torch.stack([ug, torch.zeros_like(ug)]), trace=trace, deadline=deadline
    )
    sec = time.perf_counter() - t
    trace = [(s + warm, o, lo) for s, o, lo in trace]
    print(f"depthlab ReLU (gated warm start {warm:.1f} s + augmented Lagrangian): {sec:8.2f} s  "
          f"network objective {upper:.10f}, lower bound {lower:.10f}, violation "
          f"{relu.violation(u):.1e}, {its} iterations", flush=True)  # fmt: skip
    if args.no_peer or args.no_peer_relu:
        return
    psec, pu = peer("relu", xt, y, gates, args.lam)
    pobj = relu.network_objective(pu)
    ours = time_to(trace, pobj)
    print(f"pyscnn AL (defaults): {psec:8.2f} s  network objective {pobj:.10f} (violation "
          f"{relu.violation(pu):.1e}); depthlab reaches it in {ours:.2f} s: ratio "
          f"{ours / psec:.2f}", flush=True)  # fmt: skip


def exact(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    print(f"exact ReLU solve, two-feature points, λ = {args.lam}, limit {args.max_seconds} s")
    for n in (int(v) for v in args.sizes.split(",")):
        x = rng.standard_normal((n, 2))
        y = np.sin(2 * x[:, 0]) + 0.3 * x[:, 1]
        p = exact_patterns(np.c_[x, np.ones(n)]).n_patterns
        res = fit_convex(x, y, lam=args.lam, model="relu", max_seconds=args.max_seconds)
        print(f"N = {n:4d}: {p:6d} patterns, {res.seconds:7.2f} s, certified {res.certified} "
              f"(gap {res.gap:.1e})", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", choices=("large", "exact"), default="large")
    parser.add_argument("--datasets", default="breast_cancer,mnist1d")
    parser.add_argument("--gates", default="200,1000")
    parser.add_argument("--programs", default="gated,relu")
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--sizes", default="20,40,60,100,200")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-peer-relu", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.suite == "large":
        large(args)
    else:
        exact(args)


if __name__ == "__main__":
    main()
