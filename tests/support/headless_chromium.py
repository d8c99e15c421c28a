"""Drive Debian's headless Chromium through the DevTools protocol over a pipe (no extra packages).

Chromium started with ``--remote-debugging-pipe`` reads DevTools commands from file descriptor 3
and writes replies and events to descriptor 4, each a JSON object ended by a NUL byte. That is
enough to open a page, run JavaScript in it and in its frames (the Snakemake report shows HTML
results in ``<iframe>`` elements), and take screenshots, without a WebSocket client or Selenium.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class HeadlessChromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, executable: str, width: int = 1400, height: int = 1000, timeout: float = 60):
        self.executable = executable
        self.width = width
        self.height = height
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self.session: str | None = None

    # -- process and pipe ---------------------------------------------------------------------------

    def __enter__(self) -> HeadlessChromium:
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # in the child, before exec: the protocol's fds are 3 and 4
            read_fd, write_fd = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(read_fd, 3)
            os.dup2(write_fd, 4)

        self.process = subprocess.Popen(
            [
                self.executable,
                "--headless",
                "--remote-debugging-pipe",
                # Containers and CI: no user namespaces for the sandbox, tiny /dev/shm, no GPU, no D-Bus.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--hide-scrollbars",
                f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            # Everything else is closed after wire_pipes ran; 3 and 4 are the protocol's pipe.
            close_fds=True,
            pass_fds=(3, 4),
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Log.enable")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process.poll() is None:
                try:
                    self.call("Browser.close", session=False, timeout=5)
                except (BrowserError, OSError):
                    pass
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the DevTools pipe (exit status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = True, timeout: float | None = None, **params: Any) -> dict:
        """Send one DevTools command (to the page's session unless ``session=False``); return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def events(self, method: str) -> list[dict[str, Any]]:
        """Events of ``method`` received so far (while waiting for replies), left in place."""
        return [event for event in self._events if event["method"] == method]

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, ``console.error`` calls and browser log errors (e.g. a file that failed to load)."""
        self.evaluate("0")  # read what arrived since the last call
        errors = [e["params"]["exceptionDetails"].get("exception", {}).get("description", "exception") for e in self.events("Runtime.exceptionThrown")]
        errors += [" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"]) for e in self.events("Runtime.consoleAPICalled") if e["params"]["type"] == "error"]
        errors += [e["params"]["entry"]["text"] + " " + e["params"]["entry"].get("url", "") for e in self.events("Log.entryAdded") if e["params"]["entry"]["level"] == "error"]
        return errors

    def mouse(self, kind: str, x: float, y: float, button: str = "none", **extra: Any) -> None:
        """A real mouse event at page coordinates (``kind``: mouseMoved, mousePressed, mouseReleased, mouseWheel)."""
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, **extra)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for index, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(index)
            self._events.append(self._read_message(deadline))

    # -- page helpers -----------------------------------------------------------------------------

    def open(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, context_id: int | None = None) -> Any:
        """Evaluate JavaScript (awaiting a returned promise) and return its JSON value."""
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context_id is not None:
            params["contextId"] = context_id
        result = self.call("Runtime.evaluate", **params)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15, context_id: int | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression, context_id)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout}s waiting for: {expression}")
            time.sleep(0.1)

    def child_frames(self) -> list[dict[str, Any]]:
        tree = self.call("Page.getFrameTree")["frameTree"]
        return [child["frame"] for child in tree.get("childFrames", [])]

    def frame_context(self, frame_id: str) -> int:
        """An execution context inside a (possibly cross-origin, e.g. data: URL) frame."""
        return self.call("Page.createIsolatedWorld", frameId=frame_id, worldName="test")["executionContextId"]

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
