"""The contract is usable by generators: a client generated from the server's ``/openapi.json``
by openapi-python-client calls every route, and every answer parses (cache values, job
payloads and session data as any JSON, the 429 of a check as a decision, errors as the
envelope). The server has an API key, so the generated AuthenticatedClient's bearer is tested too."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

from conftest import Cluster, Server, http_json

KEY = "generated-client-key-0123456789"
PACKAGE = "redkit_generated"


@pytest.fixture(scope="module")
def keyed(cluster: Cluster) -> Server:
    return cluster.server(env={"REDKIT_API_KEYS": KEY})


@pytest.fixture(scope="module")
def generated(keyed: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    root = tmp_path_factory.mktemp("openapi")
    doc = http_json(keyed.url + "/openapi.json")
    (root / "openapi.json").write_text(json.dumps(doc))
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(root / "openapi.json"),
         "--output-path", str(root / PACKAGE), "--meta", "none"],
        check=True,
        cwd=root,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},  # its ruff post-hook
    )  # fmt: skip
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE), doc
    finally:
        sys.path.remove(str(root))


class Caller:
    """Calls generated operations by operationId and remembers which were called."""

    def __init__(self, package: Any, doc: Dict[str, Any], url: str) -> None:
        self.package = package
        self.client = package.AuthenticatedClient(base_url=url, token=KEY, raise_on_unexpected_status=True)
        self.modules: Dict[str, Any] = {}
        for tag_dir in (Path(package.__file__).parent / "api").iterdir():
            for f in tag_dir.glob("*.py"):
                if f.stem != "__init__":
                    self.modules[f.stem] = importlib.import_module(f"{PACKAGE}.api.{tag_dir.name}.{f.stem}")
        self.operations = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
        self.called: Set[str] = set()

    def __call__(
        self, op: str, *args: Any, status: int = 200, body: Optional[Tuple[str, Any]] = None, **kwargs: Any
    ) -> Any:
        if body is not None:
            model, value = body
            kwargs["body"] = value if model == "any" else getattr(self.package.models, model).from_dict(value)
        response = self.modules[op].sync_detailed(*args, client=self.client, **kwargs)
        assert response.status_code == status, (op, response.status_code, response.content[:300])
        self.called.add(op)
        if status != 204 and op != "head_value":
            assert response.parsed is not None or response.content == b"null", op
        return response.parsed


def test_a_generated_client_calls_every_route(generated: Tuple[Any, Dict[str, Any]], keyed: Server, name: str) -> None:
    package, doc = generated
    call = Caller(package, doc, keyed.url)
    assert len(call.operations) >= 48 and call.operations <= set(call.modules), call.operations - set(call.modules)

    assert call("health")["status"] == "ok"
    assert call("ready").mode == "embedded"

    # Rate limits: the 429 answer is a decision as well.
    call("put_policy", name, body=("PolicyBody", {"limit": 1, "period_ms": 60000}))
    assert call("get_policy", name).name == name
    assert name in [p.name for p in call("list_policies")]
    assert call("check", name, body=("CheckRequest", {"key": "k"})).allowed is True
    refused = call("check", name, body=("CheckRequest", {"key": "k"}), status=429)
    assert refused.allowed is False and refused.retry_after_ms > 0
    call("delete_policy", name, status=204)
    assert call("get_policy", name, status=404).error.code == "not_found"

    # Cache: a string value, any JSON, get-or-set.
    call("put_value", name, "k", body=("any", "a string"), ttl_s=60, tags="t1", status=204)
    assert call("get_value", name, "k") == "a string"
    call("head_value", name, "k")
    assert 0 < call("get_ttl", name, "k").ttl_ms <= 60000
    assert call("keys", ns=name).keys == ["k"]
    call("status")
    call("stats")
    claim = call("claim", name, "g", body=("ClaimRequest", {"wait_ms": 0}))
    assert claim.state == "load" and claim.fill_token
    call("put_value", name, "g", body=("any", {"nested": [1, None]}), fill_token=claim.fill_token, status=204)
    assert call("claim", name, "g", body=("ClaimRequest", {})).value == {"nested": [1, None]}
    other = call("claim", name, "h", body=("ClaimRequest", {}))
    call("release_claim", name, "h", fill_token=other.fill_token, status=204)
    warm = {"ns": name, "entries": [{"key": "w1", "value": 1}, {"key": "w2", "value": [2]}]}
    assert call("warm", body=("WarmRequest", warm)).stored == 2
    assert call("delete_value", name, "k").deleted is True
    assert call("clear", body=("ClearRequest", {"ns": name})).removed == 3

    # Locks.
    lock = call("acquire", name, body=("AcquireRequest", {"ttl_ms": 5000}))
    call("extend", name, body=("ExtendRequest", {"token": lock.token, "ttl_ms": 5000}))
    assert call("release_lock", name, body=("ReleaseRequest", {"token": lock.token})).released is True

    # Sessions: data of any JSON.
    s = call("create", body=("CreateRequest", {"user": name, "data": {"cart": [1, "two"]}}), status=201)
    assert call("get_session", s.id).data.to_dict() == {"cart": [1, "two"]}
    call("patch_session", s.id, body=("PatchRequest", {"data": {"theme": "dark"}}))
    rotated = call("rotate", s.id)
    assert [x.id for x in call("list_user", name)] == [rotated.id]
    assert call("delete_session", rotated.id).deleted is True
    call("create", body=("CreateRequest", {"user": name, "data": {}}), status=201)
    assert call("revoke_user", name).revoked == 1

    # Jobs: payloads of any JSON, every settle, the dead-letter routes.
    q = name
    call("enqueue", q, body=("EnqueueRequest", {"payload": "a string payload", "id": "j1"}), status=201)
    assert (
        len(
            call(
                "enqueue_batch",
                q,
                body=(
                    "BatchRequest",
                    {"jobs": [{"payload": [1], "max_attempts": 1}, {"payload": None, "max_attempts": 1}]},
                ),
            )
        )
        == 2
    )
    assert q in [x.name for x in call("list_queues")]
    assert call("queue_stats", q).waiting == 3
    assert len(call("list_jobs", q, state="waiting")) == 3

    def fetch_one() -> Any:
        [job] = call("fetch", q, body=("FetchRequest", {"worker": "gen", "max": 1})).jobs
        return job

    job = fetch_one()
    assert job.payload == "a string payload"
    call("heartbeat", q, job.id, body=("HeartbeatRequest", {"token": job.token}))
    call("progress", q, job.id, body=("ProgressRequest", {"token": job.token, "progress": {"pct": 50}}))
    assert call("get_job", q, job.id).state == "active"
    assert call("ack", q, job.id, body=("TokenRequest", {"token": job.token})).outcome == "completed"
    job = fetch_one()
    assert call("release_job", q, job.id, body=("TokenRequest", {"token": job.token})).outcome == "released"
    ids: List[str] = []
    for _ in range(2):
        job = fetch_one()
        ids.append(job.id)
        call("fail", q, job.id, body=("FailRequest", {"token": job.token, "error": "boom"}))
    call("pause", q)
    call("fetch", q, body=("FetchRequest", {"worker": "gen"}), status=204)
    call("resume", q)
    # Dead at the first failure (max_attempts 1); then each dead-letter route.
    while call("queue_stats", q).dead < 2:
        j = call("fetch", q, body=("FetchRequest", {"worker": "gen", "max": 2, "wait_ms": 2000}))
        for job in j.jobs:
            call("fail", q, job.id, body=("FailRequest", {"token": job.token, "error": "boom"}))
    assert len(call("list_dead", q)) == 2
    assert call("retry_dead", q, ids[0]).count == 1
    assert call("retry_all_dead", q).count == 1
    while call("queue_stats", q).dead < 2:
        j = call("fetch", q, body=("FetchRequest", {"worker": "gen", "max": 2, "wait_ms": 2000}))
        for job in j.jobs:
            call("fail", q, job.id, body=("FailRequest", {"token": job.token, "error": "boom"}))
    assert call("purge_dead", q, ids[0]).count == 1
    assert call("purge_all_dead", q).count == 1

    # Channels (once the server has them): the event stream is read as a stream, with the
    # request the generated module builds; the WebSocket route answers a plain GET with 400.
    if "publish" in call.operations:
        # Publication data is any JSON, as cache values and job payloads are (a string here).
        pos = call("publish", name, body=("PublishRequest", {"data": "a string", "idempotency_key": "once"}))
        assert call("publish", name, body=("PublishRequest", {"data": "a string", "idempotency_key": "once"})) == pos
        page = call("history", name, limit=10)
        assert [p.data for p in page.publications] == ["a string"] and page.offset == pos.offset
        assert call("history", name, since_epoch="other", since_offset=1, status=409).error.code == "conflict"
        assert isinstance(call("list_channels").channels, list)
        # A channel token reads without the key.
        issued = call("issue_token", body=("ChannelTokenRequest", {"channels": [name], "ttl_s": 60}))
        assert issued.token and issued.expires_at_ms > 0
        assert call("history", name, token=issued.token).offset == pos.offset
        kwargs = call.modules["events"]._get_kwargs(name, last_event_id=f"{pos.epoch}:0")
        with call.client.get_httpx_client().stream(**kwargs) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines) == "event: subscribed"
            call.called.add("events")
        assert call("ws", status=400).error.code == "invalid_input"

    # The dashboard's own operations: the key's scopes, and the first snapshot of its stream.
    assert call("dashboard_me").keys_required is True
    kwargs = call.modules["dashboard_events"]._get_kwargs()
    with call.client.get_httpx_client().stream(**kwargs) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_lines()) == "event: snapshot"
        call.called.add("dashboard_events")

    # Records (once the server has them): a collection, versioned records (a 409 is the
    # envelope), get-many with its nulls, a query page, a capped list and a counter.
    if "define_collection" in call.operations:
        c = name
        spec = {"indexes": [{"field": "status", "kind": "equal"}, {"field": "score", "kind": "range"}], "ttl_s": 0}
        assert call("define_collection", c, body=("CollectionSpec", spec)).name == c
        assert call("get_collection", c).count == 0
        assert c in [x.name for x in call("list_collections").collections]
        data = {"status": "open", "score": 1.5, "tags": ["a", None], "nested": {"n": 1}}
        w = call("put_record", c, "r1", body=("WriteRequest", {"data": data, "if_version": 0}))
        conflict = call("put_record", c, "r1", body=("WriteRequest", {"data": {}, "if_version": 0}), status=409)
        assert conflict.error.code == "conflict"
        record = call("get_record", c, "r1")
        assert record.data.to_dict() == data and record.version == w.version
        call("patch_record", c, "r1", body=("WriteRequest", {"data": {"tags": None}, "if_version": w.version}))
        assert call("incr_record", c, "r1", body=("IncrRequest", {"field": "n", "by": 2})).value == 2
        many = call("get_many", c, body=("GetManyRequest", {"ids": ["r1", "nope"]})).records
        assert len(many) == 2 and many[0].data.to_dict()["n"] == 2 and many[1] is None
        page = call("query_records", c, body=("QueryBody", {"where": {"status": "open"}, "limit": 1}))
        assert [r.id for r in page.records] == ["r1"]
        call("delete_record", c, "r1", status=204)
        assert call("get_record", c, "r1", status=404).error.code == "not_found"
        call("delete_collection", c, status=204)
        assert call("get_collection", c, status=404).error.code == "not_found"

        assert call("push_list", name, body=("PushRequest", {"items": [{"a": 1}, {"b": [2]}], "cap": 1})).length == 1
        listed = call("range_list", name, offset=0, limit=10)
        assert listed.length == 1 and listed.items == [{"b": [2]}]
        call("delete_list", name, status=204)

        assert call("incr_counter", name, body=("CounterIncr", {"by": 2, "labels": {"k": "v"}})).minute == 2
        series = call("range_counter", name, labels=json.dumps({"k": "v"}))
        assert sum(b.value for b in series.buckets) == 2
        assert [s.to_dict() for s in call("counter_labels", name).labels] == [{"k": "v"}]

    assert call.called == call.operations, call.operations - call.called


def test_a_generated_client_pushes_list_items_of_any_json(
    generated: Tuple[Any, Dict[str, Any]], keyed: Server, name: str
) -> None:
    package, doc = generated
    call = Caller(package, doc, keyed.url)
    assert call("push_list", name, body=("PushRequest", {"items": ["a string", 2, None], "cap": 5})).length == 3
    assert call("range_list", name).items == [None, 2, "a string"]
