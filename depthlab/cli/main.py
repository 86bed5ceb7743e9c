"""The ``depthlab`` command: thin subcommands over the public API.

Every user error prints one line on stderr and exits non-zero; see ``EXIT_CODES_DOC``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from depthlab.cli.errors import (
    EXIT_CODES_DOC,
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    fail,
)

app = typer.Typer(
    name="depthlab",
    help="Will this network train, why not, and how far from optimal is it?\n\n" + EXIT_CODES_DOC,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(show: bool) -> None:
    if show:
        import depthlab

        print(f"depthlab {depthlab.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Will this network train, why not, and how far from optimal is it?"""


KINDS = (
    "archs",
    "datasets",
    "activations",
    "inits",
    "norms",
    "techniques",
    "probes",
    "presets",
    "claims",
)


THREADS_HELP = (
    "Intra-op threads for torch (0: torch's default). Small networks train about as fast on "
    "one thread, and one thread never fights other processes for the cores."
)


def set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


DEVICE_HELP = (
    "Where to run: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps. "
    "Default: the run file's train.device (auto); a --model factory's network stays on the "
    "device it was built on."
)


def _device_option(device: str | None) -> str | None:
    """``--device`` checked against this machine: one clear line when it cannot be used."""
    if device is None:
        return None
    from depthlab._device import resolve_device

    resolve_device(device)
    return device


PROBES_HELP = (
    "Comma-separated probes, or 'all' (default: the verdict's own: signal, gradients, "
    "correlation, meanfield, trial)."
)


GRAPH_PROBES = ("smoothing", "homophily")  # added to the defaults for a graph network


def _probe_names(probes: str | None) -> tuple[str, ...]:
    """``--probes a,b``: the names given (blanks dropped); ``all``: every probe; no option: the
    default probes."""
    from depthlab.diagnosis import ALL_PROBES, DEFAULT_PROBES

    if probes is not None and probes.strip() == "all":
        return ALL_PROBES
    return tuple(p.strip() for p in probes.split(",") if p.strip()) if probes else DEFAULT_PROBES


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="Run file (YAML): arch, data, train.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Write result.json, spec.yaml, history.csv and loss.png here."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the result JSON here.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or table.")] = False,
    threads: Annotated[int, typer.Option(min=0, help=THREADS_HELP)] = 0,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    watch: Annotated[
        bool,
        typer.Option(
            help="Judge the run on its own first steps; stop it (STOPPED) if it won't train."
        ),
    ] = False,
    tensorboard: Annotated[
        Path | None, typer.Option(help="Write TensorBoard event files (curves, hparams) here.")
    ] = None,
) -> None:
    """Train the network a run file describes. Exit 0 complete (or stopped by --watch),
    3 diverged, 4 failed."""
    from depthlab.cli.output import write_json, write_run_dir
    from depthlab.cli.tables import print_results
    from depthlab.spec import RunSpec
    from depthlab.train import RunState, run

    set_threads(threads)
    run_spec = RunSpec.load(spec)
    if _device_option(device) is not None:
        run_spec = run_spec.replace(train=run_spec.train.replace(device=device))
    watcher = _watcher(watch, out)
    callbacks = [watcher] if watcher is not None else []
    loggers = []
    if tensorboard is not None:
        from depthlab.loggers import TensorBoard

        loggers.append(TensorBoard(tensorboard))
    result = run(
        run_spec,
        callbacks=callbacks,
        progress=None if not quiet else False,
        loggers=loggers,
    )
    payload = result.to_dict()
    if watcher is not None:
        payload["watch"] = watcher.summary()
    if json_path is not None:
        write_json(json_path, payload)
    if out is not None:
        write_run_dir(out, result)
        if watcher is not None and watcher.monitor is not None:
            watcher.monitor.report(out / "watch")
    if not quiet:
        print_results([result])
    if result.state is RunState.STOPPED:
        print(f"depthlab: run stopped: {result.error}", file=sys.stderr)
    if result.state is RunState.DIVERGED:
        print(f"depthlab: run diverged: {result.error}", file=sys.stderr)
        raise SystemExit(EXIT_DIVERGED)
    if result.state is RunState.FAILED:
        raise SystemExit(EXIT_FAILED)


def _watcher(watch: bool, out: Path | None) -> Any:
    """``--watch``: the callback that judges the run (per-layer statistics when ``--out``)."""
    if not watch:
        return None
    from depthlab.watch.fit import WatchCallback

    return WatchCallback(every=100 if out is not None else 0)


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(KINDS)}.")] = None,
) -> None:
    """List the registered components (all kinds, or one)."""
    from depthlab.cli.tables import print_registry

    if kind is not None and kind not in KINDS:
        fail(f"unknown kind {kind!r}; choices: {', '.join(KINDS)}")
    print_registry(kind)


@app.command()
def demo(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per network.")] = 10,
    depth: Annotated[int, typer.Option(min=0, help="Hidden layers.")] = 32,
    width: Annotated[int, typer.Option(min=1, help="Units per hidden layer.")] = 128,
    out: Annotated[Path, typer.Option(help="Write the report and each run's results here.")] = Path(
        "demo-out"
    ),
    probes: Annotated[str | None, typer.Option(help=PROBES_HELP)] = None,
    threads: Annotated[int, typer.Option(min=0, help=THREADS_HELP)] = 1,
) -> None:
    """Diagnose one deep MLP on MNIST-1D under four activation/init pairs, then train them:
    the verdict at initialisation beside what training made of each."""
    from depthlab.cli.output import write_json, write_run_dir
    from depthlab.cli.tables import print_diagnoses, print_predictions, print_results
    from depthlab.data import load_data
    from depthlab.diagnosis import DiagnoseOptions
    from depthlab.diagnosis import diagnose as run_diagnosis
    from depthlab.diagnosis.calibration import chance_accuracy, label, progress
    from depthlab.diagnosis.sources import dataset_batch, spec_subjects
    from depthlab.presets import deep_mlp_mnist1d, shallow_reference
    from depthlab.report import write_report
    from depthlab.train import run

    set_threads(threads)
    specs = deep_mlp_mnist1d(depth=depth, width=width, epochs=epochs)
    options = DiagnoseOptions(probes=_probe_names(probes))
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(
        f"Diagnosing a depth-{depth}, width-{width} MLP on MNIST-1D under {len(specs)} "
        f"activation/init pairs, then training each for {epochs} epochs."
    )
    batch, in_shape, out_dim = dataset_batch(specs[0].data)
    diagnoses, results = [], []
    for spec, subject in zip(specs, spec_subjects(specs, in_shape, out_dim), strict=True):
        say(f"  {spec.name}: diagnose ...")
        opts = dataclasses.replace(options, train=spec.train)
        diagnosis = run_diagnosis(
            subject.model, batch, opts, name=spec.name, rebuild=subject.rebuild
        )
        say(
            f"  {spec.name}: {diagnosis['verdict']} (P(trains) = {diagnosis['p_trains']:.2f}, "
            f"{diagnosis['seconds_total']:.1f} s); train ..."
        )
        result = run(spec)
        diagnosis["training"] = {"state": result.state.value, "epochs": epochs, **result.metrics}
        diagnoses.append(diagnosis)
        results.append(result)
        write_run_dir(out / spec.name, result)
    # "trained" = at least halfway from chance to a shallow net under the same setup
    reference_spec = shallow_reference(specs[0])
    say(f"  {reference_spec.name}: train (the reference) ...")
    reference = run(reference_spec)
    results.append(reference)
    chance = chance_accuracy(load_data(specs[0].data).y_test)
    ref_acc = reference.metrics.get("test_accuracy", math.nan)
    for d in diagnoses:
        acc = d["training"].get("test_accuracy", math.nan)
        done = d["training"]["state"] == "COMPLETE" and ref_acc > chance
        prog = progress(acc, chance, ref_acc) if done else None
        trained = label(prog) if done else (False if d["training"]["state"] != "COMPLETE" else None)
        d["training"].update(progress=prog, trained=trained, reference_accuracy=ref_acc)
    write_json(out / "diagnosis.json", {"networks": diagnoses})
    page = write_report(diagnoses, out, title=f"depthlab demo: depth-{depth} MLPs on MNIST-1D")
    print_diagnoses(diagnoses)
    print_results(results)
    print_predictions(diagnoses, chance, ref_acc)
    say(f"report: {page}")


@app.command()
def diagnose(
    preset: Annotated[
        str | None, typer.Option(help="A preset family of networks (depthlab list presets).")
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="A run file (YAML).")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="FILE.py:FACTORY, a function returning an nn.Module, diagnosed as it comes."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="A dataset name, or FILE.npz with x and y (used exactly as given)."),
    ] = None,
    probes: Annotated[str | None, typer.Option(help=PROBES_HELP)] = None,
    ntk_samples: Annotated[int, typer.Option(min=1, help="Inputs of the empirical NTK.")] = 128,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Samples of the Hessian and gradients (the first N).")
    ] = 256,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    seeds: Annotated[
        int,
        typer.Option(
            min=1, help="Initialisations the signal probe averages over (presets and specs)."
        ),
    ] = 3,
    loss: Annotated[str, typer.Option(help="auto | cross_entropy | mse.")] = "auto",
    optimizer: Annotated[
        str | None,
        typer.Option(help="The training setup judged: sgd | momentum | adam | adamw."),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Its learning rate.")] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1, help="Its budget in optimizer steps (rounded to whole epochs; batch 64)."
        ),
    ] = None,
    advise: Annotated[
        Path | None,
        typer.Option(help="With --spec: write the advised run file here (a checked fix)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write PNG plots, index.html and diagnosis.json here.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the diagnosis JSON here.")
    ] = None,
    threads: Annotated[int, typer.Option(min=0, help=THREADS_HELP)] = 1,
    dropout: Annotated[
        bool, typer.Option(help="Measure with dropout on (off by default: the mode policy).")
    ] = False,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
) -> None:
    """Will this network train? Probes, a verdict with evidence and advice, plots."""
    from depthlab._device import place
    from depthlab.cli.output import write_json
    from depthlab.cli.tables import print_diagnoses
    from depthlab.diagnosis import DiagnoseOptions
    from depthlab.diagnosis import diagnose as run_diagnosis
    from depthlab.diagnosis.sources import (
        Subject,
        dataset_batch,
        dataset_source,
        load_factory,
        npz_batch,
        spec_subjects,
    )
    from depthlab.exceptions import DepthlabError
    from depthlab.presets import preset as load_preset
    from depthlab.spec import DataSpec, RunSpec

    set_threads(threads)
    device = _device_option(device)
    sources = [s for s in (preset, spec, model) if s is not None]
    if len(sources) != 1:
        fail("give exactly one of --preset NAME, --spec RUN.yaml, --model FILE.py:FACTORY")
    if loss not in ("auto", "cross_entropy", "mse"):
        fail(f"unknown loss {loss!r}; choices: auto, cross_entropy, mse")
    names = _probe_names(probes)
    options = DiagnoseOptions(
        probes=names,
        ntk_samples=ntk_samples,
        batch_size=batch_size,
        seed=seed,
        seeds=seeds,
        dropout=dropout,
    )
    if advise is not None and spec is None:
        fail("--advise needs --spec RUN.yaml (the advice is an edit of that run file)")
    if model is not None:
        if data is None:
            fail("--model needs --data NAME or --data FILE.npz")
        net = load_factory(model)
        place(net, device)  # None: where the factory built it
        batch = (
            npz_batch(data, loss)
            if data.endswith(".npz")
            else dataset_batch(DataSpec(name=data, seed=seed), loss)[0]
        )
        subjects = [Subject(model.rpartition(":")[2], net)]
    else:
        specs = load_preset(preset) if preset is not None else [RunSpec.load(spec)]
        if data is not None and data.endswith(".npz"):
            batch = npz_batch(data, loss)
            in_shape = tuple(batch.x.shape[1:])
            out_dim = (
                int(batch.y.max()) + 1
                if batch.task == "classification"
                else (batch.y.shape[1] if batch.y.dim() > 1 else 1)
            )
            graph = None
        else:
            data_spec = specs[0].data if data is None else DataSpec(name=data, seed=seed)
            # the run file's own loss unless --loss says otherwise
            run_loss = specs[0].train.loss if loss == "auto" else loss
            batch, in_shape, out_dim, graph = dataset_source(data_spec, run_loss)
        subjects = spec_subjects(specs, in_shape, out_dim, graph, batch=batch, device=device)
        if graph is not None and (probes is None or probes.strip() == "all"):
            options = dataclasses.replace(options, probes=(*names, *GRAPH_PROBES))
    results = []
    for s in subjects:
        setup = _train_setup(s.spec.train if s.spec else None, optimizer, lr, steps, len(batch.x))
        opts = dataclasses.replace(options, train=setup)
        results.append(run_diagnosis(s.model, batch, opts, name=s.name, rebuild=s.rebuild))
    if advise is not None:
        try:
            source = (batch, in_shape, out_dim, graph)  # --advise comes with --spec
            _write_advice(subjects[0].spec, results[0], source, options.probes, advise)
        except DepthlabError as err:  # the diagnosis itself is still written below
            results[0]["fix"] = {"error": str(err)}
            print(f"depthlab: no advice written: {err}", file=sys.stderr)
    payload = results[0] if len(results) == 1 else {"networks": results}
    if json_path is not None:
        write_json(json_path, payload)
    if out is not None:
        from depthlab.report import write_report

        write_json(out / "diagnosis.json", payload)
        page = write_report(results, out)
        print(f"report: {page}", file=sys.stderr)
    print_diagnoses(results)
    failed = [f"{r['name']}: {p}" for r in results for p in r.get("failed", {})]
    if failed:
        # The diagnosis is written with what ran; the exit code says it is incomplete.
        fail(f"{len(failed)} probe(s) failed ({', '.join(failed)})", EXIT_FAILED)


def _train_setup(
    train: Any, optimizer: str | None, lr: float | None, steps: int | None, n: int
) -> Any:
    """The run file's train spec with --optimizer/--lr/--steps applied; ``None`` (the assumed
    default) when neither gives one."""
    from depthlab.spec import TrainSpec

    if train is None and optimizer is None and lr is None and steps is None:
        return None
    base = train if isinstance(train, TrainSpec) else TrainSpec()
    changes: dict[str, object] = {}
    if optimizer is not None:
        changes["optimizer"] = optimizer
    if lr is not None:
        changes["lr"] = lr
    if steps is not None:
        per_epoch = math.ceil(n / (n if base.batch_size == 0 else min(base.batch_size, n)))
        changes["epochs"] = max(1, round(steps / per_epoch))
    data = {**base.to_dict(), **changes}
    return TrainSpec.from_dict(data)


def _write_advice(
    spec: Any, diagnosis: dict, source: tuple, probes: tuple[str, ...], path: Path
) -> None:
    """Diagnose the candidate fixes of a "won't train" verdict on the run file's data (``source``,
    as ``dataset_source`` gave it) with the same probes; write the first that trains."""
    from depthlab.diagnosis.advice import advise as find_fix
    from depthlab.diagnosis.run import diagnose_run
    from depthlab.exceptions import DepthlabError

    if diagnosis["verdict"] == "trainable":
        path.write_text(spec.to_yaml())
        print(
            f"advice: the run is predicted to train; {path} is the run file as given",
            file=sys.stderr,
        )
        return

    def check(fixed: Any) -> dict:
        return diagnose_run(fixed, probes, source=source)[0]

    stable_lr = (diagnosis.get("stability") or {}).get("stable_lr")
    fix = find_fix(spec, diagnosis["verdict"], check, stable_lr=stable_lr)
    if fix is None:
        raise DepthlabError(f"no fix applies to {diagnosis['verdict']!r} for this run file")
    path.write_text(fix["spec"].to_yaml())
    edit = ", ".join(f"{k}: {v}" for k, v in fix["edit"].items())
    how = "checked" if fix["checked"] else "best found, not predicted to train"
    diagnosis["fix"] = {k: v for k, v in fix.items() if k != "spec"}
    print(f"advice ({how}, P(trains) = {fix['p_trains']:.2f}): {edit} -> {path}", file=sys.stderr)


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep file (YAML): base, axes, seeds.")],
    store: Annotated[Path, typer.Option(help="The run store (SQLite file; created if missing).")],
    workers: Annotated[
        int, typer.Option(min=0, help="Runs at a time (0: one per core, or the Ray cluster's).")
    ] = 0,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto or HOST:PORT); ray only.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Run FAILED and DIVERGED runs again (COMPLETE ones never).")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
    device: Annotated[
        str | None,
        typer.Option(
            help="Where every run trains (auto, cpu, cuda, cuda:N, mps); default: the sweep "
            "file's base train.device. Not part of a run's identity: a resumed sweep on "
            "another device does not redo finished runs."
        ),
    ] = None,
    tensorboard: Annotated[
        Path | None,
        typer.Option(help="Write each run's TensorBoard event files to DIR/<run name>."),
    ] = None,
) -> None:
    """Run every run of a sweep not yet finished in the store; run it again to resume.

    COMPLETE runs are never redone, runs left RUNNING by a stopped sweep are redone, and new
    axis values or seeds add runs. Exit 0 when every run finished (COMPLETE, DIVERGED, or
    STOPPED by `watch: true`),
    4 if any run FAILED (its error is in `depthlab runs --state FAILED`)."""
    from depthlab.store.sqlite import SQLiteStore
    from depthlab.sweep import SweepSpec, run_sweep
    from depthlab.sweep.executors import make

    # make() rejects an unknown executor name, as one line, before the sweep file is read.
    runner = make(executor, workers or None, address)
    spec = SweepSpec.load(sweep_file)
    if device is not None:
        if executor == "local":
            _device_option(device)  # Ray workers check it on their own machines
        base = spec.base
        spec = spec.replace(base=base.replace(train=base.train.replace(device=device)))
    on_finished = None
    if tensorboard is not None:
        from depthlab._optional import require
        from depthlab.sweep.tensorboard import write_run

        require("tensorboard", "--tensorboard")
        on_finished = lambda record: write_run(record, tensorboard, list(spec.axes))  # noqa: E731
    runner.start()  # an executor that cannot start fails before the store is created
    try:
        with SQLiteStore(store) as runs_db:
            try:
                summary = run_sweep(
                    spec,
                    runs_db,
                    runner,
                    retry_failed=retry_failed,
                    progress=not quiet,
                    on_finished=on_finished,
                )
                if tensorboard is not None:  # runs finished by an earlier, resumed invocation
                    from depthlab.sweep import sweep_records
                    from depthlab.sweep.tensorboard import export_runs

                    export_runs(
                        sweep_records(runs_db, spec),
                        tensorboard,
                        list(spec.axes),
                        missing_only=True,
                    )
            except KeyboardInterrupt:
                done = sum(1 for r in runs_db.runs() if r.is_terminal)
                fail(
                    f"sweep interrupted; {done} finished run(s) are in {store}; "
                    "run the same command again to resume",
                    130,
                )
    finally:
        runner.close()
    counts = {s.value.lower(): n for s, n in summary.counts.items() if n}
    print(
        f"sweep: {summary.planned} planned, {summary.executed} run now, "
        f"{summary.skipped} already finished, {summary.redone} redone after a stop; "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; {summary.seconds:.1f} s; store: {store}",
        file=sys.stderr,
    )
    from depthlab.train import RunState

    if summary.counts[RunState.FAILED]:
        raise SystemExit(EXIT_FAILED)


def _open_existing_store(path: Path):  # type: ignore[no-untyped-def]
    from depthlab.store.sqlite import SQLiteStore

    if not path.is_file():
        fail(f"no run store at {str(path)!r} (depthlab sweep SWEEP.yaml --store FILE makes one)")
    return SQLiteStore(path)


from depthlab.cli.runs import runs  # noqa: E402

app.command()(runs)


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="The run store (SQLite file).")],
    out: Annotated[Path, typer.Option(help="Write index.html and its PNG files here.")],
    metric: Annotated[
        str | None,
        typer.Option(help="Metric of the phase diagram (default: test_accuracy or train_loss)."),
    ] = None,
) -> None:
    """A static HTML report of a sweep: phase diagrams, best configurations, loss curves."""
    from depthlab.report import write_sweep_report

    with _open_existing_store(store) as runs_db:
        records = runs_db.runs()
    page = write_sweep_report(records, out, title=f"depthlab sweep: {store.name}", metric=metric)
    print(f"report: {page}", file=sys.stderr)


@app.command()
def claims(
    docs: Annotated[
        Path | None,
        typer.Option(help="Write one Markdown page per claim (and an index) to this directory."),
    ] = None,
) -> None:
    """List the published claims depthlab re-runs: name, source, statement."""
    from depthlab.cli.tables import print_claims

    if docs is not None:
        from depthlab.claims.docs import write_docs

        pages = write_docs(docs)
        print(f"wrote {len(pages)} pages to {docs}", file=sys.stderr)
        return
    print_claims()


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(help="A claim (depthlab claims).")],
    quick: Annotated[bool, typer.Option(help="The quick mode (<= 90 s on 2 cores).")] = False,
    seed: Annotated[int, typer.Option(help="First seed of the experiment.")] = 0,
    control: Annotated[
        bool,
        typer.Option(help="Run the negative control instead: it should come out not held."),
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the result JSON here.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Save the plot (NAME.png) here.")] = None,
    threads: Annotated[int, typer.Option(min=0, help=THREADS_HELP)] = 1,
) -> None:
    """Re-run a claim; print measured against expected. Exit 0 only if the claim held."""
    from depthlab.claims import get_claim
    from depthlab.claims import reproduce as run_claim
    from depthlab.claims.base import stderr_progress
    from depthlab.cli.errors import EXIT_NOT_REPRODUCED
    from depthlab.cli.output import write_json
    from depthlab.cli.tables import print_claim_result

    get_claim(name)  # an unknown name fails here, before any work
    set_threads(threads)
    result = run_claim(
        name, quick=quick, seed=seed, control=control, out=out, progress=stderr_progress(name)
    )
    if json_path is not None:
        write_json(json_path, result.to_dict())
    print_claim_result(result)
    if not result.passed:
        raise SystemExit(EXIT_NOT_REPRODUCED)


from depthlab.cli.convex import app as convex_app  # noqa: E402

app.add_typer(convex_app, name="convex")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every error into one line and an exit code."""
    from depthlab.exceptions import DepthlabError

    try:
        # Typer reports usage errors (unknown option, missing argument) itself, exit code 2.
        app(args=argv, prog_name="depthlab")
    except DepthlabError as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence: no traceback
        from depthlab._optional import missing_extra

        if isinstance(err, ImportError) and (missing := missing_extra(err, "this command")):
            fail(str(missing))  # an optional package (torch_geometric, ...) is not installed
        if os.environ.get("DEPTHLAB_DEBUG"):
            traceback.print_exc()
        fail(
            f"internal error: {type(err).__name__}: {err} (set DEPTHLAB_DEBUG=1 for the traceback)",
            EXIT_INTERNAL,
        )


if __name__ == "__main__":
    main()
