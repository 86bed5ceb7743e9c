"""Diagnose your own nn.Module: will it train, and if not, why?

python examples/diagnose_my_model.py
"""

import torch

from depthlab.diagnosis import DiagnoseOptions, diagnose
from depthlab.probes import ProbeBatch

# A deep tanh network with a too-small weight scale: the ordered phase (χ₁ < 1), where
# gradients vanish towards the input while the biases keep the forward signal alive.
layers = []
for _ in range(40):
    linear = torch.nn.Linear(64, 64)
    torch.nn.init.normal_(linear.weight, std=(0.5 / 64) ** 0.5)
    layers += [linear, torch.nn.Tanh()]
model = torch.nn.Sequential(
    torch.nn.Linear(20, 64), torch.nn.Tanh(), *layers, torch.nn.Linear(64, 3)
)

x = torch.randn(256, 20, generator=torch.Generator().manual_seed(0))
y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three classes
batch = ProbeBatch.from_tensors(x, y)

result = diagnose(model, batch, DiagnoseOptions(probes=("signal", "gradients", "meanfield")))
print("verdict:", result["verdict"])
for finding in result["findings"]:
    print(f"- {finding['verdict']}: {finding['evidence']}\n  advice: {finding['advice']}")
