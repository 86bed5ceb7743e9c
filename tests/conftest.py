"""Test set-up shared by the whole suite."""

from __future__ import annotations

import os

import pytest
import torch

# Two pytest workers on two cores: one intra-op thread each, or the workers' thread pools fight
# over the cores and small models run orders of magnitude slower.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Each test starts from the same global torch seed."""
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: skipped on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
