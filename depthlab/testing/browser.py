"""Open a static HTML page in headless Chromium and report what a reader would see go wrong.

:func:`check_page` loads a local file and returns a :class:`PageReport`: every console error
(uncaught exceptions, ``console.error``/``console.assert`` calls, resources that failed to load,
as the DevTools ``Runtime`` and ``Log`` domains report them) and every ``<img>`` whose decoded
size (``naturalWidth`` × ``naturalHeight``) is zero, i.e. a missing or undecodable image.

It talks the Chrome DevTools Protocol over ``--remote-debugging-pipe``: Chromium reads
NUL-terminated JSON commands from file descriptor 3 and writes replies and events to fd 4, so no
websocket client (and no network port) is needed. The browser runs with a throw-away profile and
no background networking.

Browser tooling is optional weight: nothing here is imported by the core. In a test,
:func:`require_chromium` skips when Chromium is missing, except under CI (``CI`` set), where a
missing browser fails the test instead of silently hiding the check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from depthlab.exceptions import DepthlabError

__all__ = [
    "FLAGS",
    "BrowserError",
    "ImageInfo",
    "PageReport",
    "check_page",
    "find_chromium",
    "in_ci",
    "require_chromium",
]

#: Names tried on ``PATH``, in order (Debian's package installs ``chromium``).
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Launch flags: headless, no sandbox (containers run as root), no GPU, and nothing that reaches
#: the network on its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)

# Runs in the page after its load event (which waits for every image): src and decoded size.
_IMAGES_JS = (
    "JSON.stringify(Array.from(document.images, "
    "i => [i.getAttribute('src') || '', i.naturalWidth, i.naturalHeight]))"
)

# Moves the pipe ends onto the fds Chromium expects, then becomes Chromium (same pid).
_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execvp(sys.argv[3], sys.argv[3:])"
)


class BrowserError(DepthlabError):
    """Chromium could not be started, or did not answer in time."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """One ``<img>``: its ``src`` attribute and decoded size in pixels (0 × 0 when broken)."""

    src: str
    natural_width: int
    natural_height: int

    @property
    def broken(self) -> bool:
        return self.natural_width <= 0 or self.natural_height <= 0


@dataclasses.dataclass(frozen=True)
class PageReport:
    """What loading one page showed: console errors, all images and the broken ones' ``src``."""

    url: str
    console_errors: tuple[str, ...]
    images: tuple[ImageInfo, ...]

    @property
    def broken_images(self) -> tuple[str, ...]:
        return tuple(img.src for img in self.images if img.broken)

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.broken_images


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) binary on ``PATH``, or ``None``."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def in_ci() -> bool:
    """Whether ``CI`` is set (to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false"}


def require_chromium() -> str:
    """The Chromium binary for a test; skip without one, but fail under CI."""
    import pytest

    found = find_chromium()
    if found is None:
        reason = f"no Chromium on PATH (tried {', '.join(CANDIDATES)}); apt-get install chromium"
        if in_ci():
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return found


def check_page(
    path: str | Path, *, chromium: str | None = None, timeout: float = 30.0
) -> PageReport:
    """Load ``path`` (a local HTML file) in headless Chromium; see the module doc.

    ``timeout`` bounds each wait on the browser (start, navigation, load). Raises
    :class:`BrowserError` if Chromium is missing, dies, or does not finish loading in time.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserError(f"no Chromium on PATH (tried {', '.join(CANDIDATES)})")
    if shutil.which(binary) is None:
        raise BrowserError(f"cannot start {binary}: no such executable")
    url = Path(path).resolve().as_uri()
    with _Browser(binary, timeout) as browser:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session=session)
        nav = browser.call("Page.navigate", {"url": url}, session=session)
        errors = [f"navigation failed: {nav['errorText']}"] if nav.get("errorText") else []
        browser.wait_for("Page.loadEventFired", session)
        value = browser.call(
            "Runtime.evaluate",
            {"expression": _IMAGES_JS, "returnByValue": True},
            session=session,
        )["result"]["value"]
        errors += [e for e in map(_console_error, browser.events) if e]
        with contextlib.suppress(BrowserError):  # it may close the pipe before it answers
            browser.call("Browser.close")
    images = tuple(ImageInfo(str(s), int(w), int(h)) for s, w, h in json.loads(value))
    return PageReport(url=url, console_errors=tuple(errors), images=images)


def _console_error(event: dict[str, Any]) -> str | None:
    """The text of an event that a reader would see as a console error, else ``None``."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        exc = details.get("exception", {})
        text = exc.get("description") or details.get("text", "exception")
        return f"uncaught: {text} ({details.get('url', '')}:{details.get('lineNumber', '?')})"
    if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
        args = params.get("args", [])
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
        return f"console.{params['type']}: {text}"
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        if entry.get("level") == "error":
            return f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}"
    return None


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered 10 or more (clear of 3 and 4), closing ``fd``."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class _Browser:
    """A Chromium process and its DevTools pipe; a context manager that always reaps it."""

    def __init__(self, binary: str, timeout: float) -> None:
        self.binary, self.timeout = binary, timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""

    def __enter__(self) -> _Browser:
        self._tmp = tempfile.TemporaryDirectory(prefix="depthlab-chromium-")
        tmp = Path(self._tmp.name)
        # Our ends: write commands to `to_browser`, read replies from `from_browser`.
        their_in, self._to_browser = map(_high_fd, os.pipe())
        self._from_browser, their_out = map(_high_fd, os.pipe())
        self._log = open(tmp / "stderr.txt", "wb")  # noqa: SIM115 - closed in __exit__
        args = [sys.executable, "-c", _TRAMPOLINE, str(their_in), str(their_out), self.binary]
        args += [*FLAGS, f"--user-data-dir={tmp / 'profile'}", "--remote-debugging-pipe"]
        args.append("about:blank")
        try:
            self._proc = subprocess.Popen(
                args,
                pass_fds=(their_in, their_out),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                start_new_session=True,  # its helper processes form one group we can end
            )
        except OSError as err:
            self._cleanup()
            raise BrowserError(f"cannot start {self.binary}: {err}") from None
        finally:
            os.close(their_in)
            os.close(their_out)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        with contextlib.suppress(OSError):
            os.close(self._to_browser)  # end of commands: Chromium also exits on this EOF
        try:
            # After Browser.close it exits by itself; after an error, do not wait for it.
            self._proc.wait(timeout=10 if exc_type is None else 0.01)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        self._tmp.cleanup()

    def _stderr_tail(self) -> str:
        self._log.flush()
        text = (Path(self._tmp.name) / "stderr.txt").read_text(errors="replace")
        return "\n".join(text.splitlines()[-5:])

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if kw.get("session"):
            message["sessionId"] = kw["session"]
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"Chromium exited early:\n{self._stderr_tail()}") from None
        for reply in self._messages(method):
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_for(self, method: str, session: str) -> None:
        """Read until the event ``method`` arrives on ``session`` (or was already seen)."""
        seen = [e for e in self.events if e.get("method") == method]
        if any(e.get("sessionId") == session for e in seen):
            return
        for event in self._messages(method):
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return

    def _messages(self, waiting_for: str) -> Iterator[dict[str, Any]]:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                ready = select.select([self._from_browser], [], [], max(left, 0))[0]
                if not ready:
                    raise BrowserError(
                        f"no answer from Chromium in {self.timeout:g} s (waiting for {waiting_for})"
                    )
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise BrowserError(
                        f"Chromium closed the pipe (waiting for {waiting_for}):\n"
                        f"{self._stderr_tail()}"
                    )
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            yield json.loads(raw)
