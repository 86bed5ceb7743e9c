"""depthlab inside your own training loop: ``Monitor`` judges the run from its own steps.

Two runs of the same plain PyTorch loop on the bundled ``digits`` data: a healthy MLP, which the
monitor calls *trainable* and leaves alone, and a 30-layer sigmoid MLP, whose signal cannot get
through; the monitor stops it after a few percent of its budget and says why.

    python examples/watch_my_loop.py
"""

from __future__ import annotations

import math
import tempfile

import torch
from torch import nn
from torch.nn import functional as F

import depthlab as dl


def mlp(depth: int, act: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width = 64
    for i in range(depth):
        layers += [nn.Linear(64 if i == 0 else width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def train(model: nn.Module, epochs: int = 20, batch: int = 64) -> dl.Monitor:
    data = dl.load_data(dl.DataSpec(name="digits"))
    x, y = data.x_train, data.y_train
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    budget = epochs * math.ceil(len(y) / batch)
    mon = dl.Monitor(model, optimizer, budget_steps=budget, diagnose_batch=(x[:256], y[:256]))
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mon.step(loss, (x[idx], y[idx]))
            if mon.should_stop:
                return mon
    return mon


for name, model in (("healthy", mlp(2, nn.ReLU)), ("30 sigmoid layers", mlp(30, nn.Sigmoid))):
    mon = train(model)
    print(
        f"{name}: {mon.verdict} (P(trains) = {mon.p_trains:.2f}), "
        f"{mon.steps} of {mon.setup.budget_steps} steps" + (" — stopped" if mon.should_stop else "")
    )
    for finding in mon.decision.findings[:1]:
        print(f"  {finding.verdict}: {finding.evidence}")
    print(f"  report: {mon.report(tempfile.mkdtemp(prefix='watch-'))}")
