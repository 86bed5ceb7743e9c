"""Where a sweep's runs execute: a local process pool, or a Ray cluster.

An executor runs :func:`depthlab.sweep.task.execute` on spec dicts and hands back outcome dicts;
it never sees the store (only the driver writes). The driver keeps at most ``2 × workers``
runs in flight (one queued behind each busy worker), so a claimed run starts soon.

* ``local``: a pool of ``workers`` processes (default: the number of cores), started with
  ``spawn`` so no worker inherits the driver's torch thread pool, each using one torch thread.
  A worker that dies (killed, out of memory) takes the whole pool down: every run in it comes
  back *lost* (``{"state": "LOST"}``), the pool is restarted, and the driver re-runs each lost
  run on its own, so only the run that kills a worker twice is recorded FAILED. Workers die with
  their driver: each one checks twice a second that the process that started it is still its
  parent, and exits the moment it is not (a driver killed with ``kill -9`` leaves no orphan).
* ``ray``: each run is a Ray task with ``num_cpus=1``. Without ``address`` a local Ray instance
  is started with ``workers`` CPUs and shut down at the end; with ``address`` (``auto`` or
  ``HOST:PORT``) the sweep joins that cluster and uses all its CPUs unless ``workers`` is
  given. Ray is an optional extra: ``pip install 'depthlab[ray]'``.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Any

from depthlab.exceptions import DepthlabError
from depthlab.sweep.task import execute

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "default_workers", "make"]

EXECUTORS = ("local", "ray")


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _failed(error: str) -> dict[str, Any]:
    return {"state": "FAILED", "metrics": {}, "history": [], "probes": {}, "error": error}


#: The error of a run whose worker died while it was the only run in flight.
WORKER_DIED = "worker process died while running it (killed, or out of memory)"


def _lost() -> dict[str, Any]:
    """A run that was in a pool whose worker died: not necessarily the culprit."""
    return {**_failed(WORKER_DIED), "state": "LOST"}


class Executor(abc.ABC):
    """Runs :func:`execute` on ``workers`` workers; runs submitted beyond that wait in a queue."""

    workers: int = 1

    @abc.abstractmethod
    def start(self) -> None:
        """Start the workers (called once, before the first ``submit``)."""

    @abc.abstractmethod
    def submit(self, key: str, spec: dict[str, Any], probes: Sequence[str]) -> None:
        """Start run ``key``."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Block until at least one run finished (or ``timeout``); its ``(key, outcome)``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers; idempotent."""

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back from this thread while worker processes may be spawned (the pool
    spawns them inside ``submit``). A child inherits the signal mask through ``exec``, so a
    Ctrl-C that reaches the process group while a worker is still starting waits until
    ``_init_worker`` ignores it, instead of interrupting the worker's imports with a
    traceback; the driver receives a held Ctrl-C the moment the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: Seconds between two checks that a worker's driver is alive.
PARENT_CHECK_SECONDS = 0.5


def _watch_parent(parent: int, interval: float = PARENT_CHECK_SECONDS) -> None:
    """Exit this process as soon as ``parent`` is no longer its parent (the driver died and the
    worker was re-parented): a thread, so it works while a run holds the main thread."""
    import threading
    import time

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: the driver that would read the result is gone
            time.sleep(interval)

    threading.Thread(target=watch, name="depthlab-parent-watch", daemon=True).start()


def _init_worker(driver: int | None = None) -> None:
    _watch_parent(os.getppid() if driver is None else driver)
    # Ctrl-C is the driver's to handle: it records what finished and stops the workers.
    # (Ignoring a signal discards one already pending; then it need not stay blocked.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import depthlab.train  # noqa: F401  (import once per worker, in parallel, not in run 1)


class LocalExecutor(Executor):
    """A process pool on this machine (``spawn``ed workers, one torch thread each)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future[dict[str, Any]], str] = {}
        self._undelivered: list[tuple[str, dict[str, Any]]] = []  # outcomes for the next wait

    def start(self) -> None:
        if self._pool is None:
            with _sigint_held():
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
                started = self._pool.submit(os.getpid)
            # A pool whose workers cannot start (e.g. a driver script read from stdin, which
            # spawned processes cannot re-import) fails here, before any run is claimed.
            try:
                started.result()
            except cf.process.BrokenProcessPool:
                self._pool = None
                raise DepthlabError(
                    "the local worker processes could not start (spawned workers re-import the "
                    "driver's main module: run the sweep from a file, a notebook or "
                    "`depthlab sweep`, not from stdin)"
                ) from None

    def submit(self, key: str, spec: dict[str, Any], probes: Sequence[str]) -> None:
        self.start()
        assert self._pool is not None
        try:
            with _sigint_held():
                future = self._pool.submit(execute, spec, probes=tuple(probes), threads=1)
        except cf.process.BrokenProcessPool:
            # A worker died since the last wait: this run never started, and every run in the
            # pool is lost. All of them are reported by the next wait; a new pool takes over.
            self._undelivered.append((key, _lost()))
            self._lose_all()
            return
        self._futures[future] = key

    def _lose_all(self) -> None:
        """Report every run still in the (broken) pool as lost and start a fresh pool."""
        for future, key in list(self._futures.items()):
            self._undelivered.append((key, _lost()))
            del self._futures[future]
        self.close()
        self.start()

    def wait(self, timeout: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        if self._undelivered:
            out, self._undelivered = self._undelivered, []
            return out
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        broken = False
        for future in done:
            key = self._futures.pop(future)
            try:
                out.append((key, future.result()))
            except cf.process.BrokenProcessPool:
                broken = True
                out.append((key, _lost()))
            except Exception as err:  # noqa: BLE001 - e.g. an outcome that cannot be unpickled
                out.append((key, _failed(f"worker error: {type(err).__name__}: {err}")))
        if broken:  # the pool is unusable: every other run in it is lost too
            self._lose_all()
            out += self._undelivered
            self._undelivered = []
        return out

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._futures:  # stopped early (Ctrl-C, an error): do not wait for the runs
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


class RayExecutor(Executor):
    """Ray tasks with one CPU each, on a local instance or an existing cluster."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.address = address
        self._requested = workers
        self.workers = workers or default_workers()
        self._started_ray = False
        self._refs: dict[Any, str] = {}
        self._remote: Any = None

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise DepthlabError(
                "the ray executor needs Ray; install it with: pip install 'depthlab[ray]'"
            ) from None
        return ray

    def start(self) -> None:
        if self._remote is not None:
            return
        ray = self._ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
                # Workers inherit this: one torch/OpenMP thread per task.
                "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}},
            }
            if self.address:
                _check_reachable(self.address)
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = self.address or "a local instance"
                raise DepthlabError(f"cannot start Ray at {where}: {err}") from None
            self._started_ray = True
        if self.address and self._requested is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(execute)

    def submit(self, key: str, spec: dict[str, Any], probes: Sequence[str]) -> None:
        self.start()
        ref = self._remote.remote(spec, probes=tuple(probes), threads=1)
        self._refs[ref] = key

    def wait(self, timeout: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        if not self._refs:
            return []
        ray = self._ray()
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out.append((key, ray.get(ref)))
            except Exception as err:  # noqa: BLE001 - a Ray worker crash fails that run only
                text = " ".join(str(err).split())[:500]
                out.append((key, _failed(f"Ray task failed: {type(err).__name__}: {text}")))
        return out

    def close(self) -> None:
        if self._refs:
            ray = self._ray()
            for ref in list(self._refs):
                ray.cancel(ref, force=True)
            self._refs.clear()
        if self._started_ray:
            self._ray().shutdown()
            self._started_ray = False
        self._remote = None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` address that nothing answers on fails now, not after Ray's long retries."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", or a ray:// client address: Ray resolves and reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise DepthlabError(f"cannot reach a Ray cluster at {address}: {reason}") from None


def make(name: str, workers: int | None = None, address: str | None = None) -> Executor:
    """An executor by name (``local`` or ``ray``); ``address`` only for ``ray``."""
    if name == "local":
        if address:
            raise DepthlabError("--address is only used by --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise DepthlabError(f"unknown executor {name!r}; choices: {', '.join(EXECUTORS)}")
