"""``Monitor`` in a plain PyTorch loop: the verdict from the run's own steps, per-layer
statistics, bounded memory, and an observer that never changes or breaks the run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import depthlab as dl
from depthlab.diagnosis.engine import VerdictEngine
from depthlab.exceptions import DepthlabError
from depthlab.probes.signal import SignalProbe
from depthlab.watch import Monitor
from depthlab.watch.feed import Baseline, setup_of
from depthlab.watch.layerstats import MAX_ROWS
from depthlab.watch.monitor import FLUSH

N, D, K = 512, 16, 4


def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=gen)
    y = (x[:, :K].argmax(1) + 0).long()  # learnable: the largest of the first K features
    return x, y


def net(depth: int = 2, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(D, 32), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(32, 32), act()]
    return nn.Sequential(*layers, nn.Linear(32, K))


def loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    mon: Monitor | None = None,
    *,
    dropout_seeded: bool = False,
) -> list[float]:
    """A user's loop: shuffled minibatches of 32 from the global generator; stops when told."""
    x, y = data()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(N)
        for i in range(0, N, 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if mon is not None:
                mon.step(loss, (x[idx], y[idx]))
                if mon.should_stop:
                    return losses
    return losses


def run(
    model_fn, opt_fn, epochs: int, watch: bool, **kwargs
) -> tuple[list[float], Monitor | None, nn.Module]:
    torch.manual_seed(1)
    model = model_fn()
    opt = opt_fn(model)
    mon = Monitor(model, opt, epochs * N // 32, **kwargs) if watch else None
    return loop(model, opt, epochs, mon), mon, model


def adam(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def test_exported_from_the_top_level() -> None:
    assert dl.Monitor is Monitor


def test_losses_are_bit_identical_with_and_without_the_monitor() -> None:
    def dropout_net() -> nn.Module:
        return nn.Sequential(net(), nn.Dropout(0.2))  # draws from the global generator

    x, y = data()
    plain, _, a = run(dropout_net, adam, 3, False)
    watched, mon, b = run(
        dropout_net, adam, 3, True, every=5, stop_on=(), diagnose_batch=(x[:128], y[:128])
    )
    assert mon is not None and mon.steps == len(plain) and mon.theory is not None
    assert watched == plain
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert mon.stats is not None and len(mon.stats.steps) > 5  # it did look, every 5 steps


def test_a_healthy_run_is_trainable_and_a_diverging_one_stops_at_once() -> None:
    losses, mon, _ = run(net, adam, 20, True)
    # without a reference curve the engine may stay undecided at its cap, leaning to trains
    assert mon is not None and mon.verdict in ("trainable", "undecided") and not mon.should_stop
    assert len(losses) == 20 * N // 32
    assert mon.p_trains >= 0.9

    def huge(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=1e30)

    losses, mon, _ = run(net, huge, 8, True)
    assert mon is not None and mon.verdict == "diverges" and mon.should_stop
    assert len(losses) <= 0.1 * 8 * N // 32


def test_a_deep_net_that_cannot_propagate_signal_stops_with_its_cause() -> None:
    x, y = data()

    def deep() -> nn.Module:
        return net(depth=30, act=nn.Sigmoid)

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=0.01)

    losses, mon, _ = run(deep, sgd, 20, True, diagnose_batch=(x[:256], y[:256]))
    # the flat curve leans to won't train; the rules name why (the engine stops a run only on a
    # decided answer, and without a reference curve this one stays undecided at its cap)
    assert mon is not None and mon.verdict != "trainable" and mon.p_trains < 0.5
    causes = {f.verdict for f in mon.decision.findings}
    assert causes & {"vanishing gradients", "vanishing signal", "dead units", "no progress"}
    # observing only: the same verdict, and the run goes on
    losses, mon, _ = run(deep, sgd, 2, True, diagnose_batch=(x[:256], y[:256]), stop_on=())
    assert mon is not None and not mon.should_stop and len(losses) == 2 * N // 32


def test_a_probe_that_raises_is_one_warning_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self, model, batch, *, seed):  # noqa: ANN001, ANN202
        raise RuntimeError("this probe is broken")

    monkeypatch.setattr(SignalProbe, "measure", broken)
    x, y = data()
    plain, _, _ = run(net, adam, 2, False)
    with pytest.warns(RuntimeWarning, match="signal: RuntimeError: this probe is broken") as got:
        watched, mon, _ = run(net, adam, 2, True, diagnose_batch=(x[:128], y[:128]))
    assert len(got) == 1
    assert watched == plain
    assert mon is not None and not mon.passive and "gradients" in (mon.theory or {})


def test_an_engine_that_raises_is_one_warning_and_the_monitor_goes_passive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self, step, loss, *, grad_norm=None):  # noqa: ANN001, ANN202
        raise ValueError("engine bug")

    monkeypatch.setattr(VerdictEngine, "observe", broken)
    plain, _, _ = run(net, adam, 2, True, stop_on=())
    with pytest.warns(RuntimeWarning, match="stopped watching.*engine bug") as got:
        watched, mon, _ = run(net, adam, 2, True, every=3)
    assert len(got) == 1
    assert mon is not None and mon.passive and not mon.should_stop
    assert mon.stats is not None and not mon.stats.armed  # its hooks are gone
    assert len(watched) == 2 * N // 32


def test_memory_stays_bounded_over_a_long_run() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    mon = Monitor(model, opt, 100, every=1)
    x, y = data()
    for _ in range(2 * MAX_ROWS + 10):
        loss = F.cross_entropy(model(x[:8]), y[:8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss)
    assert mon.stats is not None and len(mon.stats.steps) <= MAX_ROWS and mon.stats.stride >= 2
    assert all(len(rows) <= MAX_ROWS for rows in mon.stats.rows.values())
    assert len(mon.engine.curve()["loss"]) <= mon.engine.cap


def test_layer_statistics_match_a_direct_measurement() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, 100, every=1)
    x, y = data()
    first = model[0]
    before = first.weight.detach().clone()
    out = model(x[:64])
    h = first(x[:64]).detach()
    loss = F.cross_entropy(out, y[:64])
    opt.zero_grad()
    loss.backward()
    grad = first.weight.grad.clone()
    opt.step()
    mon.step(loss)
    row = mon.stats.last()["0"]  # type: ignore[union-attr]
    assert row["signal"] == pytest.approx(float(h.pow(2).mean()), rel=1e-4)
    assert row["grad_ratio"] == pytest.approx(float(grad.norm() / before.norm()), rel=1e-4)
    update = (first.weight.detach() - before).norm() / before.norm()
    assert row["update_ratio"] == pytest.approx(float(update), rel=1e-4)
    assert row["gradient"] is not None and row["gradient"] > 0


def test_baseline_is_the_entropy_of_the_labels() -> None:
    b = Baseline()
    b.add(torch.tensor([0, 0, 1, 1]))
    b.add(torch.tensor([2, 2, -100, -100]))  # ignored tokens are left out
    assert b.value() == pytest.approx(math.log(3) + 2 / (2 * 6))  # Miller-Madow
    r = Baseline()
    r.add(torch.tensor([[1.0], [3.0]]))
    assert r.value() == pytest.approx(1.0)


def test_setup_is_read_off_the_optimizer() -> None:
    model = net()
    s = setup_of(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 500)
    assert (s.optimizer, s.lr, s.momentum, s.budget_steps) == ("momentum", 0.1, 0.9, 500)
    assert setup_of(torch.optim.AdamW(model.parameters(), lr=1e-4), 10).optimizer == "adamw"


def test_bad_budget_is_one_clear_error() -> None:
    model = net()
    with pytest.raises(DepthlabError, match="budget_steps 0"):
        Monitor(model, adam(model), 0)


def test_report_writes_json_png_and_html(tmp_path: Path) -> None:
    _, mon, _ = run(net, adam, 2, True, every=4)
    assert mon is not None
    page = mon.report(tmp_path / "watch")
    saved = json.loads((tmp_path / "watch" / "watch.json").read_text())
    assert saved["verdict"] == mon.verdict and saved["steps"] == mon.steps
    assert saved["engine"]["looked"] and saved["layers"]["steps"]
    assert (tmp_path / "watch" / "curve.png").stat().st_size > 0
    assert mon.verdict in page.read_text()
    json.dumps(mon.to_dict(), allow_nan=True)


@pytest.mark.parametrize("lr", [1e-2, 1e30])
def test_reads_deferred_as_on_an_accelerator_give_the_same_verdict(lr: float) -> None:
    """On an accelerator the loss and gradient norm stay on the device and come back every
    FLUSH steps and at the engine's checkpoints; forced on the CPU, that path must judge the
    curve exactly as reading at every step does (healthy, and diverging)."""

    def opt(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=lr)

    def watched(defer: bool) -> tuple[list[float], Monitor]:
        torch.manual_seed(1)
        model = net()
        optimizer = opt(model)
        mon = Monitor(model, optimizer, 6 * N // 32, every=0)
        mon.defer_reads = defer
        return loop(model, optimizer, 6, mon), mon

    now, per_step = watched(False)
    later, deferred = watched(True)
    # the same steps ran; a divergence is seen at the next read, within FLUSH steps
    assert later[: len(now)] == now or str(later[: len(now)]) == str(now)
    assert len(now) <= len(later) <= len(now) + FLUSH
    assert deferred.engine.looked == per_step.engine.looked
    assert deferred.verdict == per_step.verdict and deferred.p_trains == per_step.p_trains
    assert deferred.to_dict()["verdict"] == per_step.to_dict()["verdict"]
    assert not deferred._queued  # everything asked for was read
