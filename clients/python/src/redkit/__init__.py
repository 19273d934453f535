"""redkit: cache, sessions, rate limits, locks, jobs, pub/sub and records, from Python.

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
from .counters import Bucket, Counters, CounterValues, Series
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
from .lists import ListPage, Lists
from .locks import Lock
from .ratelimit import Decision, RateLimits
from .records import (
    Collection,
    CollectionInfo,
    Collections,
    Incremented,
    Index,
    Range,
    Record,
    RecordPage,
    Redact,
    Written,
)
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
    "Collection",
    "Collections",
    "CollectionInfo",
    "Index",
    "Record",
    "RecordPage",
    "Written",
    "Incremented",
    "Range",
    "Redact",
    "Lists",
    "ListPage",
    "Counters",
    "CounterValues",
    "Series",
    "Bucket",
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
