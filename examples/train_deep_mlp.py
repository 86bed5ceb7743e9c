"""Train one deep MLP from a spec, print its metrics and write the same run as a YAML file.

python examples/train_deep_mlp.py
"""

import depthlab as dl

spec = dl.RunSpec(
    name="tanh-critical",
    arch=dl.ArchSpec(family="mlp", depth=16, width=128, act="tanh", init="critical", sigma_b=0.05),
    data=dl.DataSpec(name="mnist1d", seed=0),
    train=dl.TrainSpec(optimizer="adam", lr=1e-3, epochs=5, batch_size=64, seed=0),
)
result = dl.run(spec)
print(result.state.value, {k: round(v, 4) for k, v in result.metrics.items()})
print(spec.to_yaml())
