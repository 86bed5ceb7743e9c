"""One run of a sweep, as a worker executes it: train (and optionally diagnose) a spec.

:func:`execute` takes and returns plain data (a spec dict in, an outcome dict out), so any
executor can ship it to another process or machine. It never raises for a run's own failure: an
exception inside the run becomes a FAILED outcome with its error text, a NaN loss a DIVERGED one.
The driver turns the outcome into the stored record; workers never touch the store.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["execute"]

#: The probe a sweep runs on the trained network (the convex gap), not at initialisation.
OPTIMALITY = "optimality"
#: Not a probe: the run is watched (``depthlab.watch.fit``) and stopped if it won't train.
WATCH = "watch"


def execute(
    spec: dict[str, Any], *, probes: Sequence[str] = (), threads: int = 1
) -> dict[str, Any]:
    """Run ``spec``; return ``{state, metrics, history, probes, error, seconds, host}``.

    ``probes`` lists diagnose probes run on the freshly initialised network before training;
    their summary is stored under ``probes["diagnose"]``. ``optimality`` among them is a
    property of a *trained* network, so it is not run at initialisation: for a two-layer mlp
    (depth 1) the run file's network is trained on the penalised objective with λ =
    ``train.weight_decay`` and held against the convex optimum (``depthlab convex gap``), stored
    under ``probes["optimality"]`` (its error text there when it cannot be computed).
    ``threads`` sets torch's intra-op threads in this worker (one per worker: workers already
    fill the cores). ``watch`` among them judges the run on its own first steps: one decided
    *won't train* ends STOPPED, and the verdict is stored under ``probes["watch"]``.
    """
    started = time.perf_counter()
    outcome: dict[str, Any] = {
        "state": "FAILED",
        "metrics": {},
        "history": [],
        "probes": {},
        "error": "",
        "host": socket.gethostname(),
    }
    try:
        import torch

        from depthlab.spec import RunSpec
        from depthlab.train import run

        if threads:
            torch.set_num_threads(threads)
        run_spec = RunSpec.from_dict(spec)
        at_init = [p for p in probes if p not in (OPTIMALITY, WATCH)]
        if at_init:
            outcome["probes"]["diagnose"] = _diagnose(run_spec, at_init)
        if OPTIMALITY in probes:
            outcome["probes"][OPTIMALITY] = _optimality(run_spec)
        callbacks = []
        if WATCH in probes:
            from depthlab.watch.fit import WatchCallback

            callbacks.append(WatchCallback())
        result = run(run_spec, callbacks=callbacks, progress=False)
        if callbacks:
            outcome["probes"][WATCH] = callbacks[0].summary()
        outcome.update(
            state=result.state.value,
            metrics=dict(result.metrics),
            history=[dict(row) for row in result.history],
            error=result.error,
        )
    except Exception as err:  # noqa: BLE001 - a failing run is a result, recorded with its error
        outcome["state"] = "FAILED"
        outcome["error"] = _error_text(err)
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def _diagnose(spec: Any, probes: Sequence[str]) -> dict[str, Any]:
    from depthlab.diagnosis.run import diagnose_run

    return diagnose_run(spec, tuple(probes))[0]


def _optimality(spec: Any) -> dict[str, Any]:
    """The convex gap of the run's two-layer network at λ = ``train.weight_decay``; a run the
    gap does not apply to gets ``{"error": ...}`` and the sweep goes on."""
    from depthlab.convex.gap import optimality_gap

    lam = float(spec.train.weight_decay)
    if not lam > 0:
        return {"error": "optimality needs train.weight_decay > 0 (it is λ of the objective)"}
    try:
        return optimality_gap(spec, lam).to_dict()
    except Exception as err:  # noqa: BLE001 - recorded with the run, like a failing run
        return {"error": _error_text(err)}


def _error_text(err: BaseException) -> str:
    """``Type: message`` and the innermost frame, on a few lines (enough to find the bug)."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}{where}"
