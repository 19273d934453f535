"""Schemathesis hooks for scripts/fuzz-api (loaded through SCHEMATHESIS_HOOKS).

A lock acquire may ask to wait up to an hour for a lock another case holds: that is the
caller's request, not a hang, but it outlasts the fuzzer's request timeout. Such waits are
cut to a few seconds before the request is sent; the bound itself (at most an hour, else
400) is checked by the fuzzer's invalid cases and by crates/redkit-server/tests.
"""

from __future__ import annotations

from typing import Any

import schemathesis

LONGEST_LOCK_WAIT_MS = 3_000


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if (
        case.method.upper() == "POST"
        and case.operation.path == "/v1/locks/{name}/acquire"
        and isinstance(body, dict)
        and isinstance(body.get("wait_ms"), int)
        and not isinstance(body["wait_ms"], bool)
        and LONGEST_LOCK_WAIT_MS < body["wait_ms"] <= 3_600_000
    ):
        body["wait_ms"] = LONGEST_LOCK_WAIT_MS
