"""Schemathesis hooks for scripts/fuzz-api (loaded through SCHEMATHESIS_HOOKS).

A lock acquire may ask to wait up to an hour for a lock another case holds, and a cache
get-or-set up to 300 s for another case's load: that is the caller's request, not a hang,
but it outlasts the fuzzer's request timeout. Such waits are cut to a few seconds before
the request is sent. Waits over the bound are left as generated: the fuzzer checks they
are refused (400), and crates/redkit-server/tests checks the bounds themselves.
"""

from __future__ import annotations

from typing import Any

import schemathesis

LONGEST_WAIT_MS = 3_000

# (method, path) -> the body field holding the wait, and the server's bound on it.
WAITS = {
    ("POST", "/v1/locks/{name}/acquire"): ("wait_ms", 3_600_000),
    ("POST", "/v1/cache/{ns}/{key}/claim"): ("wait_ms", 300_000),
}


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    wait = WAITS.get((case.method.upper(), case.operation.path))
    body = case.body
    if wait is None or not isinstance(body, dict):
        return
    name, bound = wait
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and LONGEST_WAIT_MS < value <= bound:
        body[name] = LONGEST_WAIT_MS
