"""Fixtures for the dashboard's browser tests: real ``redkit serve`` processes (one on the
embedded store without keys, one on a real redis-server with scoped keys) and a real headless
Chromium driven by selenium (Debian's chromium + chromedriver). No mocks.

The server binary is ``$REDKIT_BIN`` (scripts/test-dashboard sets it); redis-server is
``$REDIS_SERVER`` or the one on PATH. ``REDKIT_DASHBOARD_DIR``, when set, is passed on to the
servers (for working on the page); scripts/test-dashboard never sets it, so CI tests the copy
embedded in the binary.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "target"

ADMIN_KEY = "dashboard-admin-key-0123456789"
CACHE_KEY = "dashboard-cache-key-0123456789"
QREAD_KEY = "dashboard-qread-key-0123456789"

CONFIG = f"""
[[server.api_keys]]
name = "admin"
key = "{ADMIN_KEY}"
scopes = ["*"]

[[server.api_keys]]
name = "cache-only"
key = "{CACHE_KEY}"
scopes = ["cache:*:admin", "ops:*:read"]

[[server.api_keys]]
name = "queue-reader"
key = "{QREAD_KEY}"
scopes = ["queues:*:read", "ops:*:read"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """A tiny JSON client for checking what the page did, over the API itself."""

    def __init__(self, base: str, key: Optional[str]) -> None:
        self.base = base
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", "Bearer " + self.key)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None
        return json.loads(text) if text else None


class Server:
    def __init__(self, root: Path, redis_url: Optional[str], config: Optional[str]) -> None:
        self.port = free_port()
        self.dir = root / f"redkit-{self.port}"
        self.dir.mkdir()
        self.log = self.dir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "REDKIT_"))}
        env.update(REDKIT_DATA_DIR=str(self.dir / "data"), RUST_LOG="warn")
        if os.environ.get("REDKIT_DASHBOARD_DIR"):
            env["REDKIT_DASHBOARD_DIR"] = os.environ["REDKIT_DASHBOARD_DIR"]
        args = [os.environ["REDKIT_BIN"], "serve", "--listen", f"127.0.0.1:{self.port}"]
        if redis_url:
            args += ["--redis-url", redis_url]
        if config:
            (self.dir / "redkit.toml").write_text(config)
            args += ["--config", str(self.dir / "redkit.toml")]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        want = "redis" if redis_url else "embedded"
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redkit serve exited: " + self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=1) as r:
                    if json.loads(r.read()).get("mode") == want:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redkit serve did not become ready: " + self.log.read_text()[-2000:])
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, key: Optional[str] = None) -> Api:
        return Api(self.url, key)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.log.read_text(errors="replace")
        assert "panicked" not in text, text[-4000:]


@pytest.fixture(scope="session")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="redkit-dashboard-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(root: Path) -> Iterator[str]:
    port = free_port()
    exe = os.environ.get("REDIS_SERVER", "redis-server")
    d = root / f"redis-{port}"
    d.mkdir()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def embedded(root: Path) -> Iterator[Server]:
    """A server on the embedded store, without keys (loopback only)."""
    s = Server(root, None, None)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed(root: Path, redis_url: str) -> Iterator[Server]:
    """A server on Redis with three keys: admin (everything), cache-only, queue-reader."""
    s = Server(root, redis_url, CONFIG)
    yield s
    s.stop()


class Browser:
    """Headless Chromium; every console message is kept for the no-errors check."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        opts = Options()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_window_size(width, height)
        self.log: List[Dict[str, Any]] = []

    def console(self) -> List[Dict[str, Any]]:
        self.log += self.driver.get_log("browser")
        return self.log

    def errors(self) -> List[Dict[str, Any]]:
        return [e for e in self.console() if e.get("level") == "SEVERE"]

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    errors = b.errors()
    b.quit()
    assert not errors, f"console errors: {errors}"


@pytest.fixture
def make_browser() -> Iterator[Any]:
    made: List[Browser] = []

    def make(width: int = 1280, height: int = 900) -> Browser:
        b = Browser(width, height)
        made.append(b)
        return b

    yield make
    errors = [e for b in made for e in b.errors()]
    for b in made:
        b.quit()
    assert not errors, f"console errors: {errors}"
