"""Will my model train? One call on your own model, optimizer and DataLoader.

python examples/diagnose_one_call.py

Two networks on the same data and optimizer: a 4-layer ReLU MLP with PyTorch's default init,
and a 24-layer one whose init halves the signal at every layer. depthlab draws the samples its
probes need from the loader, reads the setup from the optimizer (SGD with momentum, lr 0.05,
500 steps) and says which will train, why, and what to change.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import depthlab as dl


def mlp(depth: int, std_scale: float | None = None) -> nn.Sequential:
    """``depth`` hidden ReLU layers of 64 units; weights N(0, std_scale²/fan_in) if given."""
    layers: list[nn.Module] = [nn.Linear(20, 64), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(64, 4))
    if std_scale is not None:
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std_scale / m.in_features**0.5)
                nn.init.zeros_(m.bias)
    return net


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2048, 20)
    y = (x[:, :4] * torch.tensor([1.0, -1.0, 0.5, 2.0])).argmax(1)  # 4 classes
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    for name, model in (("shallow", mlp(4)), ("deep, LeCun init", mlp(24, std_scale=1.0))):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        d = dl.diagnose(model, loader, optimizer=opt, steps=500)
        print(f"{name}: verdict: {d.verdict} (P(trains) = {d.p_trains:.2f}, {d.decided_by})")
        for line in d.advice:
            print(f"  advice: {line}")
        table = d.data["layers"]
        first, last = table[0]["second_moment"], table[-2]["second_moment"]
        print(f"  E[h²] of the first and last hidden layer: {first:.3g} -> {last:.3g}")
    with tempfile.TemporaryDirectory() as out:
        page = d.save(out)  # diagnosis.json and index.html
        print(f"saved {page.name} and diagnosis.json")
    d.summary()  # the table `depthlab diagnose` prints
    # d.layers() is the same table as a pandas DataFrame (pip install 'depthlab[frames]')


if __name__ == "__main__":
    main()
