"""Exit codes and the one-line error report every command uses."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_FAILED = 4
EXIT_NOT_REPRODUCED = 5

EXIT_CODES_DOC = (
    "Exit codes: 0 complete, 1 internal error, 2 bad input (one line on stderr), "
    "3 run diverged (NaN/inf), 4 run failed (diagnose: a probe failed; the JSON is still "
    "written), 5 claim not reproduced."
)


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    print(f"depthlab: error: {message}", file=sys.stderr)
    raise SystemExit(code)
