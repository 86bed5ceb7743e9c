"""Two costs of the newer families: a KAN against an MLP of equal size, a mask against dense.

1. ``kan``: forward + backward time of a KAN (depthlab's ``kan`` family: one contraction per
   layer over B-spline features) against an MLP with the same parameter count (widths solved
   for it), on the same batch. The ratio KAN / MLP is the figure; a KAN layer evaluates
   G + k + 1 features per input, so a ratio above 1 is expected.
2. ``prune``: ``fit`` on MNIST-1D of a dense MLP, the same MLP pruned at init to 90 % by
   depthlab's ``prune_at_init`` (masks kept by a gradient hook and a forward pre-hook), and by
   PyTorch's own ``torch.nn.utils.prune`` (weight = weight_orig · mask recomputed every forward)
   as the peer. Target: depthlab's pruned / dense ≤ 1.2.

Rounds are interleaved in one process with one thread count, the order of the arms rotating
from round to round; times are this process's CPU time (``time.process_time``), so other load
on a shared machine slows every arm alike. Medians are printed; the ratios are the figures.

    python bench/sparse_kan_overhead.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, TrainSpec, build_model, fit, load_data


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def mlp_width_for(params: int, d_in: int, d_out: int, depth: int) -> int:
    """The hidden width w of a depth-``depth`` MLP with about ``params`` parameters."""
    best, gap = 1, float("inf")
    for w in range(1, 4096):
        n = d_in * w + w + (depth - 1) * (w * w + w) + w * d_out + d_out
        if abs(n - params) < gap:
            best, gap = w, abs(n - params)
    return best


def fwd_bwd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int) -> float:
    """Seconds per forward + backward of a mean-squared loss, over ``reps`` repetitions."""
    for _ in range(3):  # warm-up
        F.mse_loss(model(x), y).backward()
    start = time.process_time()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
    return (time.process_time() - start) / reps


def bench_kan(rounds: int, batch: int) -> None:
    d_in, d_out, depth = 40, 10, 2
    kan = build_model(
        ArchSpec(family="kan", depth=depth, width=32, act="silu", grid=5),
        in_shape=(d_in,),
        out_dim=d_out,
    )
    width = mlp_width_for(n_params(kan), d_in, d_out, depth)
    mlp = build_model(
        ArchSpec(family="mlp", depth=depth, width=width), in_shape=(d_in,), out_dim=d_out
    )
    x, y = torch.randn(batch, d_in), torch.randn(batch, d_out)
    ours, peer = [], []
    for r in range(rounds):
        for arm in (0, 1) if r % 2 == 0 else (1, 0):
            if arm == 0:
                ours.append(fwd_bwd(kan, x, y, 50))
            else:
                peer.append(fwd_bwd(mlp, x, y, 50))
    k, m = statistics.median(ours), statistics.median(peer)
    print(
        f"kan   KAN [40, 32, 32, 10] G=5 k=3 ({n_params(kan):,} params): {1e3 * k:.3f} ms | "
        f"MLP width {width} ({n_params(mlp):,} params): {1e3 * m:.3f} ms | "
        f"KAN / MLP = {k / m:.2f}  (forward+backward, batch {batch})"
    )


def torch_pruned(model: nn.Module, sparsity: float) -> nn.Module:
    """The peer: PyTorch's global L1 pruning, kept by its forward pre-hook reparametrisation."""
    import torch.nn.utils.prune as tprune

    layers = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
    tprune.global_unstructured(layers, pruning_method=tprune.L1Unstructured, amount=sparsity)
    return model


def bench_prune(rounds: int, epochs: int) -> None:
    data = load_data(DataSpec(name="mnist1d", val_fraction=0.0))
    arch = ArchSpec(family="mlp", depth=8, width=256)
    base = TrainSpec(optimizer="adam", epochs=epochs, batch_size=64, eval_every=0)
    pruned = base.replace(
        techniques=({"name": "prune_at_init", "method": "magnitude", "sparsity": 0.9},)
    )
    # "dense again" repeats the dense arm: its ratio to dense is the noise floor of the figure
    times: dict[str, list[float]] = {
        "dense": [],
        "depthlab": [],
        "torch.prune": [],
        "dense again": [],
    }
    names = list(times)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            model = build_model(arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=r)
            if name == "torch.prune":
                torch_pruned(model, 0.9)
            spec = pruned if name == "depthlab" else base
            start = time.process_time()
            fit(model, data, spec, progress=False)
            times[name].append(time.process_time() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"prune MLP depth 8 width 256, MNIST-1D, {epochs} epochs of Adam, 90 % sparsity: "
        f"CPU time: dense {med['dense']:.2f} s | depthlab masks {med['depthlab']:.2f} s | "
        f"torch.nn.utils.prune {med['torch.prune']:.2f} s\n"
        f"      depthlab / dense = {med['depthlab'] / med['dense']:.2f} (target <= 1.2); "
        f"torch.prune / dense = {med['torch.prune'] / med['dense']:.2f}; "
        f"noise floor: dense again / dense = {med['dense again'] / med['dense']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_kan(args.rounds, args.batch)
    bench_prune(args.rounds, args.epochs)


if __name__ == "__main__":
    main()
