"""redkit: cache, sessions, rate limits, locks, background jobs and pub/sub, from Python.

The client of ``redkit serve`` (HTTP/JSON). ``redkit.AsyncClient`` for asyncio code,
``redkit.Client`` for the rest; both take one server URL or several (failover).

    async with redkit.AsyncClient("http://127.0.0.1:7070") as rk:
        await rk.cache("users").set("42", {"name": "ada"}, ttl=60)
        user = await rk.cache("users").get("42")
"""

from ._version import API_VERSION, __version__
from .cache import Cache, Claim
from .channels import Channels, Gap, History, Message, Position, Publication, Subscription
from .client import AsyncClient
from .errors import (
    Conflict,
    ConnectError,
    Error,
    Forbidden,
    InvalidInput,
    LockLost,
    NotFound,
    RateLimited,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from .jobs import Backoff, Enqueued, Job, JobInfo, JobSpec, Queue, Worker
from .locks import Lock
from .ratelimit import Decision, RateLimits
from .sessions import Session, Sessions
from .sync import Client

__all__ = [
    "API_VERSION",
    "__version__",
    "AsyncClient",
    "Client",
    "Cache",
    "Claim",
    "Sessions",
    "Session",
    "RateLimits",
    "Decision",
    "Lock",
    "Channels",
    "Position",
    "Publication",
    "History",
    "Message",
    "Gap",
    "Subscription",
    "Queue",
    "Job",
    "JobInfo",
    "JobSpec",
    "Enqueued",
    "Backoff",
    "Worker",
    "Error",
    "InvalidInput",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "TooLarge",
    "RateLimited",
    "Unavailable",
    "ConnectError",
    "Timeout",
    "LockLost",
]
