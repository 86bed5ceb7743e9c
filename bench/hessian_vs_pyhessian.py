"""Hessian spectra: depthlab's ``hessian`` probe against PyHessian, side by side in one process.

On the MNIST-1D CNN (Greydanus 2020; 5,210 parameters, trained for 10 epochs of the reference
recipe, or at initialisation with ``--train-epochs 0``) and the first 1,000 training samples, with
the exact dense Hessian (float64, computed once and cached) as the reference:

(a) top eigenvalue to relative error ≤ 1e-4: wall time and Hessian–vector products, depthlab's
    Lanczos (stopped on its eigenvalue error bound ``eig_tol``, and for comparison on the Ritz
    residual ``tol`` alone) against PyHessian's power iteration (at its default tol=1e-3, then
    tightened until it reaches 1e-4, if it does); then the same for the top 5 (PyHessian
    deflates);
(b) trace over 20 seeds: depthlab's default (``trace_method: auto``, which is exact on this
    piecewise-linear CNN: tr H = tr of the Gauss–Newton part) and, at equal wall time, its
    Hutch++, against PyHessian's Hutchinson;
(c) eigenvalue density (stochastic Lanczos quadrature, same probes × steps): wall time, peak
    memory and distance to the exact density. PyHessian's ``density()`` calls ``torch.eig``,
    removed from torch 2: this script alone puts an ``eigh``-based stand-in on ``torch`` while
    it runs;
(d) a ~1M-parameter MLP (depth 3, width 700): timings only.

PyHessian (Yao, Gholami, Keutzer & Mahoney 2020) is GPL-licensed: it is imported, never copied.
It is a bench-only dependency; install it without letting pip touch torch:
``pip install --no-deps pyhessian``. Times are medians over interleaved repeats on one thread
(``--threads``); on a shared machine the ratios are the figures. Peak memory is the rise of the
process's resident set over its level before each call (sampled every millisecond, after
``malloc_trim``); ``tracemalloc`` cannot see torch's allocations.

    python bench/hessian_vs_pyhessian.py [--threads 1] [--seeds 20] [--skip-mlp]
        [--only top|trace] [--train-epochs 0]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import hashlib
import math
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, TrainSpec, build_model, fit, load_data
from depthlab.probes import HessianProbe, ProbeBatch
from depthlab.probes.hessian import HessianParams

CNN = ArchSpec(family="cnn1d", depth=3, width=25, kernel=(5, 3, 3), stride=2, padding=1)
MLP = ArchSpec(family="mlp", depth=3, width=700)


# -- PyHessian, guarded ---------------------------------------------------------------------
def import_pyhessian():
    try:
        import pyhessian
    except ImportError:
        return None
    module = sys.modules["pyhessian.hessian"]  # the attribute is shadowed by the class
    counter = {"n": 0}
    original = module.hessian_vector_product

    def counted(grads, params, v):
        counter["n"] += 1
        return original(grads, params, v)

    module.hessian_vector_product = counted  # count PyHessian's products (its own hook point)
    pyhessian.counter = counter
    return pyhessian


@contextlib.contextmanager
def torch_eig_shim():
    """``torch.eig(A, eigenvectors=True)`` as torch 1.x had it (eigenvalues as (n, 2) real and
    imaginary parts, eigenvectors as columns), for the symmetric tridiagonal matrices PyHessian
    passes, via ``torch.linalg.eigh``. Installed only for the duration of the block."""

    def eig(a: torch.Tensor, eigenvectors: bool = False):
        values, vectors = torch.linalg.eigh(a)
        pairs = torch.stack([values, torch.zeros_like(values)], dim=1)
        return pairs, (vectors if eigenvectors else torch.empty(0))

    had = hasattr(torch, "eig")
    old = getattr(torch, "eig", None)
    torch.eig = eig
    try:
        yield
    finally:
        if had:
            torch.eig = old
        else:
            del torch.eig


def pyhessian_run(pyh, template: nn.Module, x, y, seed: int, call):
    """One PyHessian computation on a fresh copy of the model (its constructor leaves a graph
    in ``.grad``); returns (result, seconds, products)."""
    model = copy.deepcopy(template)
    torch.manual_seed(seed)  # PyHessian draws its vectors from the global generator
    pyh.counter["n"] = 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # backward(create_graph=True) warns
        h = pyh.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        out = call(h)
    seconds = time.perf_counter() - start
    del h, model
    return out, seconds, pyh.counter["n"]


def depthlab_run(model: nn.Module, batch: ProbeBatch, seed: int, **params):
    start = time.perf_counter()
    out = HessianProbe(HessianParams(batch_size=len(batch.y), **params)).run(
        model, batch, seed=seed
    )
    return out, time.perf_counter() - start, out["hvp_count"]


# -- the reference: the dense Hessian in float64 ---------------------------------------------
class MatmulConv1d(nn.Module):
    """The same convolution as a matrix product over unfolded windows: float64 ``conv1d`` on CPU
    is ~15× slower than float32, float64 ``mm`` is not."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding = conv.stride[0], conv.padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.pad(x, (self.padding, self.padding)).unfold(2, self.weight.shape[2], self.stride)
        n, c, length, k = cols.shape
        out = cols.permute(0, 2, 1, 3).reshape(n * length, c * k) @ self.weight.reshape(-1, c * k).T
        out = out.view(n, length, -1).permute(0, 2, 1)
        return out if self.bias is None else out + self.bias[:, None]


def reference(model: nn.Module, batch: ProbeBatch, cache: Path | None) -> dict[str, torch.Tensor]:
    """Eigenvalues (descending) and trace of the exact Hessian, float64, cached on disk."""
    ref = copy.deepcopy(model).double().eval()
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(module, name, MatmulConv1d(child))
    with torch.no_grad():
        gap = (ref(batch.x.double()) - copy.deepcopy(model).double().eval()(batch.x.double())).abs()
    assert float(gap.max()) < 1e-10, "the matmul convolution must equal conv1d"
    named = list(ref.named_parameters())
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([p.numel() for _, p in named])
        params = {k: t.view_as(p) for (k, p), t in zip(named, pieces, strict=True)}
        return F.cross_entropy(
            torch.func.functional_call(ref, params, (batch.x.double(),)), batch.y
        )

    key = hashlib.sha256(
        b"".join(t.numpy().tobytes() for t in (theta, batch.x.double(), batch.y))
    ).hexdigest()[:16]
    path = cache / f"hessian_{key}.pt" if cache else None
    if path is not None and path.exists():
        return torch.load(path)
    n = theta.numel()
    print(f"  computing the dense {n}×{n} float64 Hessian ({n} exact products; cached after)...")
    start = time.perf_counter()
    flat = theta.clone().requires_grad_(True)
    grad = torch.autograd.grad(loss_of(flat), flat, create_graph=True)[0]
    hess = torch.empty(n, n, dtype=torch.float64)
    eye = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        eye[i] = 1.0
        hess[i] = torch.autograd.grad(grad, flat, eye, retain_graph=True)[0]
        eye[i] = 0.0
    asym = float((hess - hess.T).abs().max() / hess.abs().max())
    hess = (hess + hess.T) / 2
    eig = torch.linalg.eigvalsh(hess).flip(0)
    out = {"eig": eig, "trace": torch.trace(hess), "asym": torch.tensor(asym)}
    print(f"  done in {time.perf_counter() - start:.0f} s (relative asymmetry {asym:.1e})")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, path)
    return out


# -- peak memory -------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss(result: dict):
    """Peak rise of the resident set inside the block, in bytes, into ``result['peak']``."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        result["peak"] = max(peak[0], _rss()) - base


def broadened(nodes, weights, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Σ_probes Σ_k w_k N(grid; node_k, σ²) averaged over probes (nodes, weights: lists)."""
    total = torch.zeros_like(grid)
    for lam, w in zip(nodes, weights, strict=True):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        w = torch.as_tensor(w, dtype=torch.float64)
        z = (grid[:, None] - lam[None]) / sigma
        total += (torch.exp(-0.5 * z**2) * w).sum(1) / (sigma * math.sqrt(2 * math.pi))
    return total / len(nodes)


def med(xs) -> float:
    return statistics.median(xs)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# -- the comparisons ---------------------------------------------------------------------------
def top_eigenvalues(pyh, model, batch, eig: torch.Tensor, k: int, repeats: int, label: str):
    exact = eig[:k].tolist()
    shown = ", ".join(f"{v:.5f}" for v in exact)
    print(
        f"\n({label}) top {k} eigenvalue(s) to relative error <= 1e-4 (exact: {shown}); each "
        f"side's loosest tolerance that reaches it on all of {repeats} seeds, then timed "
        "interleaved"
    )

    def error(values) -> float:
        return max(rel(v, e) for v, e in zip(sorted(values, reverse=True), exact, strict=True))

    def ours(tol, seed):  # stopped on the eigenvalue error bound (depthlab's default rule)
        out, sec, hvp = depthlab_run(
            model, batch, seed, estimators=["eigenvalues"], top_k=k, eig_tol=tol
        )
        return error(out["top_eigenvalues"]), sec, hvp

    def residual(tol, seed):  # stopped on the Ritz residual alone (the rule before eig_tol)
        out, sec, hvp = depthlab_run(
            model, batch, seed, estimators=["eigenvalues"], top_k=k, eig_tol=None, tol=tol
        )
        return error(out["top_eigenvalues"]), sec, hvp

    def theirs(tol, seed):
        max_iter = 100 if tol == 1e-3 else 1000  # its defaults: maxIter=100, tol=1e-3

        def call(h):
            return error(h.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)[0])

        return pyhessian_run(pyh, model, batch.x, batch.y, seed, call)

    sides = [
        ("depthlab Lanczos", ours, (1e-2, 1e-3, 1e-4, 1e-6)),
        ("depthlab residual", residual, (1e-2, 1e-3, 1e-4, 1e-6)),
    ]
    if pyh is not None:
        sides.append(("PyHessian power ", theirs, (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)))
    chosen = {}
    for name, run, ladder in sides:  # the search: errors only
        for tol in ladder:
            runs = [run(tol, seed) for seed in range(repeats)]
            err = max(r[0] for r in runs)
            hvp = med([r[2] for r in runs])
            print(f"  {name} tol={tol:.0e}: error {err:.1e} (worst), {hvp:4.0f} products")
            if err <= 1e-4:
                chosen[name] = tol
                break
    bound = "depthlab, eig_tol=1e-4"
    timed = {name: [] for name in [*chosen, bound]}
    for seed in range(repeats):  # the timing: interleaved, so that load drifts hit both
        for name, run, _ in sides:
            if name in chosen:
                timed[name].append(run(chosen[name], seed)[1:])
        timed[bound].append(ours(1e-4, seed)[1:])
    summary = {n: (med([r[0] for r in v]), med([r[1] for r in v])) for n, v in timed.items()}
    for name, (sec, hvp) in summary.items():
        tol = f"tol={chosen[name]:.0e}" if name in chosen else ""
        print(f"  {name:24s} {tol:9s}: {sec:6.3f} s, {hvp:4.0f} products")
    if {"depthlab residual", "depthlab Lanczos"} <= summary.keys():
        (r, nr), (a, na) = summary["depthlab residual"], summary["depthlab Lanczos"]
        print(f"  => eigenvalue bound vs residual rule: {r / a:.1f}x time, {nr / na:.1f}x products")
    if pyh is None:
        return
    if "depthlab Lanczos" not in chosen:
        print("  => depthlab did not reach 1e-4")
        return
    if "PyHessian power " not in chosen:
        print("  => PyHessian did not reach 1e-4 within maxIter=1000")
        return
    (a, na), (b, nb) = summary["depthlab Lanczos"], summary["PyHessian power "]
    print(
        f"  => speed ratio PyHessian/depthlab at <= 1e-4: {b / a:.1f}x wall time, "
        f"{nb / na:.1f}x products (target >= 3x); {b / summary[bound][0]:.1f}x wall time, "
        f"{nb / summary[bound][1]:.1f}x products against depthlab asked for eig_tol=1e-4 (its "
        "bound, not the loosest eig_tol that happened to reach 1e-4)"
    )


def trace(pyh, model, batch, exact: float, seeds: int) -> None:
    print(f"\n(b) trace over {seeds} seeds (exact trace = {exact:.4f})")
    budget = 100  # PyHessian's default maxIter; tol=0 makes it use them all

    def theirs(seed):
        def call(h):
            return statistics.fmean(h.trace(maxIter=budget, tol=0.0))

        return pyhessian_run(pyh, model, batch.x, batch.y, seed, call)

    def ours(seed, m):
        return depthlab_run(
            model, batch, seed, estimators=["trace"], trace_method="hutch++", trace_products=m
        )

    def default(seed):  # trace_method: auto
        return depthlab_run(model, batch, seed, estimators=["trace"])

    default(0)  # warm-up: the first per-sample Jacobian (vmap) pays one-time set-up
    m = budget
    if pyh is not None:  # calibrate: as many of our products as fit PyHessian's time
        for _ in range(2):
            their_sec = med([theirs(s)[1] for s in range(3)])
            ours_sec = med([ours(s, m)[1] for s in range(3)])
            m = max(6, 3 * round(m * their_sec / ours_sec / 3))
    rows = {"ours": [], "theirs": [], "default": []}
    for seed in range(seeds):
        rows["default"].append(default(seed))
        rows["ours"].append(ours(seed, m))
        if pyh is not None:
            rows["theirs"].append(theirs(seed))
    first = rows["default"][0][0]
    d_err = [rel(r[0]["trace"], exact) for r in rows["default"]]
    d_rms = math.sqrt(statistics.fmean(e * e for e in d_err))
    d_sec = med([r[1] for r in rows["default"]])
    print(
        f"  depthlab default     ({first['trace_method']}, {first['hvp_count']} products): "
        f"{d_sec:5.2f} s, RMS relative error {d_rms:.1e}"
        + (f" [{first['trace_note']}]" if first["trace_note"] else "")
    )
    err = [rel(r[0]["trace"], exact) for r in rows["ours"]]
    covered = sum(r[0]["trace_ci"][0] <= exact <= r[0]["trace_ci"][1] for r in rows["ours"])
    rms = math.sqrt(statistics.fmean(e * e for e in err))
    sec = med([r[1] for r in rows["ours"]])
    print(
        f"  depthlab Hutch++     {m:3d} products: {sec:5.2f} s, RMS relative error {rms:.4f}, "
        f"95% CI covered the exact trace {covered}/{seeds}"
    )
    if pyh is None:
        return
    their_err = [rel(r[0], exact) for r in rows["theirs"]]
    their_rms = math.sqrt(statistics.fmean(e * e for e in their_err))
    their_sec = med([r[1] for r in rows["theirs"]])
    print(
        f"  PyHessian Hutchinson {budget:3d} products: {their_sec:5.2f} s, "
        f"RMS relative error {their_rms:.4f}"
    )
    print(
        f"  => error ratio depthlab/PyHessian: default {d_rms / their_rms:.1e} at time ratio "
        f"{d_sec / their_sec:.2f}; Hutch++ {rms / their_rms:.2f} at time ratio "
        f"{sec / their_sec:.2f} (target <= 0.5 at equal time)"
    )


def density(pyh, model, batch, eig: torch.Tensor, steps: int, probes: int, repeats: int) -> None:
    print(f"\n(c) eigenvalue density, {probes} probe(s) x {steps} Lanczos steps, {repeats} seeds")
    lo, hi = float(eig[-1]), float(eig[0])
    sigma = 0.01 * (hi - lo)
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, 801, dtype=torch.float64)
    exact = broadened([eig], [torch.full_like(eig, 1 / len(eig))], grid, sigma)

    def l1(nodes, weights) -> float:
        return float(torch.trapezoid((broadened(nodes, weights, grid, sigma) - exact).abs(), grid))

    def ours(seed):
        out, sec, _ = depthlab_run(
            model, batch, seed, estimators=["density"], slq_probes=probes, slq_steps=steps
        )
        return out["density"]["nodes"], out["density"]["weights"], sec

    def theirs(seed):
        def call(h):
            return h.density(iter=steps, n_v=probes)

        with torch_eig_shim():
            (nodes, weights), sec, _ = pyhessian_run(pyh, model, batch.x, batch.y, seed, call)
        return nodes, weights, sec

    sides = {"depthlab": ours, "PyHessian": theirs} if pyh is not None else {"depthlab": ours}
    rows = {who: [] for who in sides}
    for seed in range(repeats):
        for who, run in sides.items():
            mem: dict = {}
            with peak_rss(mem):
                nodes, weights, sec = run(seed)
            rows[who].append((sec, mem["peak"] / 2**20, l1(nodes, weights)))
    summary = {who: [med([r[i] for r in runs]) for i in range(3)] for who, runs in rows.items()}
    for who, (sec, mib, dist) in summary.items():
        print(
            f"  {who:9s}: {sec:5.2f} s, peak RSS +{mib:6.1f} MiB, "
            f"L1 distance to the exact density {dist:.4f}"
        )
    if pyh is not None:
        (a, ma, _), (b, mb, _) = summary["depthlab"], summary["PyHessian"]
        print(
            f"  => time ratio depthlab/PyHessian {a / b:.2f} (target <= 1), "
            f"memory ratio {ma / max(mb, 1e-9):.2f}"
        )


def big_mlp(pyh, data, n_samples: int, repeats: int) -> None:
    model = build_model(MLP, in_shape=data.in_shape, out_dim=data.n_classes, seed=0)
    batch = ProbeBatch.from_tensors(data.x_train[:n_samples], data.y_train[:n_samples])
    n = sum(p.numel() for p in model.parameters())
    print(
        f"\n(d) MLP depth {MLP.depth} width {MLP.width}: {n:,} parameters, timings only "
        f"(median of {repeats}, interleaved)"
    )
    jobs = {
        "top eigenvalue": (
            dict(estimators=["eigenvalues"], top_k=1, tol=1e-3),
            lambda h: h.eigenvalues(maxIter=100, tol=1e-3)[0][0],
            "tol 1e-3 both",
        ),
        "trace": (
            dict(estimators=["trace"], trace_products=30),
            lambda h: h.trace(maxIter=30, tol=0.0),
            "30 products",
        ),
        "density": (
            dict(estimators=["density"], slq_probes=1, slq_steps=30),
            lambda h: h.density(iter=30, n_v=1),
            "1 x 30 steps",
        ),
    }
    for name, (params, call, what) in jobs.items():
        ours, theirs = [], []
        for seed in range(repeats):
            mem: dict = {}
            with peak_rss(mem):
                ours.append((*depthlab_run(model, batch, seed, **params)[1:], mem))
            if pyh is not None:
                mem = {}
                with peak_rss(mem), torch_eig_shim():
                    theirs.append(
                        (*pyhessian_run(pyh, model, batch.x, batch.y, seed, call)[1:], mem)
                    )
        sec, hvp = med([r[0] for r in ours]), med([r[1] for r in ours])
        mib = med([r[2]["peak"] for r in ours]) / 2**20
        line = f"  {name:14s} ({what}): depthlab {sec:6.2f} s, {hvp:3.0f} products, +{mib:4.0f} MiB"
        if pyh is not None:
            psec, phvp = med([r[0] for r in theirs]), med([r[1] for r in theirs])
            pmib = med([r[2]["peak"] for r in theirs]) / 2**20
            line += (
                f"; PyHessian {psec:6.2f} s, {phvp:3.0f} products, +{pmib:5.0f} MiB; "
                f"time ratio PyHessian/depthlab {psec / sec:.2f}"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/depthlab/bench")
    parser.add_argument("--train-epochs", type=int, default=10, help="0: at initialisation")
    parser.add_argument("--skip-mlp", action="store_true")
    parser.add_argument("--only", choices=("top", "trace"), help="(a) alone, or (b) alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pyh = import_pyhessian()
    if pyh is None:
        print(
            "PyHessian is not installed: printing depthlab's numbers only. To compare, run\n"
            "  .venv/bin/pip install --no-deps pyhessian"
        )

    data = load_data(DataSpec(name="mnist1d", val_fraction=0.0))
    batch = ProbeBatch.from_tensors(data.x_train[: args.samples], data.y_train[: args.samples])
    model = build_model(CNN, in_shape=data.in_shape, out_dim=data.n_classes, seed=0)
    if args.train_epochs:  # the reference recipe (Adam, batch 50, cosine), shortened
        spec = TrainSpec(
            optimizer="adam",
            lr=1e-2,
            epochs=args.train_epochs,
            batch_size=50,
            schedule="cosine",
            eval_every=0,
        )
        accuracy = fit(model, data, spec, progress=False).metrics["test_accuracy"]
        state = f"after {args.train_epochs} epochs (test accuracy {accuracy:.2f})"
    else:
        state = "at initialisation"
    n = sum(p.numel() for p in model.parameters())
    print(
        f"MNIST-1D CNN {state}, {n:,} parameters, {len(batch.y)} samples, {args.threads} thread(s)"
    )
    ref = reference(model, batch, args.cache)
    eig = ref["eig"]
    print(
        f"  exact spectrum: λ1..3 = {', '.join(f'{v:.5f}' for v in eig[:3])}, "
        f"λmin = {float(eig[-1]):.5f}, trace = {float(ref['trace']):.5f}"
    )
    # warm-up both (one-time imports and allocations are not what we compare)
    depthlab_run(model, batch, 0, top_k=1, trace_products=6, slq_probes=1, slq_steps=4)
    if pyh is not None:
        pyhessian_run(pyh, model, batch.x, batch.y, 0, lambda h: h.eigenvalues(maxIter=3))

    if args.only in (None, "top"):
        top_eigenvalues(pyh, model, batch, eig, 1, args.repeats, "a")
        top_eigenvalues(pyh, model, batch, eig, 5, args.repeats, "a, top 5")
    if args.only in (None, "trace"):
        trace(pyh, model, batch, float(ref["trace"]), args.seeds)
    if args.only is not None:
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
        return
    density(pyh, model, batch, eig, steps=100, probes=1, repeats=args.repeats)
    if not args.skip_mlp:
        big_mlp(pyh, data, args.samples, repeats=2)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
