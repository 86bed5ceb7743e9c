"""Trainer overhead: depthlab's ``fit`` against a hand-written PyTorch loop.

The same MLP (same init, same data, same batch order rule) is trained by both, interleaved over
several rounds in one process with the same thread count; we print samples/s for each and the
ratio depthlab / hand loop (target ≥ 0.95). Absolute times on a shared machine are noise;
the ratio is the figure.

    python bench/trainer_overhead.py [--rounds 7] [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, TrainSpec, build_model, fit, load_data


def hand_loop(model, x, y, x_test, y_test, epochs, batch, lr, seed):
    """The loop a user would write: Adam, shuffled mini-batches, cross-entropy, test accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():  # the number a user's loop prints at the end
        return (model(x_test).argmax(1) == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_data(DataSpec(name="mnist1d", val_fraction=0.0))
    arch = ArchSpec(family="mlp", depth=args.depth, width=args.width)
    # eval_every=0: depthlab evaluates only after the last epoch (train, val and test splits);
    # the hand loop evaluates test accuracy at the end, as a user's loop would.
    spec = TrainSpec(
        optimizer="adam", lr=1e-3, epochs=args.epochs, batch_size=args.batch, eval_every=0
    )
    n = len(data.y_train) * args.epochs
    ours, theirs = [], []
    for r in range(args.rounds + 1):  # round 0 warms up both
        model = build_model(arch, in_shape=data.in_shape, out_dim=10, seed=r)
        t = time.perf_counter()
        hand_loop(
            model,
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            args.epochs,
            args.batch,
            1e-3,
            r,
        )
        hand = time.perf_counter() - t
        model = build_model(arch, in_shape=data.in_shape, out_dim=10, seed=r)
        t = time.perf_counter()
        fit(model, data, spec.replace(seed=r), progress=False)
        dl = time.perf_counter() - t
        if r:
            theirs.append(n / hand)
            ours.append(n / dl)
    o, h = statistics.median(ours), statistics.median(theirs)
    print(
        f"mlp depth {args.depth} width {args.width}, batch {args.batch}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds"
    )
    print(f"hand-written loop : {h:10.0f} samples/s")
    print(f"depthlab fit      : {o:10.0f} samples/s")
    print(f"ratio depthlab/hand = {o / h:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
