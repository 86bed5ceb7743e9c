"""Empirical NTK: depthlab's layer-by-layer contraction against the naive per-sample Jacobian.

Θ_ij = Σ_k ∇θ f_k(x_i) · ∇θ f_k(x_j) on 256 MNIST-1D inputs for a 40→512→512→512→512→10 ReLU
MLP (814,090 parameters). The naive way materialises every per-sample Jacobian, N×10×P floats
(8.3 GB in float32), with ``vmap(jacrev)`` and contracts them; depthlab's ``layerwise`` method
never forms more than one layer's N×K×d_out output gradients. Each method runs in its own child
process, which reports its wall time (best of ``--repeats`` after a warm-up on 8 samples) and
its peak resident memory (``ru_maxrss``; torch's allocations are invisible to tracemalloc).
Targets: layerwise ≥ 10× faster and ≥ 10× less peak memory than naive.

If a Python with neural-tangents is given (``--nt-python``, default ``/tmp/ntvenv/bin/python``
when it exists; a throwaway venv, never the project's), the same weights (exported with numpy)
go through ``nt.empirical_ntk_fn`` with each of its three implementations on JAX's CPU backend,
one child process each, and their times are compared too (steady state, after compilation).

    python bench/ntk_vs_jacobian.py [--samples 256] [--threads 1] [--repeats 3] [--skip-naive]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NT_SCRIPT = r"""
import json, os, resource, sys, time
import numpy as np
import jax, jax.numpy as jnp
import neural_tangents as nt

data = np.load(sys.argv[1])
impl, repeats = int(sys.argv[2]), int(sys.argv[3])
x = jnp.asarray(data["x"])
layers = [(jnp.asarray(data[f"w{i}"]), jnp.asarray(data[f"b{i}"])) for i in range(int(data["n"]))]

def f(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b

fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation=impl))
fn(x[:8], None, layers).block_until_ready()  # warm-up: tracing and compilation
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
times, cpu = [], []
for _ in range(1 + repeats):  # the first call compiles for the full batch shape
    t, c = time.perf_counter(), time.process_time()
    theta = fn(x, None, layers).block_until_ready()
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
# neural-tangents averages over the traced output axis (divides by K); depthlab sums.
theta = np.asarray(theta, dtype=np.float64) * layers[-1][0].shape[1]
np.save(sys.argv[4], theta)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
best = int(np.argmin(times[1:])) + 1 if repeats else 0
print(json.dumps({"time": times[best], "cpu": cpu[best], "first": times[0], "peak_mb": peak,
                  "base_mb": base, "version": nt.__version__ + " / jax " + jax.__version__}))
"""
NT_IMPLS = {1: "jacobian contraction", 2: "NTK-vector products", 3: "structured derivatives"}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(method: str, folder: Path, threads: int, repeats: int) -> None:
    """One method in this process: time it, report peak RSS as one JSON line."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    from depthlab import ArchSpec, build_model
    from depthlab.probes.ntk import empirical_ntk

    torch.set_num_threads(threads)
    x = torch.load(folder / "x.pt")
    model = build_model(ArchSpec(family="mlp", depth=4, width=512), in_shape=(40,), out_dim=10)
    model.load_state_dict(torch.load(folder / "model.pt"))
    model.eval()

    def naive(xs: torch.Tensor) -> torch.Tensor:
        params = {k: v.detach() for k, v in model.named_parameters()}

        def f(p: dict, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

        jac = vmap(jacrev(f), in_dims=(None, 0))(params, xs)  # name -> (N, 10, *shape)
        n = len(xs)
        return sum(j.reshape(n, -1) @ j.reshape(n, -1).T for j in jac.values())

    def layerwise(xs: torch.Tensor) -> torch.Tensor:
        return empirical_ntk(model, xs, method="layerwise")[0]

    run = naive if method == "naive" else layerwise
    run(x[:8])  # warm-up: first-call costs of autograd and torch.func
    base = rss_mb()
    times, cpu = [], []
    for _ in range(1 if method == "naive" else repeats):
        t, c = time.perf_counter(), time.process_time()
        theta = run(x)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = rss_mb()
    np.save(folder / f"{method}.npy", theta.double().numpy())
    best = int(np.argmin(times))
    print(json.dumps({"time": times[best], "cpu": cpu[best], "peak_mb": peak, "base_mb": base}))


def child(
    cmd: list[str], threads: int, env: dict[str, str] | None = None, timeout: float = 300
) -> dict | str:
    """Run one measurement in a fresh process; with one thread, pinned to one core (XLA sizes
    its thread pool from the cores it may use and ignores thread-count flags)."""
    cores = sorted(os.sched_getaffinity(0))[:threads]

    def pin() -> None:
        os.sched_setaffinity(0, cores)

    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=pin
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"failed (exit {done.returncode}): {tail}"
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--nt-python", default="/tmp/ntvenv/bin/python")
    parser.add_argument("--nt-impls", default="3,2,1", help="neural-tangents implementations")
    parser.add_argument("--worker", choices=["layerwise", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.dir), args.threads, args.repeats)
        return

    import torch

    from depthlab import ArchSpec, DataSpec, build_model, load_data

    x = load_data(DataSpec(name="mnist1d", val_fraction=0.0)).x_train[: args.samples]
    model = build_model(ArchSpec(family="mlp", depth=4, width=512), in_shape=(40,), out_dim=10)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"empirical NTK, {len(x)} MNIST-1D inputs, MLP 40-512x4-10 ({n_params:,} parameters),")
    print(f"{args.threads} thread(s); naive Jacobian = {len(x) * 10 * n_params * 4 / 1e9:.1f} GB")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(x, folder / "x.pt")
        torch.save(model.state_dict(), folder / "model.pt")
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        weights = {f"w{i}": m.weight.detach().T.numpy() for i, m in enumerate(linears)}
        weights.update({f"b{i}": m.bias.detach().numpy() for i, m in enumerate(linears)})
        np.savez(folder / "nt.npz", x=x.numpy(), n=len(linears), **weights)

        results: dict[str, dict | str] = {}
        me = [sys.executable, __file__, "--dir", tmp, "--threads", str(args.threads)]
        me += ["--repeats", str(args.repeats)]
        for method in ["layerwise"] + ([] if args.skip_naive else ["naive"]):
            results[method] = child([*me, "--worker", method], args.threads, timeout=400)
        nt_python = Path(args.nt_python)
        if nt_python.exists():
            script = folder / "nt_worker.py"
            script.write_text(NT_SCRIPT)
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
            for impl in [int(i) for i in args.nt_impls.split(",") if i]:
                name = NT_IMPLS[impl]
                # 1 and 2 take tens of seconds: one full-batch call, compilation included
                repeats = args.repeats if impl == 3 else 0
                out = folder / f"nt{impl}.npy"
                cmd = [str(nt_python), str(script), str(folder / "nt.npz"), str(impl)]
                results[f"neural-tangents {name}"] = child(
                    [*cmd, str(repeats), str(out)], args.threads, env=env, timeout=300
                )
        else:
            results["neural-tangents"] = f"not run: no {nt_python} (pip install neural-tangents)"
        report(results, folder)


def report(results: dict[str, dict | str], folder: Path) -> None:
    ours = results["layerwise"]
    reference = np.load(folder / "layerwise.npy") if isinstance(ours, dict) else None
    head = f"{'time s':>8s} {'cpu s':>7s} {'peak RSS MB':>12s} {'above base':>11s}"
    print(f"\n{'method':40s} {head}  diff vs layerwise")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name:40s} {r}")
            continue
        file = {"layerwise": "layerwise", "naive": "naive"}.get(name)
        impl = [i for i, v in NT_IMPLS.items() if name.endswith(v)]
        path = folder / (f"{file}.npy" if file else f"nt{impl[0]}.npy")
        diff = ""
        if reference is not None and path.exists():
            other = np.load(path)
            diff = f"{np.linalg.norm(other - reference) / np.linalg.norm(reference):.1e}"
        extra = f"  (first call {r['first']:.2f} s, {r['version']})" if "first" in r else ""
        above = r["peak_mb"] - r["base_mb"]
        print(
            f"{name:40s} {r['time']:8.3f} {r['cpu']:7.3f} {r['peak_mb']:12.0f} {above:11.0f}  "
            f"{diff}{extra}"
        )
    if not isinstance(ours, dict):
        return
    print("\nratios (other / depthlab layerwise; > 1 means depthlab is better):")
    for name, r in results.items():
        if name == "layerwise" or isinstance(r, str):
            continue
        above = (r["peak_mb"] - r["base_mb"]) / max(ours["peak_mb"] - ours["base_mb"], 1.0)
        print(
            f"  {name:38s} time {r['time'] / ours['time']:7.1f}x   "
            f"peak RSS {r['peak_mb'] / ours['peak_mb']:6.1f}x   above base {above:7.1f}x"
        )


if __name__ == "__main__":
    main()
