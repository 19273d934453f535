"""``redkit.Client``: the same surface without ``await``, as a context manager."""

from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest

import redkit
from conftest import Server


def test_sync_client_surface(embedded: Server, name: str) -> None:
    with redkit.Client(embedded.url) as rk:
        c = rk.cache(name)
        c.set("k", {"v": 1}, ttl=60, tags=["t"])
        assert c.get("k") == {"v": 1} and c.exists("k") and c.get("nope") is None
        assert c.get_many(["k", "nope"]) == {"k": {"v": 1}}
        assert c.invalidate_tag("t") == 1 and c.get("k") is None

        loads: List[int] = []

        @c.cached(ttl=60, key="sq:{n}")
        def square(n: int) -> int:
            loads.append(n)
            return n * n

        assert square(3) == 9 and square(3) == 9 and loads == [3]

        @c.invalidates(["sq:{n}"])
        def touch(n: int) -> None:
            pass

        touch(3)
        assert square(3) == 9 and loads == [3, 3]

        s = rk.sessions.create({"a": 1}, user=name)
        assert s.id is not None and rk.sessions.get(s.id) is not None
        assert rk.sessions.update(s.id, {"b": 2}).data == {"a": 1, "b": 2}
        assert rk.sessions.revoke_all(name) == 1

        rk.ratelimit.define(name, limit=1, period=60)
        assert rk.ratelimit.check(name, "k").allowed
        with pytest.raises(redkit.RateLimited):
            rk.ratelimit.hit(name, "k")

        with rk.lock(name, ttl=0.6) as lock:
            assert lock.fence > 0
            time.sleep(1.2)  # the watchdog renews from the client's own thread meanwhile
            with pytest.raises(redkit.Conflict):
                rk.lock(name, ttl=5).acquire()
            assert not lock.is_lost

        q = rk.queue(name)
        q.enqueue({"n": 1})
        [job] = q.fetch("w", 1)
        assert job.payload == {"n": 1}
        assert q.ack(job.id, job.token) == "completed"
    with pytest.raises(redkit.Error):
        rk.cache(name).get("k")  # closed


def test_sync_worker_runs_in_its_thread(embedded: Server, name: str) -> None:
    seen: List[Any] = []
    with redkit.Client(embedded.url) as rk:
        worker = redkit.Worker(rk, name, lambda job: seen.append(job.payload), poll_wait=0.3)
        t = threading.Thread(target=worker.run_blocking)
        t.start()
        for i in range(5):
            rk.queue(name).enqueue(i)
        deadline = time.monotonic() + 5
        while len(seen) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker.stop()
        t.join(5)
        assert not t.is_alive() and sorted(seen) == list(range(5))


def test_sync_client_from_several_threads(embedded: Server, name: str) -> None:
    with redkit.Client(embedded.url) as rk:
        c = rk.cache(name)

        def work(i: int) -> None:
            for j in range(20):
                c.set(f"{i}:{j}", j)
                assert c.get(f"{i}:{j}") == j

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(c.get_many([f"{i}:{j}" for i in range(4) for j in range(20)])) == 80
