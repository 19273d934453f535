"""Background jobs: ``rk.queue(name)`` and ``redkit.Worker``.

Promises: an enqueue is safe to repeat (the client gives every job an id, so a retry after a
lost answer adds nothing); a fetch is never repeated once sent; a :class:`Worker` acks what
its handler finished, fails what raised, heartbeats while a handler runs, backs off while
redkit is away, and on shutdown lets running jobs finish or releases them (not counted as an
attempt). Delivery is at least once: a job whose lease ended runs again.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import logging
import os
import random
import socket
import time
import traceback
import uuid
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Set,
    TypeVar,
    Union,
)

from . import errors
from ._http import seg

if TYPE_CHECKING:
    from .client import AsyncClient
    from .sync import Client

log = logging.getLogger("redkit")

RunAt = Union[float, int, _dt.datetime]
Handler = Callable[["Job"], Any]
H = TypeVar("H", bound=Handler)

#: The payload field that names a task (``@worker.task``) and the one holding its arguments.
TASK_FIELD = "task"
ARGS_FIELD = "args"


class Backoff:
    """Delay between a failed job's attempts (seconds)."""

    @staticmethod
    def fixed(delay: float) -> Dict[str, Any]:
        return {"kind": "fixed", "delay_ms": int(delay * 1000)}

    @staticmethod
    def exponential(base: float, max: float) -> Dict[str, Any]:  # noqa: A002 - the server's word
        return {"kind": "exponential", "base_ms": int(base * 1000), "max_ms": int(max * 1000)}


class JobSpec:
    """One job of a batch, with the options :meth:`Queue.enqueue` takes."""

    def __init__(
        self,
        payload: Any,
        *,
        delay: Optional[float] = None,
        run_at: Optional[RunAt] = None,
        priority: Optional[int] = None,
        unique_key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        id: Optional[str] = None,  # noqa: A002 - the contract's name
        backoff: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.body = _enqueue_body(payload, delay, run_at, priority, unique_key, max_attempts, id, backoff, timeout)


def _enqueue_body(
    payload: Any,
    delay: Optional[float],
    run_at: Optional[RunAt],
    priority: Optional[int],
    unique_key: Optional[str],
    max_attempts: Optional[int],
    id: Optional[str],  # noqa: A002
    backoff: Optional[Mapping[str, Any]],
    timeout: Optional[float],
) -> Dict[str, Any]:
    # A job id made here when none is given makes every enqueue safe to repeat: the server
    # adds nothing for an id it has (so a retry after a lost answer cannot add a second job).
    body: Dict[str, Any] = {"payload": payload, "id": id if id is not None else uuid.uuid4().hex}
    if delay is not None:
        body["delay_ms"] = max(0, int(delay * 1000))
    if run_at is not None:
        ts = run_at.timestamp() if isinstance(run_at, _dt.datetime) else float(run_at)
        body["run_at_ms"] = max(0, int(ts * 1000))
    if priority is not None:
        body["priority"] = priority
    if unique_key is not None:
        body["unique_key"] = unique_key
    if max_attempts is not None:
        body["max_attempts"] = max_attempts
    if backoff is not None:
        body["backoff"] = dict(backoff)
    if timeout is not None:
        body["timeout_ms"] = max(0, int(timeout * 1000))
    return body


class Enqueued:
    """``id`` of the job now pending (the new one, or the one that made this a duplicate)
    and whether this call ``created`` it."""

    __slots__ = ("created", "id")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.id: str = raw["id"]
        self.created: bool = bool(raw["created"])

    def __repr__(self) -> str:
        return f"Enqueued(id={self.id!r}, created={self.created})"


class JobInfo:
    """A job as stored (``GET /v1/queues/{q}/jobs/{id}``); ``raw`` has every field."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.id: str = raw["id"]
        self.state: str = raw["state"]
        self.payload: Any = raw.get("payload")
        self.attempts: int = int(raw.get("attempts", 0))
        self.max_attempts: int = int(raw.get("max_attempts", 0))
        self.last_error: Optional[str] = raw.get("last_error")
        self.progress: Any = raw.get("progress")

    def __repr__(self) -> str:
        return f"JobInfo(id={self.id!r}, state={self.state!r}, attempts={self.attempts})"


class Job:
    """A job leased to this worker: ``id``, ``payload``, ``attempt`` (1-based), ``progress``
    (reported by an earlier attempt), and the lease's ``token``. Settle it with
    :meth:`ack`, :meth:`fail` or :meth:`release` (a :class:`Worker` does that for you);
    :meth:`heartbeat` and :meth:`set_progress` renew the lease."""

    def __init__(self, queue: Queue, raw: Mapping[str, Any]) -> None:
        self.queue = queue
        self.raw = dict(raw)
        self.id: str = raw["id"]
        self.token: str = raw["token"]
        self.payload: Any = raw.get("payload")
        self.attempt: int = int(raw.get("attempt", 1))
        self.max_attempts: int = int(raw.get("max_attempts", 1))
        self.priority: int = int(raw.get("priority", 0))
        self.timeout: Optional[float] = (raw.get("timeout_ms") or 0) / 1000.0 or None
        self.progress: Any = raw.get("progress")
        self.lease_until_ms: int = int(raw.get("lease_until_ms", 0))
        self.lost = False
        """True once a heartbeat found the lease gone (another worker may run it now)."""

    @property
    def task(self) -> Optional[str]:
        """The task name of a ``@worker.task`` payload (``{"task": name, "args": ...}``)."""
        if isinstance(self.payload, dict):
            name = self.payload.get(TASK_FIELD)
            return name if isinstance(name, str) else None
        return None

    @property
    def args(self) -> Any:
        """The arguments of a task payload (the payload itself otherwise)."""
        if self.task is not None and isinstance(self.payload, dict):
            return self.payload.get(ARGS_FIELD)
        return self.payload

    async def ack(self) -> str:
        return await self.queue.ack(self.id, self.token)

    async def fail(self, error: str) -> str:
        return await self.queue.fail(self.id, self.token, error)

    async def release(self) -> str:
        return await self.queue.release(self.id, self.token)

    async def heartbeat(self, lease: Optional[float] = None) -> None:
        self.lease_until_ms = await self.queue.heartbeat(self.id, self.token, lease)

    async def set_progress(self, progress: Any, lease: Optional[float] = None) -> None:
        """Records progress (any JSON; a later attempt sees it) and renews the lease."""
        self.lease_until_ms = await self.queue.progress(self.id, self.token, progress, lease)
        self.progress = progress

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, attempt={self.attempt}, payload={self.payload!r})"


class Queue:
    """One job queue. Durations are seconds."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name
        self._path = f"/v1/queues/{seg(name)}"

    async def enqueue(
        self,
        payload: Any,
        *,
        delay: Optional[float] = None,
        run_at: Optional[RunAt] = None,
        priority: Optional[int] = None,
        unique_key: Optional[str] = None,
        max_attempts: Optional[int] = None,
        id: Optional[str] = None,  # noqa: A002 - the contract's name
        backoff: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> Enqueued:
        """Adds a job (``payload``: any JSON). ``delay`` seconds or ``run_at`` (a datetime or
        Unix seconds); ``priority`` -1000..1000 (higher first); ``unique_key``: no second job
        with it while one is pending; ``id``: yours (enqueueing it again adds nothing; made
        here when not given, so a retried enqueue never adds twice); ``timeout``: the
        handler's limit per attempt."""
        body = _enqueue_body(payload, delay, run_at, priority, unique_key, max_attempts, id, backoff, timeout)
        return Enqueued(await self._client.call("POST", self._path + "/jobs", body=body, safe=True))

    async def enqueue_task(self, task: str, args: Any = None, **options: Any) -> Enqueued:
        """Enqueues ``{"task": task, "args": args}`` for a ``@worker.task(task)`` handler."""
        return await self.enqueue({TASK_FIELD: task, ARGS_FIELD: args}, **options)

    async def enqueue_batch(self, jobs: Iterable[Union[JobSpec, Any]]) -> List[Enqueued]:
        """Adds up to 1000 jobs atomically (all or none): payloads, or :class:`JobSpec`."""
        bodies = [
            j.body if isinstance(j, JobSpec) else _enqueue_body(j, None, None, None, None, None, None, None, None)
            for j in jobs
        ]
        answer = await self._client.call("POST", self._path + "/batch", body={"jobs": bodies}, safe=True)
        return [Enqueued(e) for e in answer]

    async def fetch(
        self,
        worker: str,
        max: int = 1,  # noqa: A002 - the server's word
        *,
        lease: Optional[float] = None,
        wait: float = 0.0,
    ) -> List[Job]:
        """Leases up to ``max`` ready jobs, waiting up to ``wait`` seconds (at most 60) for
        one. Not retried once sent (a lost answer's jobs come back when their lease ends)."""
        body: Dict[str, Any] = {"worker": worker, "max": max}
        if lease is not None:
            body["lease_ms"] = int(lease * 1000)
        if wait:
            body["wait_ms"] = int(min(wait, 60.0) * 1000)
        r = await self._client.request("POST", self._path + "/fetch", body=body, safe=False, wait=wait)
        if r.status == 204:
            return []
        if r.status != 200:
            raise r.error()
        return [Job(self, j) for j in r.json()["jobs"]]

    async def _settle(self, job_id: str, action: str, body: Dict[str, Any]) -> str:
        answer = await self._client.call("POST", f"{self._path}/jobs/{seg(job_id)}/{action}", body=body, safe=True)
        return str(answer["outcome"])

    async def ack(self, job_id: str, token: str) -> str:
        """Completes a leased job; the outcome (``completed``, ``lease_lost``, ``deferred``)."""
        return await self._settle(job_id, "ack", {"token": token})

    async def fail(self, job_id: str, token: str, error: str) -> str:
        """Fails this attempt (``retrying`` or ``dead``)."""
        return await self._settle(job_id, "fail", {"token": token, "error": error[:4096]})

    async def release(self, job_id: str, token: str) -> str:
        """Gives a leased job back unrun (the attempt is not counted)."""
        return await self._settle(job_id, "release", {"token": token})

    async def heartbeat(self, job_id: str, token: str, lease: Optional[float] = None) -> int:
        body: Dict[str, Any] = {"token": token}
        if lease is not None:
            body["lease_ms"] = int(lease * 1000)
        answer = await self._client.call("POST", f"{self._path}/jobs/{seg(job_id)}/heartbeat", body=body, safe=True)
        return int(answer["lease_until_ms"])

    async def progress(self, job_id: str, token: str, progress: Any, lease: Optional[float] = None) -> int:
        body: Dict[str, Any] = {"token": token, "progress": progress}
        if lease is not None:
            body["lease_ms"] = int(lease * 1000)
        answer = await self._client.call("POST", f"{self._path}/jobs/{seg(job_id)}/progress", body=body, safe=True)
        return int(answer["lease_until_ms"])

    async def get(self, job_id: str) -> Optional[JobInfo]:
        r = await self._client.request("GET", f"{self._path}/jobs/{seg(job_id)}", safe=True)
        if r.status == 404:
            return None
        if r.status != 200:
            raise r.error()
        return JobInfo(r.json())

    async def list(self, state: Optional[str] = None, *, offset: int = 0, limit: int = 100) -> List[JobInfo]:
        """Jobs in ``state`` (waiting, delayed, active, completed, dead)."""
        body = await self._client.call(
            "GET", self._path + "/jobs", query={"state": state, "offset": offset, "limit": limit}, safe=True
        )
        return [JobInfo(j) for j in body]

    async def stats(self) -> Dict[str, Any]:
        """Counts: waiting, active, delayed, completed, dead, totals, paused."""
        result: Dict[str, Any] = await self._client.call("GET", self._path, safe=True)
        return result

    async def pause(self) -> None:
        await self._client.call("POST", self._path + "/pause", safe=True)

    async def resume(self) -> None:
        await self._client.call("POST", self._path + "/resume", safe=True)

    async def dead(self, *, offset: int = 0, limit: int = 100) -> List[JobInfo]:
        body = await self._client.call("GET", self._path + "/dead", query={"offset": offset, "limit": limit}, safe=True)
        return [JobInfo(j) for j in body]

    async def retry_dead(self, job_id: Optional[str] = None) -> int:
        """Moves a dead job (or every one) back to waiting; how many."""
        path = self._path + ("/dead/retry" if job_id is None else f"/dead/{seg(job_id)}/retry")
        body = await self._client.call("POST", path, safe=True)
        return _count(body)

    async def purge_dead(self, job_id: Optional[str] = None) -> int:
        """Removes a dead job (or every one); how many."""
        path = self._path + ("/dead" if job_id is None else f"/dead/{seg(job_id)}")
        body = await self._client.call("DELETE", path, safe=True)
        return _count(body)

    def __repr__(self) -> str:
        return f"redkit.Queue({self.name!r})"


def _count(body: Any) -> int:
    if isinstance(body, dict):
        for k in ("count", "retried", "purged", "deleted"):
            if k in body:
                v = body[k]
                return int(v)
    return 0


class Worker:
    """Runs jobs of one queue: ``await worker.run()`` until ``await worker.shutdown()``.

    ``handler(job)`` (``async def``, or a plain function run in a thread) runs each job; it
    returning acks the job, raising fails the attempt (retried with the queue's backoff
    until ``max_attempts``). Or register several job types with ``@worker.task("name")``
    and enqueue them with ``queue.enqueue_task("name", args)``.

    Up to ``concurrency`` jobs run at once. Leases (``lease`` seconds) are renewed by a
    heartbeat every ``lease / 3``. While redkit answers 503 or cannot be reached the worker
    backs off (jittered, up to ``max_backoff`` seconds) instead of spinning. Shutdown stops
    fetching, lets running jobs finish for up to ``shutdown_timeout`` seconds and releases
    the rest (they run again at once elsewhere, the attempt not counted).
    """

    def __init__(
        self,
        client: Union[AsyncClient, Client],
        queue: Union[str, Queue],
        handler: Optional[Handler] = None,
        *,
        concurrency: int = 1,
        name: Optional[str] = None,
        lease: float = 30.0,
        poll_wait: float = 20.0,
        shutdown_timeout: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        from .sync import Client

        self._portal = None
        if isinstance(client, Client):
            self._portal = client._portal
            client = client.async_client
        self.client = client
        self.queue = queue if isinstance(queue, Queue) else client.queue(queue)
        self.handler = handler
        self.tasks: Dict[str, Handler] = {}
        self.concurrency = max(1, concurrency)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = lease
        self.poll_wait = min(poll_wait, 60.0)
        self.shutdown_timeout = shutdown_timeout
        self.max_backoff = max_backoff
        self.processed = 0
        self.failed = 0
        self._active: Set[asyncio.Task[None]] = set()
        self._stop: Optional[asyncio.Event] = None
        self._slot: Optional[asyncio.Event] = None
        self._done: Optional[asyncio.Event] = None
        self._running = False

    def task(self, name: Optional[str] = None) -> Callable[[H], H]:
        """Registers a handler for payloads ``{"task": name, "args": ...}`` (default name:
        the function's). ``job.args`` holds the arguments."""

        def register(func: H) -> H:
            self.tasks[name or str(getattr(func, "__name__", func))] = func
            return func

        return register

    @property
    def running(self) -> bool:
        return self._running

    async def run(self) -> None:
        """Fetches and runs jobs until :meth:`shutdown`."""
        if self._running:
            raise RuntimeError("redkit: this worker is running already")
        self._running = True
        self._stop = asyncio.Event()
        self._slot = asyncio.Event()
        self._done = asyncio.Event()
        backoff = 0.0
        try:
            while not self._stop.is_set():
                free = self.concurrency - len(self._active)
                if free <= 0:
                    self._slot.clear()
                    await _first(self._slot.wait(), self._stop.wait())
                    continue
                try:
                    jobs = await _first(
                        self.queue.fetch(self.name, free, lease=self.lease, wait=self.poll_wait),
                        self._stop.wait(),
                    )
                except (errors.Unavailable, OSError) as e:
                    backoff = min(self.max_backoff, max(0.1, backoff * 2))
                    log.warning("redkit worker %s: fetch failed (%r); backing off %.1f s", self.name, e, backoff)
                    await _first(asyncio.sleep(backoff * (0.5 + random.random() / 2)), self._stop.wait())
                    continue
                except errors.Error as e:
                    backoff = min(self.max_backoff, max(0.1, backoff * 2))
                    log.error("redkit worker %s: fetch refused (%r); backing off %.1f s", self.name, e, backoff)
                    await _first(asyncio.sleep(backoff), self._stop.wait())
                    continue
                if jobs is _STOPPED:
                    break
                backoff = 0.0
                for job in jobs:
                    t = asyncio.ensure_future(self._process(job))
                    self._active.add(t)
                    t.add_done_callback(self._finished)
        finally:
            await self._drain()
            self._running = False
            self._done.set()

    async def shutdown(self, timeout: Optional[float] = None) -> None:
        """Stops fetching; running jobs get ``timeout`` seconds (default
        ``shutdown_timeout``) to finish, the rest are released. Returns once :meth:`run` has
        returned."""
        if timeout is not None:
            self.shutdown_timeout = timeout
        if self._stop is None or self._done is None:
            return
        self._stop.set()
        await self._done.wait()

    def run_blocking(self) -> None:
        """For a worker made with a sync ``redkit.Client``: runs on the client's thread and
        blocks until :meth:`stop` (from another thread, or a signal handler)."""
        if self._portal is None:
            raise RuntimeError("redkit: run_blocking() is for workers of a redkit.Client; await run() instead")
        self._portal.call(self.run())

    def stop(self, timeout: Optional[float] = None) -> None:
        """:meth:`shutdown` from a thread, for a worker of a sync ``redkit.Client``."""
        if self._portal is None:
            raise RuntimeError("redkit: stop() is for workers of a redkit.Client; await shutdown() instead")
        self._portal.call(self.shutdown(timeout))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        if self._slot is not None:
            self._slot.set()

    async def _drain(self) -> None:
        if not self._active:
            return
        _, pending = await asyncio.wait(set(self._active), timeout=self.shutdown_timeout)
        for t in pending:
            t.cancel()  # _process releases the job
        if pending:
            await asyncio.wait(pending)

    def _handler_for(self, job: Job) -> Optional[Handler]:
        name = job.task
        if name is not None and name in self.tasks:
            return self.tasks[name]
        return self.handler

    async def _process(self, job: Job) -> None:
        handler = self._handler_for(job)
        beat = asyncio.ensure_future(self._heartbeat(job))
        try:
            if handler is None:
                raise LookupError(f"no handler for task {job.task!r}" if job.task else "no handler")
            if inspect.iscoroutinefunction(handler):
                coro = handler(job)
            else:
                coro = asyncio.to_thread(handler, job)
            if job.timeout:
                await asyncio.wait_for(coro, job.timeout)
            else:
                await coro
        except asyncio.CancelledError:
            beat.cancel()
            await asyncio.shield(self._settle(job, "release"))
            raise
        except Exception as e:
            beat.cancel()
            self.failed += 1
            log.info("redkit worker %s: job %s failed: %r", self.name, job.id, e)
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            await self._settle(job, "fail", detail)
        else:
            beat.cancel()
            self.processed += 1
            await self._settle(job, "ack")

    async def _heartbeat(self, job: Job) -> None:
        interval = self.lease / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await job.heartbeat(self.lease)
                interval = self.lease / 3
            except errors.Conflict:
                job.lost = True
                log.warning("redkit worker %s: lease of job %s lost", self.name, job.id)
                return
            except errors.Error as e:
                interval = max(0.05, self.lease / 10)
                log.warning("redkit worker %s: heartbeat of job %s failed (%r)", self.name, job.id, e)

    async def _settle(self, job: Job, action: str, error: str = "") -> None:
        """Acks, fails or releases, retrying while redkit is unavailable (up to the lease:
        after that the job comes back by itself)."""
        give_up = time.monotonic() + self.lease
        backoff = 0.1
        while True:
            try:
                if action == "ack":
                    await job.ack()
                elif action == "fail":
                    await job.fail(error)
                else:
                    await job.release()
                return
            except (errors.Unavailable, OSError) as e:
                if time.monotonic() + backoff > give_up:
                    log.error(
                        "redkit worker %s: could not %s job %s (%r); it will run again", self.name, action, job.id, e
                    )
                    return
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
            except errors.Error as e:
                log.warning("redkit worker %s: %s of job %s refused (%r)", self.name, action, job.id, e)
                return


class _Stopped:
    pass


_STOPPED: Any = _Stopped()


async def _first(main: Awaitable[Any], stop: Awaitable[Any]) -> Any:
    """``main``'s result, or ``_STOPPED`` if ``stop`` finishes first (``main`` cancelled)."""
    main_task = asyncio.ensure_future(main)
    stop_task = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({main_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        main_task.cancel()
        stop_task.cancel()
        raise
    stop_task.cancel()
    if main_task.done():
        return main_task.result()
    main_task.cancel()
    try:
        await main_task
    except (asyncio.CancelledError, Exception):
        pass
    return _STOPPED
