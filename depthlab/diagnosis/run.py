"""Run the probes on a network and judge it: the engine behind ``depthlab diagnose``."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab._device import model_device
from depthlab.diagnosis.architecture import architecture
from depthlab.diagnosis.rules import domains, needs_stability
from depthlab.diagnosis.verdict import assess
from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes.base import MODE, ProbeBatch, attention_math, set_mode
from depthlab.probes.graph_kernels import is_graph_model
from depthlab.probes.layers import coverage
from depthlab.spec import TrainSpec

#: What the verdict rests on, at a few percent of the cost of training.
DEFAULT_PROBES = ("signal", "gradients", "correlation", "meanfield", "trial")
#: Added to the default probes for a graph network (a model holding ``edge_index``).
GRAPH_PROBES = ("smoothing", "homophily")
#: Every probe a diagnosis can run (``--probes all``): the verdict's and the costly spectra.
ALL_PROBES = (
    "signal",
    "gradients",
    "correlation",
    "jacobian",
    "meanfield",
    "trial",
    "ntk",
    "hessian",
    "weights",
    "collapse",
)


@dataclasses.dataclass(frozen=True)
class DiagnoseOptions:
    """``ntk_samples``: inputs of the empirical NTK; ``batch_size``: samples of the Hessian and
    gradient probes (the first N rows); ``seeds``: initialisations the signal probe averages
    over when the network can be rebuilt (specs and presets); ``train``: the training setup the
    verdict is for (optimizer, lr, batch size, budget), the trial's too — ``None`` assumes
    ``TrainSpec()`` (Adam, lr 1e-3, batch 64, 20 epochs) and the diagnosis says so;
    ``dropout``: measure with dropout on (off by default: see ``depthlab.probes.base``, the mode
    policy)."""

    probes: tuple[str, ...] = DEFAULT_PROBES
    ntk_samples: int = 128
    batch_size: int = 256
    seed: int = 0
    seeds: int = 3
    train: TrainSpec | None = None
    dropout: bool = False

    def __post_init__(self) -> None:
        for name in self.probes:
            reg.PROBES.get(name, field="probes")
        for field in ("ntk_samples", "batch_size", "seeds"):
            if getattr(self, field) < 1:
                raise SpecError(field, f"{getattr(self, field)!r} is not valid; expected >= 1")


def check_input(model: nn.Module, batch: ProbeBatch) -> None:
    """One forward pass on two samples: a wrong input shape is one clear line, not a trace."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), attention_math():
            out = model(batch.x[:2])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ProbeError(
            f"the model rejects inputs of shape {tuple(batch.x.shape[1:])} "
            f"(per sample): {one_line(exc)}"
        ) from None
    finally:
        for m, training in modes:
            m.training = training
    if not isinstance(out, torch.Tensor):
        hint = (
            " (it has .logits: wrap the model so that forward returns model(x).logits, as "
            "examples/diagnose_transformers.py does)"
            if hasattr(out, "logits")
            else ""
        )
        raise ProbeError(f"the model returns {type(out).__name__}; probes need a tensor{hint}")
    if batch.task == "classification" and (out.dim() != 2 or out.shape[1] <= int(batch.y.max())):
        raise ProbeError(
            f"the model's output shape {tuple(out.shape[1:])} does not fit "
            f"{int(batch.y.max()) + 1} classes in y"
        )


def _params_for(name: str, options: DiagnoseOptions) -> Any:
    cls = reg.PROBES.get(name, field="probes")
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    wanted = {
        "samples": options.ntk_samples if name == "ntk" else None,
        "batch_size": options.batch_size,
    }
    params = cls.Params.from_dict({k: v for k, v in wanted.items() if k in fields and v})
    if "train" in fields:
        params = dataclasses.replace(params, train=options.train or TrainSpec())
    return params


def diagnose_run(
    spec: Any,
    probes: tuple[str, ...] = DEFAULT_PROBES,
    *,
    source: tuple[ProbeBatch, tuple[int, ...], int, torch.Tensor | None] | None = None,
) -> tuple[dict[str, Any], nn.Module, ProbeBatch]:
    """A run spec's network at initialisation, diagnosed for the run's own training setup (one
    seed, no progress display); also the network and the batch. ``source`` is the data as
    ``depthlab.diagnosis.sources.dataset_source`` gives it for ``spec.data``, when already
    loaded. The network is built on the host and diagnosed on ``spec.train.device``."""
    from depthlab._device import resolve_device
    from depthlab.diagnosis.sources import dataset_source
    from depthlab.models import build_model
    from depthlab.train.techniques import apply_at_init

    device = resolve_device(spec.train.device)
    batch, in_shape, out_dim, graph = source or dataset_source(spec.data, spec.train.loss)
    model = build_model(
        spec.arch, in_shape=in_shape, out_dim=out_dim, seed=spec.train.seed, graph=graph
    )
    apply_at_init(model, spec.train, batch.x, batch.y, batch.loss_fn)  # pruning at init
    model.to(device)  # built and pruned on the host, diagnosed where it will train
    options = DiagnoseOptions(probes=probes, seed=spec.train.seed, seeds=1, train=spec.train)
    result = diagnose(model, batch, options, name=spec.name or "run", progress=False)
    return result, model, batch


def training_setup(options: DiagnoseOptions, n_samples: int) -> dict[str, Any]:
    """The setup the verdict is for, as stated in the diagnosis."""
    from depthlab.probes.trial import budget_steps

    train = options.train or TrainSpec()
    per_epoch = budget_steps(dataclasses.replace(train, epochs=1), n_samples)
    return {
        "optimizer": train.optimizer,
        "lr": train.lr,
        "momentum": train.momentum,
        "batch_size": train.batch_size,
        "epochs": train.epochs,
        "budget_steps": budget_steps(train, n_samples),
        "warmup_steps": math.ceil(train.warmup_epochs * per_epoch),
        "assumed": options.train is None,
    }


def diagnose(
    model: nn.Module,
    batch: ProbeBatch,
    options: DiagnoseOptions | None = None,
    *,
    name: str = "model",
    rebuild: Callable[[int], nn.Module] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Every requested probe on ``model``, and the verdict.

    Each probe runs in its own guard: one that does not apply (``ProbeError``) is listed under
    ``skipped`` with its reason, one that raises anything else under ``failed`` with the error
    in one line; the others still run and the verdict uses what ran. ``probes`` holds every
    requested probe's status (``ok``, ``skipped`` with ``reason``, ``failed`` with ``error``).
    ``rebuild(seed)``, when given, makes the same network at another seed so the signal probe
    can average over initialisations. A graph network diagnosed with the default probes also
    gets ``GRAPH_PROBES``.

    Besides the probes' results: ``mode`` (the mode policy the probes used), ``coverage`` (the
    layers the layer-based probes see and the share of parameters they hold) and
    ``architecture`` (``depthlab.diagnosis.architecture``).
    """
    options = options or DiagnoseOptions()
    if options.probes == DEFAULT_PROBES and is_graph_model(model):
        # a graph network's own verdicts (oversmoothing, heterophily) need its own probes
        options = dataclasses.replace(options, probes=(*DEFAULT_PROBES, *GRAPH_PROBES))
    started = time.perf_counter()
    batch = batch.to(model_device(model))  # the probes run where the model lives
    check_input(model, batch)
    out: dict[str, Any] = {
        "name": name,
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_samples": len(batch.x),
        "task": batch.task,
        "mode": {**MODE, "dropout": "on" if options.dropout else "off"},
        "coverage": coverage(model),
        "architecture": _architecture(model, batch),
    }
    sparse = _sparsity(model, batch)  # masks from pruning (depthlab.train.techniques.masks)
    if sparse is not None:
        out["sparsity"] = sparse
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    status: dict[str, dict[str, str]] = {}
    seconds: dict[str, float] = {}
    with _progress(progress, len(options.probes), name) as advance:
        for probe_name in options.probes:
            start = time.perf_counter()
            try:
                probe = reg.PROBES.get(probe_name)(_params_for(probe_name, options))
                if probe_name == "collapse" and batch.task != "classification":
                    raise ProbeError("neural collapse applies to classifiers only")
                result = probe.run(model, batch, seed=options.seed, dropout=options.dropout)
                if probe_name == "signal" and rebuild is not None and options.seeds > 1:
                    result["seeds"] = _signal_over_seeds(
                        probe, model, result, rebuild, batch, options
                    )
                out[probe_name] = result
                status[probe_name] = {"status": "ok"}
            except ProbeError as err:
                skipped[probe_name] = str(err)
                status[probe_name] = {"status": "skipped", "reason": str(err)}
            except Exception as exc:  # noqa: BLE001 - one probe's failure is that probe's only
                failed[probe_name] = one_line(exc)
                status[probe_name] = {"status": "failed", "error": failed[probe_name]}
            seconds[probe_name] = time.perf_counter() - start
            advance(probe_name)
    setup = training_setup(options, len(batch.x))
    trigger = needs_stability(out, setup)
    if trigger:
        try:
            out["stability"] = {
                **stability(model, batch, setup, seed=options.seed),
                "trigger": trigger,
            }
        except ProbeError as err:
            skipped["stability"] = str(err)
        except Exception as exc:  # noqa: BLE001 - the verdict goes on without it
            failed["stability"] = one_line(exc)
    assessment = assess(out, setup)
    return {
        "verdict": assessment.verdict,
        "p_trains": assessment.p_trains,
        "predicted_progress": assessment.predicted_progress,
        "progress_interval": assessment.progress_interval,
        "decided_by": assessment.decided_by,
        "findings": [f.to_dict() for f in assessment.findings],
        "setup": setup,
        "evidence": assessment.contributions,
        "rules": domains(out, setup),
        **out,
        "probes": status,
        "skipped": skipped,
        "failed": failed,
        "seconds": seconds,
        "seconds_total": time.perf_counter() - started,
    }


def _sparsity(model: nn.Module, batch: ProbeBatch) -> dict[str, Any] | None:
    """The masked layers' kept fractions and whether the input still reaches the output."""
    from depthlab.probes.base import preserved
    from depthlab.train.techniques.masks import sparsity_summary

    with preserved(model), torch.no_grad(), attention_math():
        return sparsity_summary(model, batch.x[:64])


def _needs_stability(out: dict[str, Any], setup: dict[str, Any]) -> bool:
    """The edge of stability is worked out for an SGD-family setup whose trial diverged,
    spiked or started far above the constant predictor (``rules.needs_stability``)."""
    return needs_stability(out, setup) is not None


def stability(
    model: nn.Module, batch: ProbeBatch, setup: dict[str, Any], *, seed: int = 0
) -> dict[str, Any]:
    """λ_max of the loss Hessian at init (Lanczos to 1 %) and the largest stable SGD step
    2(1 + β)/λ_max (Cohen et al. 2021), β the momentum (0 for plain SGD)."""
    from depthlab.probes.hessian import HessianParams, HessianProbe

    params = HessianParams(
        batch_size=min(256, len(batch.x)),
        estimators=("eigenvalues",),
        top_k=1,
        eig_tol=1e-2,
        max_steps=30,
    )
    top = HessianProbe(params).run(model, batch, seed=seed)["top_eigenvalues"][0]
    beta = float(setup.get("momentum", 0.0)) if setup["optimizer"] == "momentum" else 0.0
    limit = 2 * (1 + beta) / top if top > 0 else math.inf
    return {"lambda_max": top, "momentum": beta, "stable_lr": limit}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, ProbeError):
        line = text or line
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _architecture(model: nn.Module, batch: ProbeBatch) -> dict[str, Any]:
    """The architecture summary on two samples, in the probes' mode; state left as found."""
    from depthlab.probes.base import preserved

    with preserved(model), attention_math():
        set_mode(model, dropout=False)
        return architecture(model, batch.x[:2])


def _signal_over_seeds(
    probe: Any,
    model: nn.Module,
    measured: dict[str, Any],
    rebuild: Callable[[int], nn.Module],
    batch: ProbeBatch,
    options: DiagnoseOptions,
) -> dict[str, Any]:
    """The signal probe's ratio at seeds ``seed … seed + seeds − 1``; ``measured`` is its result
    on ``model`` at ``seed``, reused when ``rebuild(seed)`` is that same network."""
    ratios = []
    for k in range(options.seeds):
        net = rebuild(options.seed + k)
        if k == 0 and _same_network(net, model):
            ratios.append(measured["second_moment_ratio"])
        else:
            run = probe.run(net, batch, seed=options.seed + k, dropout=options.dropout)
            ratios.append(run["second_moment_ratio"])
    logs = [math.log10(r) for r in ratios if 0 < r < math.inf]
    return {
        "second_moment_ratio": ratios,
        "geometric_mean": 10 ** (sum(logs) / len(logs)) if logs else None,
    }


def _same_network(a: nn.Module, b: nn.Module) -> bool:
    """Same class, mode and bit-identical parameters and buffers (so the same measurement)."""
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    modes_a, modes_b = [m.training for m in a.modules()], [m.training for m in b.modules()]
    return (
        modes_a == modes_b
        and sa.keys() == sb.keys()
        and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)
    )


@contextlib.contextmanager
def _progress(show: bool | None, total: int, name: str) -> Iterator[Callable[[str], None]]:
    if not (sys.stderr.isatty() if show is None else show):
        yield lambda probe: None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn(f"[bold]diagnose {escape(name)}"),
        BarColumn(),
        TextColumn("{task.description}"),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("", total=total)
        yield lambda probe: bar.update(task, advance=1, description=probe)
