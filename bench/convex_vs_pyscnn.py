"""depthlab's convex solvers against pyscnn (Mishkin et al. 2022) and Adam, side by side.

One process, one thread, the same problem for everyone: breast_cancer (standardised), projected
to its first two principal components so that every activation pattern can be enumerated,
a subsample of ``--n`` points, λ = ``--lam``. Both libraries get the same gates (the exact
pattern set) and the bias as a column of X̃; every objective is evaluated here with one formula,
(1/(2N))‖f(X) − y‖² + λ Σ‖u_i‖ on each solver's own predictions (pyscnn's scaling too).

    python bench/convex_vs_pyscnn.py [--n 28] [--lam 0.01] [--adam-steps 5000]

Prints times, objectives and ratios; the exact-pattern size limits at the end.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from depthlab.convex import exact_patterns, fit_convex, two_layer_objective
from depthlab.convex.gap import project, train_two_layer
from depthlab.data import load_data
from depthlab.spec import DataSpec, TrainSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=28)
    parser.add_argument("--lam", type=float, default=0.01)
    parser.add_argument("--adam-steps", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    data = load_data(DataSpec(name="breast_cancer", val_fraction=0.0, test_fraction=0.0))
    rng = np.random.default_rng(0)
    idx = rng.choice(len(data.y_train), size=args.n, replace=False)
    x = project(data.x_train.double().numpy(), 2)[idx]
    y = np.where(data.y_train.numpy()[idx] == 1, 1.0, -1.0)
    xt = np.c_[x, np.ones(len(x))]
    pats = exact_patterns(xt)
    print(f"breast_cancer, PCA-2, N = {args.n}, λ = {args.lam}: {pats.n_patterns} patterns (all)")

    def scnn_run(model_cls, solver_cls, **kw):  # noqa: ANN001, ANN202
        model = model_cls(pats.gates.T.copy(), c=1)
        solver = solver_cls(model, **kw)
        t = time.perf_counter()
        model, _ = optimize_model(
            model, solver, Metrics(), xt, y[:, None], regularizer=NeuronGL1(args.lam),
            unitize_data=False, dtype="float64", return_convex=True,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        # pyscnn may reorder or prune its gates: its own predictions, our formula
        pred = np.asarray(model(xt)).reshape(-1)
        pen = sum(float(np.linalg.norm(np.asarray(p)[0], axis=-1).sum()) for p in model.parameters)
        return seconds, float(((pred - y) ** 2).sum() / (2 * len(y)) + args.lam * pen)

    print("\n-- gated ReLU (all gates) --")
    ours = fit_convex(x, y, lam=args.lam, model="gated", tol=1e-9)
    print(f"depthlab working set: {ours.seconds:7.2f} s  objective {ours.objective:.10f} "
          f"(certified {ours.certified}, gap {ours.gap:.2e})")  # fmt: skip
    for tol in (1e-6, 1e-8, 1e-10):
        sec, obj = scnn_run(ConvexGatedReLU, RFISTA, max_iters=100000, tol=tol)
        rel = (obj - ours.objective) / ours.objective
        ratio = ours.seconds / sec
        print(f"pyscnn R-FISTA tol {tol:.0e}: {sec:7.2f} s  objective {obj:.10f} "
              f"(rel. to depthlab {rel:+.1e}); time ratio depthlab/pyscnn {ratio:.2f}")  # fmt: skip

    print("\n-- ReLU (cone constraints) --")
    ours_r = fit_convex(x, y, lam=args.lam, model="relu", tol=1e-8, max_seconds=args.max_seconds)
    print(f"depthlab working set: {ours_r.seconds:7.2f} s  objective {ours_r.objective:.10f} "
          f"(certified {ours_r.certified}, gap {ours_r.gap:.2e})")  # fmt: skip
    sec, obj = scnn_run(ConvexReLU, AL)
    print(f"pyscnn AL (defaults): {sec:7.2f} s  objective {obj:.10f}; "
          f"depthlab is {sec / ours_r.seconds:.2f}x faster")  # fmt: skip
    spec = TrainSpec(optimizer="adam", lr=0.01, epochs=args.adam_steps, batch_size=0, seed=0)
    t = time.perf_counter()
    net = train_two_layer(torch.from_numpy(x), torch.from_numpy(y), width=64, lam=args.lam,
                          train=spec)  # fmt: skip
    sec_adam = time.perf_counter() - t
    adam = two_layer_objective(net, torch.from_numpy(x), torch.from_numpy(y), args.lam)
    print(f"Adam, width 64, {args.adam_steps} full-batch steps: {sec_adam:7.2f} s  objective "
          f"{adam:.10f}; depthlab optimum − Adam {ours_r.objective - adam:+.2e}")  # fmt: skip

    print("\n-- exact-pattern enumeration (2 features + bias, rank 3) --")
    for n in (50, 100, 200, 400):
        xs = np.c_[rng.standard_normal((n, 2)), np.ones(n)]
        t = time.perf_counter()
        p = exact_patterns(xs).n_patterns
        print(f"N = {n:4d}: {p:7d} patterns in {time.perf_counter() - t:6.2f} s")


if __name__ == "__main__":
    main()
