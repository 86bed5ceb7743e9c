"""One failing probe costs that probe only: the others run, the verdict uses what ran, the JSON
is written and the exit code says a probe failed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from depthlab.diagnosis import DiagnoseOptions, diagnose
from depthlab.probes import ProbeBatch
from depthlab.testing.cli import run_cli

FACTORY = """
import torch
from torch import nn


class ForwardOnly(nn.Module):
    '''A kernel with a forward and no backward: any probe that differentiates fails.'''

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 16)
        self.b = nn.Linear(16, 3)

    def forward(self, x):
        h = self.a(x)
        if torch.is_grad_enabled() and h.requires_grad:
            raise RuntimeError("custom kernel has no backward\\nsecond line of detail")
        return self.b(torch.relu(h))


def make():
    torch.manual_seed(0)
    return ForwardOnly()
"""


def _model() -> nn.Module:
    scope: dict = {}
    exec(FACTORY, scope)  # noqa: S102 - the same module the CLI test imports from a file
    return scope["make"]()


def _batch() -> ProbeBatch:
    gen = torch.Generator().manual_seed(0)
    return ProbeBatch.from_tensors(
        torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    )


def test_a_failing_probe_is_listed_and_the_others_still_run():
    probes = ("signal", "gradients", "weights", "meanfield")
    result = diagnose(_model(), _batch(), DiagnoseOptions(probes=probes))
    assert result["failed"] == {"gradients": "RuntimeError: custom kernel has no backward"}
    assert result["probes"]["gradients"] == {
        "status": "failed",
        "error": "RuntimeError: custom kernel has no backward",
    }
    assert "gradients" not in result  # the verdict's rules read only what ran
    assert result["probes"]["signal"] == {"status": "ok"} and "signal" in result
    assert result["probes"]["weights"] == {"status": "ok"}
    assert result["probes"]["meanfield"]["status"] == "skipped"
    assert result["verdict"] in ("trainable", "vanishing signal", "exploding signal")
    json.dumps(result)


def test_the_cli_writes_the_json_and_exits_4_with_one_line(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(64, 6)).astype(np.float32),
             y=rng.integers(0, 3, 64))  # fmt: skip
    out = run_cli(
        "diagnose",
        "--model",
        f"{tmp_path / 'net.py'}:make",
        "--data",
        str(tmp_path / "d.npz"),
        "--probes",
        "signal,gradients,jacobian",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert out.returncode == 4, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "probe(s) failed" in out.stderr and "gradients" in out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["failed"]) == {"gradients"}
    # a model that cannot be differentiated w.r.t. its input: the jacobian probe says so
    assert result["probes"]["jacobian"]["status"] == "skipped"
    assert "cannot differentiate" in result["skipped"]["jacobian"]
    assert result["probes"]["signal"]["status"] == "ok" and "signal" in result
    assert "gradients failed: RuntimeError: custom kernel has no backward" in out.stdout


def test_the_table_lists_failures_and_marks_a_bound(capsys):
    from depthlab.cli.tables import print_diagnoses

    d = {
        "name": "net",
        "verdict": "trainable",
        "findings": [],
        "ntk": {"condition_number": 3.5e13, "condition_number_is_bound": True},
        "skipped": {"meanfield": "not an MLP"},
        "failed": {"hessian": "RuntimeError: no double backward"},
    }
    print_diagnoses([d])
    out = capsys.readouterr().out
    assert "≥ 3.5e+13" in out
    assert "net: meanfield skipped: not an MLP" in out
    assert "net: hessian failed: RuntimeError: no double backward" in out
    d["ntk"]["condition_number_is_bound"] = False
    print_diagnoses([d])
    assert "≥" not in capsys.readouterr().out


def test_a_model_returning_an_output_object_gets_the_wrapper_hint():
    from depthlab import ProbeError
    from depthlab.diagnosis import check_input

    class Output:
        def __init__(self, logits: torch.Tensor) -> None:
            self.logits = logits

    class HFLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> Output:
            return Output(self.lin(x))

    with pytest.raises(ProbeError, match=r"returns Output.*model\(x\)\.logits"):
        check_input(HFLike(), _batch())
