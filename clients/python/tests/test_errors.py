"""Errors: the server's JSON envelope becomes one exception class per code."""

from __future__ import annotations

import pytest

import redkit
from conftest import Cluster, Server


async def test_envelope_codes_become_classes(rk: redkit.AsyncClient, name: str) -> None:
    with pytest.raises(redkit.NotFound) as nf:
        await rk.call("GET", "/v1/no-such-route", safe=True)
    assert nf.value.status == 404 and nf.value.code == "not_found" and nf.value.request_id
    with pytest.raises(redkit.Error) as na:
        await rk.call("PATCH", "/v1/cache/status", safe=True)
    assert na.value.status == 405 and type(na.value) is redkit.Error
    with pytest.raises(redkit.InvalidInput) as bad:
        await rk.call("POST", f"/v1/queues/{name}/jobs", body={"payload": 1, "surprise": True}, safe=True)
    assert "surprise" in bad.value.message
    with pytest.raises(redkit.InvalidInput):
        await rk.call("POST", f"/v1/queues/{name}/jobs", body={"payload": 1, "priority": "high"}, safe=True)
    with pytest.raises(redkit.TooLarge) as big:
        await rk.call("POST", f"/v1/queues/{name}/jobs", body={"payload": "x" * (2 << 20)}, safe=True)
    assert big.value.status == 413
    with pytest.raises(redkit.InvalidInput) as token:
        await rk.queue(name).ack("nope", "bad-token")
    assert "token" in token.value.message
    with pytest.raises(redkit.Conflict):
        async with rk.lock(name, ttl=5), rk.lock(name, ttl=5):
            pass


async def test_api_keys(cluster: Cluster, name: str) -> None:
    key = "k" * 24
    server: Server = cluster.server(env={"REDKIT_API_KEYS": key})
    async with redkit.AsyncClient(server.url) as anonymous:
        with pytest.raises(redkit.Unauthorized) as e:
            await anonymous.cache(name).get("k")
        assert e.value.status == 401
    async with redkit.AsyncClient(server.url, api_key="wrong-" + key) as wrong:
        with pytest.raises(redkit.Unauthorized):
            await wrong.cache(name).set("k", 1)
    async with redkit.AsyncClient(server.url, api_key=key) as rk:
        await rk.cache(name).set("k", 1)
        assert await rk.cache(name).get("k") == 1
    with pytest.raises(ValueError):
        redkit.AsyncClient(server.url, api_key="a\r\nX-Injected: 1")


def test_bad_urls_are_refused() -> None:
    with pytest.raises(ValueError):
        redkit.AsyncClient("ftp://example.com")
    with pytest.raises(ValueError):
        redkit.AsyncClient([])


async def test_the_package_version_is_the_servers_api_version(rk: redkit.AsyncClient) -> None:
    doc = await rk.openapi()
    assert doc["info"]["version"] == redkit.API_VERSION == redkit.__version__
