"""Every registered family × a sample of activations, norms, inits and residual scalings."""

from __future__ import annotations

import itertools

import pytest
import torch

from depthlab import ArchSpec, SpecError, build_model
from depthlab import _registry as reg
from depthlab.testing import ConformanceError, check_arch, check_module

FAMILY_INPUT = {"mlp": (12,), "resmlp": (12,), "cnn1d": (16,)}
ACTS = ["relu", "tanh", "selu", "gelu", "linear", "sigmoid"]
NORMS = ["none", "batch", "layer", "rms"]
INITS = ["he", "lecun", "xavier", "orthogonal", "critical", "zero"]
RESIDUAL = ["none", "fixed", "inv_sqrt_depth", "rezero"]


def _cases():
    # A covering sample, not the full product: every value of every axis meets every family.
    combos = []
    for i, (family, act, norm) in enumerate(itertools.product(FAMILY_INPUT, ACTS, NORMS)):
        combos.append((family, act, norm, INITS[i % len(INITS)], RESIDUAL[i % len(RESIDUAL)]))
    return combos


@pytest.mark.parametrize("family,act,norm,init,residual", _cases())
def test_conformance(family, act, norm, init, residual):
    spec = ArchSpec(
        family=family,
        depth=3,
        width=8,
        act=act,
        norm=norm,
        init=init,
        residual=residual,
        dropout=0.1,
        sigma_b=0.0 if act in ("relu", "linear") else 0.05,
    )
    check_arch(spec, in_shape=FAMILY_INPUT[family], out_dim=5)


def test_every_registered_family_is_covered():
    # graph families run on a graph: tests/gnn/test_gnn_families.py covers them; icnn takes only
    # convex non-decreasing activations: conformance in tests/convex/test_icnn.py; kan takes no
    # norm and hypernet no residual: conformance in tests/test_kan.py and tests/test_hypernet.py
    from depthlab.models.graph_base import GraphNet

    graph = {n for n in reg.ARCHS.names() if _builds_graph_net(n, GraphNet)}
    assert set(reg.ARCHS.names()) - graph == set(FAMILY_INPUT) | {"icnn", "kan", "hypernet"}


def _builds_graph_net(family, graph_net):
    from depthlab.layers import resolve_activation, resolve_norm
    from depthlab.models.base import Parts

    spec = ArchSpec(family=family, depth=1, width=4)
    parts = Parts(spec, resolve_activation("relu"), resolve_norm("none"))
    try:
        return isinstance(reg.ARCHS.get(family)(spec, parts, (3,), 2), graph_net)
    except SpecError:
        return False


@pytest.mark.parametrize("family", sorted(FAMILY_INPUT))
def test_depth_zero_is_a_linear_readout(family):
    model = check_arch(
        ArchSpec(family=family, depth=0, width=8), in_shape=FAMILY_INPUT[family], out_dim=3
    )
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert n_linear == (2 if family == "resmlp" else 1)


def test_mlp_per_layer_widths_build_an_hourglass():
    spec = ArchSpec(family="mlp", depth=4, width=(64, 8, 8, 64))
    model = check_arch(spec, in_shape=(10,), out_dim=2)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(64, 10), (8, 64), (8, 8), (64, 8), (2, 64)]


def test_mnist1d_reference_cnn_has_5210_parameters():
    spec = ArchSpec(family="cnn1d", depth=3, width=25, kernel=(5, 3, 3), stride=2, padding=1)
    model = build_model(spec, in_shape=(40,), out_dim=10)
    assert sum(p.numel() for p in model.parameters()) == 5210


def test_he_init_has_the_stated_variance():
    model = build_model(ArchSpec(depth=1, width=2000, init="he"), in_shape=(500,), out_dim=1)
    w = model[0][0].weight
    assert abs(w.var().item() * 500 / 2.0 - 1.0) < 0.02
    assert abs(w.mean().item()) < 1e-3


def test_rezero_starts_as_the_identity():
    spec = ArchSpec(family="resmlp", depth=6, width=16, residual="rezero")
    model = build_model(spec, in_shape=(16,), out_dim=4)
    x = torch.randn(5, 16)
    embed = model[0](x)
    blocks = torch.nn.Sequential(*list(model)[1:7])
    assert torch.equal(blocks(embed), embed)


def test_callables_are_accepted_for_act_norm_and_init():
    def cube_root(x):
        return torch.sign(x) * x.abs() ** (1 / 3)

    def unit_init(weight, bias, ctx):
        with torch.no_grad():
            weight.fill_(1.0 / weight.shape[1])
            if bias is not None:
                bias.zero_()

    spec = ArchSpec(depth=2, width=6, act=torch.nn.Tanh, norm=torch.nn.LayerNorm, init=unit_init)
    model = check_arch(spec, in_shape=(4,), out_dim=2)
    assert all(
        torch.allclose(m.weight, torch.full_like(m.weight, 1 / m.weight.shape[1]))
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    )
    check_arch(ArchSpec(depth=2, width=6, act=cube_root), in_shape=(4,), out_dim=2)


def test_cnn_that_shrinks_to_nothing_is_a_spec_error():
    with pytest.raises(SpecError, match="kernel"):
        build_model(
            ArchSpec(family="cnn1d", depth=6, width=4, kernel=5, stride=2, padding=0),
            in_shape=(40,),
            out_dim=2,
        )


def test_conformance_catches_a_dead_parameter():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = torch.nn.Linear(3, 2)
            self.unused = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ConformanceError, match="unused"):
        check_module(Broken(), torch.randn(4, 3), 2)
