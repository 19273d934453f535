"""The soak's HTTP client: every request is recorded (capability, operation, instance, start,
duration, status or exception) with a client-side time limit; a request over it is a hang."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp

TIMEOUT_S = 2.0


class Outcome(Enum):
    """What a write's answer says about whether it took effect."""

    ACK = "ack"  # 2xx: it did
    REFUSED = "refused"  # 4xx: it did not
    UNKNOWN = "unknown"  # 5xx, time-out or broken connection: it may have, now or later


@dataclass
class Call:
    cap: str
    op: str
    inst: int
    start: float
    end: float
    status: int | None
    error: str | None = None
    target: str = ""  # method and path (long ids cut short), and what a create or rotation answered

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> Outcome:
        if self.ok:
            return Outcome.ACK
        if self.status is not None and 400 <= self.status < 500:
            return Outcome.REFUSED
        return Outcome.UNKNOWN

    @property
    def label(self) -> str:
        """The column this call is counted under in the report."""
        if self.error is not None:
            return self.error
        if self.ok:
            return "2xx"
        return str(self.status)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Reply:
    call: Call
    body: Any


def parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def short_id(text: str) -> str:
    """A session id as findings.md shows it: its first 10 characters."""
    return text[:10] + "…" if len(text) > 16 else text


def short_path(path: str) -> str:
    return "/".join(short_id(part) for part in path.split("/"))


@dataclass
class Http:
    """One aiohttp session per server; `calls` is the log of every request made."""

    urls: list[str]
    calls: list[Call] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    async def open(self) -> None:
        for _ in self.urls:
            connector = aiohttp.TCPConnector(limit=200)
            self.sessions.append(aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)))

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()

    async def request(self, cap: str, op: str, inst: int, method: str, path: str,
                      body: Any = None, timeout: float = TIMEOUT_S) -> Reply:
        start = time.monotonic()
        status: int | None = None
        error: str | None = None
        parsed: Any = None
        try:
            async with asyncio.timeout(timeout):
                async with self.sessions[inst].request(method, self.urls[inst] + path, json=body) as resp:
                    status = resp.status
                    parsed = parse_body(await resp.read())
        except TimeoutError:
            status, error = None, "timeout"
        except aiohttp.ClientError as e:
            status, error = None, f"error:{type(e).__name__}"
        call = Call(cap, op, inst, start, time.monotonic(), status, error, f"{method} {short_path(path)}")
        self.calls.append(call)
        return Reply(call, parsed)
