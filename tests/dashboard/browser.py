"""A real headless Chromium driven over the DevTools protocol: load a page, wait for it, screenshot it.

Only the standard library and ``websockets`` (already installed with google-genai) are used.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--disable-dev-shm-usage"]


class BrowserError(RuntimeError):
    pass


def chromium_path() -> str:
    """The Chromium binary, or a clear error saying how to install it."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        raise BrowserError("Chromium is not installed (expected /usr/bin/chromium). Install Debian's package: "
                           "`apt-get update && apt-get install -y chromium` (make test's setup does this).")
    return found


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, width: int = 1440, height: int = 1000) -> None:
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._process: subprocess.Popen | None = None
        self._ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        self._process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise BrowserError("Chromium did not start (no DevToolsActivePort within 30 s)")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        self._ws = self._stack.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=10))
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self._process.pid, signal.SIGKILL)
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60.0, settle: float = 1.5) -> None:
        """Poll a JavaScript condition until true, then wait until the page stops changing."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:.0f} s waiting for: {expression}")
            time.sleep(0.3)
        last, stable_since = None, time.monotonic()
        while time.monotonic() - stable_since < settle and time.monotonic() < deadline:
            size = self.evaluate("document.body.innerHTML.length")
            if size != last:
                last, stable_since = size, time.monotonic()
            time.sleep(0.25)

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText") or "")

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length") or 0)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG; with ``full_page`` the viewport grows to the app's scrolling content first."""
        if full_page:
            height = self.evaluate(
                "Math.max(...[document.querySelector('[data-testid=\"stMain\"]'), document.body]"
                ".filter(Boolean).map(e => e.scrollHeight))") or self.height
            height = int(min(max(height, self.height), 12000))
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                      mobile=False)
            time.sleep(2.0)  # charts re-render at the new size
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        if full_page:
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        return path
