"""The processes the soak runs: one redis-server it can break, two `redkit serve` on it, and
a monitor that samples each server's /health."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import aiohttp

RespValue: TypeAlias = "str | int | list[RespValue] | None"

# The filler that makes a restart LOADING lives in its own database; redkit uses db 0.
FILLER_DB = "9"


def say(message: str) -> None:
    """Progress, on stderr (the report goes to stdout)."""
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class RedisReplyError(Exception):
    """An error reply (`-ERR …`, `-LOADING …`)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def encode_command(args: tuple[str, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(parts)


async def read_reply(reader: asyncio.StreamReader) -> RespValue:
    line = await reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [await read_reply(reader) for _ in range(count)]
    raise ConnectionError(f"unexpected reply {line!r}")


async def redis_calls(port: int, commands: list[tuple[str, ...]], timeout: float) -> list[RespValue]:
    """Sends commands pipelined on one fresh connection; an error reply raises."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"".join(encode_command(c) for c in commands))
            await writer.drain()
            return [await read_reply(reader) for _ in commands]
        finally:
            writer.close()


async def redis_call(port: int, *args: str, timeout: float = 5.0) -> RespValue:
    return (await redis_calls(port, [args], timeout))[0]


async def ping_state(port: int, timeout: float = 0.25) -> str:
    """`PONG`, `LOADING`, `DOWN` (refused or no answer in time) or the error text."""
    try:
        reply = await redis_call(port, "PING", timeout=timeout)
    except RedisReplyError as e:
        return "LOADING" if str(e).startswith("LOADING") else str(e)
    except (OSError, TimeoutError, ConnectionError):
        return "DOWN"
    return str(reply)


def info_field(info: str, name: str) -> str | None:
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


@dataclass
class RedisServer:
    """A durable redis-server (AOF, fsync always) the soak kills, stops and restarts."""

    binary: str
    port: int
    directory: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def args(self, key_load_delay_us: int) -> list[str]:
        # While loading, Redis answers clients only every loading-process-events-interval-bytes
        # read (2 MB by default, more than the whole file here): without a small one a slowed
        # load looks like a stall, not `LOADING`.
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--logfile", str(self.log),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--enable-debug-command", "local", "--loading-process-events-interval-bytes", "1024"]
        if key_load_delay_us:
            args += ["--key-load-delay", str(key_load_delay_us)]
        return args

    def start(self, key_load_delay_us: int = 0) -> None:
        self.proc = subprocess.Popen(self.args(key_load_delay_us), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    async def wait_answering(self, timeout: float) -> tuple[bool, bool]:
        """Polls PING until PONG: (answered, LOADING was seen on the way)."""
        deadline = time.monotonic() + timeout
        seen_loading = False
        while time.monotonic() < deadline:
            state = await ping_state(self.port)
            if state == "PONG":
                return True, seen_loading
            seen_loading = seen_loading or state == "LOADING"
            await asyncio.sleep(0.02)
        return False, seen_loading

    async def version(self) -> str:
        info = str(await redis_call(self.port, "INFO", "server"))
        return info_field(info, "redis_version") or "?"

    async def populate_filler(self, keys: int) -> None:
        """DEBUG POPULATE is not written to the AOF: a rewrite puts the filler in the base file."""
        populate = ("DEBUG", "POPULATE", str(keys), "chaos-filler", "16")
        await redis_calls(self.port, [("SELECT", FILLER_DB), populate], 30)
        await self.rewrite_aof()

    async def filler_keys(self) -> int:
        replies = await redis_calls(self.port, [("SELECT", FILLER_DB), ("DBSIZE",)], 5)
        return int(str(replies[1]))

    async def rewrite_aof(self, timeout: float = 30.0) -> None:
        """BGREWRITEAOF and wait for it, so the base file holds every key (and the filler)."""
        deadline = time.monotonic() + timeout
        await self.wait_rewrite_idle(deadline)
        await redis_call(self.port, "BGREWRITEAOF")
        await asyncio.sleep(0.05)
        await self.wait_rewrite_idle(deadline)

    async def wait_rewrite_idle(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            info = str(await redis_call(self.port, "INFO", "persistence"))
            if info_field(info, "aof_rewrite_in_progress") == "0" and info_field(info, "aof_rewrite_scheduled") == "0":
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("redis: BGREWRITEAOF did not finish")

    def close(self) -> None:
        self.kill()


# Short breaker probes; Redis time-outs of 1 s (default 2 s, the clients' own limit), so that a
# request Redis stalls is answered (503) well within the client's limit and a hang means the
# server did not bound a call.
SERVER_ENV = {
    "RUST_LOG": "warn",
    "REDKIT_BREAKER_PROBE_MIN_MS": "50",
    "REDKIT_BREAKER_PROBE_MAX_MS": "500",
    "REDIS_SOCKET_TIMEOUT": "1",
    "REDIS_SOCKET_CONNECT_TIMEOUT": "1",
}


def server_env(redis_port: int, data_dir: Path) -> dict[str, str]:
    """The environment without any redkit or Redis setting of the caller's, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDKIT_", "REDIS_"))}
    env.update(SERVER_ENV)
    env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
    env["REDKIT_DATA_DIR"] = str(data_dir)
    return env


@dataclass
class Server:
    """One `redkit serve`, run from its own directory (so no redkit.toml is picked up)."""

    name: str
    binary: str
    port: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def start(self, redis_port: int) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}"],
                env=server_env(redis_port, self.home / "data"), cwd=self.home,
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def panics(self) -> int:
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("panicked")


@dataclass
class HealthSample:
    sent: float
    mode: str | None
    journal: int | None


def journal_total(health: dict[str, object]) -> int:
    pending = health.get("journal_pending")
    if not isinstance(pending, dict):
        return 0
    return sum(int(v) for v in pending.values())


async def fetch_health(http: aiohttp.ClientSession, url: str) -> tuple[str | None, int | None]:
    try:
        async with asyncio.timeout(1.0):
            async with http.get(f"{url}/health") as resp:
                body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    mode = body.get("mode")
    return (mode if isinstance(mode, str) else None), journal_total(body)


@dataclass
class HealthMonitor:
    """Samples /health of every server every `period` seconds, for as long as it runs."""

    urls: list[str]
    period: float = 0.1
    samples: list[list[HealthSample]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samples = [[] for _ in self.urls]

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                await asyncio.gather(*(self.sample(http, i) for i in range(len(self.urls))))
                await asyncio.sleep(self.period)

    async def sample(self, http: aiohttp.ClientSession, inst: int) -> None:
        sent = time.monotonic()
        mode, journal = await fetch_health(http, self.urls[inst])
        self.samples[inst].append(HealthSample(sent, mode, journal))

    def back_on_redis(self, inst: int, after: float) -> float | None:
        """When a sample sent at or after `after` first said mode redis with an empty journal
        (a server may close its breaker before it has replayed everything)."""
        return next((s.sent for s in self.samples[inst] if s.sent >= after and s.mode == "redis" and s.journal == 0),
                    None)

    def mode_seconds(self, inst: int) -> dict[str, float]:
        """How long /health said each mode (each sample counts until the next)."""
        out: dict[str, float] = {}
        samples = self.samples[inst]
        for s, following in itertools.pairwise(samples):
            mode = s.mode or "unanswered"
            out[mode] = out.get(mode, 0.0) + following.sent - s.sent
        return out

    def modes_between(self, inst: int, start: float, end: float) -> set[str]:
        return {s.mode or "unanswered" for s in self.samples[inst] if start <= s.sent <= end}


async def wait_settled(urls: list[str], timeout: float) -> int:
    """Waits until every server says mode redis with an empty journal, twice in a row;
    answers how many did not by the deadline."""
    deadline = time.monotonic() + timeout
    streak = 0
    unsettled = len(urls)
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            states = await asyncio.gather(*(fetch_health(http, u) for u in urls))
            unsettled = sum(1 for mode, journal in states if not (mode == "redis" and journal == 0))
            streak = streak + 1 if unsettled == 0 else 0
            if streak >= 2:
                return 0
            await asyncio.sleep(0.2)
    return unsettled


async def wait_on_redis(server: Server, timeout: float) -> None:
    """Waits for a starting server's /health to say mode redis."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.exited() is not None:
                raise RuntimeError(f"server {server.name} exited at start-up; see {server.log}")
            mode, _ = await fetch_health(http, server.url)
            if mode == "redis":
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"server {server.name} was not on redis within {timeout:.0f} s; see {server.log}")
