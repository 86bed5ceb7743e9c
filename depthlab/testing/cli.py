"""Running the ``depthlab`` command as a user does: a subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``depthlab ARGS...`` in a fresh process; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "depthlab.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
