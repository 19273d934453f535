"""Fixtures: real ``redkit serve`` processes (embedded store, and on a real redis-server) on
free loopback ports in temp dirs, killed at the end. No mocks.

The server binary is ``$REDKIT_BIN``, else the repository's ``target/debug/redkit``
(``scripts/test`` builds it before the Python tests run); redis-server is ``$REDIS_SERVER``
or the one on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import redkit

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redkit_bin() -> str:
    path = os.environ.get("REDKIT_BIN") or str(REPO / "target" / "debug" / "redkit")
    if not os.access(path, os.X_OK):
        pytest.exit(f"no redkit binary at {path}: build it (cargo build -p redkit-server) or set REDKIT_BIN", 2)
    return path


def http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class RedisProcess:
    """A redis-server on a free port with AOF (appendfsync always), so a SIGKILL loses nothing."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / f"redis-{self.port}"
        self.dir.mkdir()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = os.environ.get("REDIS_SERVER", "redis-server")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Server:
    """One ``redkit serve``."""

    def __init__(self, root: Path, redis_url: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.port = free_port()
        self.dir = root / f"redkit-{self.port}"
        self.dir.mkdir()
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log = self.dir / "server.log"
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "REDKIT_"))}
        env.update(
            REDKIT_DATA_DIR=str(self.dir / "data"),
            RUST_LOG="warn",
            REDKIT_BREAKER_PROBE_MIN_MS="50",
            REDKIT_BREAKER_PROBE_MAX_MS="500",
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [redkit_bin(), "serve", "--listen", f"127.0.0.1:{self.port}"],
                env=env,
                stdout=log,
                stderr=log,
            )
        self.wait_mode("redis" if self.redis_url else "embedded")

    def wait_mode(self, mode: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redkit serve exited: {self.log.read_text()[-2000:]}")
            try:
                last = http_json(self.url + "/ready", timeout=1.0)
                if last.get("mode") == mode:
                    return
            except OSError:
                pass
            time.sleep(0.03)
        raise RuntimeError(f"redkit serve not in mode {mode} (last: {last}); log: {self.log.read_text()[-2000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        assert "panicked" not in text, text[-4000:]


class Cluster:
    """Everything a test session started, stopped in reverse at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="redkit-py-"))
        self.started: List[Any] = []

    def redis(self) -> RedisProcess:
        r = RedisProcess(self.root)
        self.started.append(r)
        return r

    def server(self, redis_url: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Server:
        s = Server(self.root, redis_url, env)
        self.started.append(s)
        return s

    def close(self) -> None:
        errors: List[BaseException] = []
        for thing in reversed(self.started):
            try:
                thing.stop()
            except BaseException as e:  # stop everything, report after
                errors.append(e)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def embedded(cluster: Cluster) -> Server:
    """A server on the embedded store (no Redis)."""
    return cluster.server()


@pytest.fixture(scope="session")
def shared_redis(cluster: Cluster) -> RedisProcess:
    return cluster.redis()


@pytest.fixture(scope="session")
def on_redis(cluster: Cluster, shared_redis: RedisProcess) -> Server:
    """A server on a real redis-server."""
    return cluster.server(shared_redis.url)


@pytest.fixture(scope="session")
def on_redis_2(cluster: Cluster, shared_redis: RedisProcess) -> Server:
    """A second server on the same Redis (failover, cross-instance get-or-set)."""
    return cluster.server(shared_redis.url)


@pytest.fixture(params=["embedded", "redis"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each capability test runs on both stores."""
    name = "embedded" if request.param == "embedded" else "on_redis"
    srv: Server = request.getfixturevalue(name)
    return srv


@pytest.fixture
async def rk(server: Server) -> Any:
    async with redkit.AsyncClient(server.url, timeout=10) as client:
        yield client


@pytest.fixture
def name() -> str:
    """A name no other test uses (namespaces, queues, locks, users)."""
    return "t" + uuid.uuid4().hex[:12]
