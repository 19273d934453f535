"""Exceptions: one class per error code of the server's JSON envelope.

Every error the server answers is ``{"error": {"code": ..., "message": ...}}``; the client
raises the class for its code (``redkit.Error`` for a code without a class of its own). The
client's own failures to reach any server are :class:`Unavailable` too (:class:`ConnectError`,
:class:`Timeout`), so ``except redkit.Unavailable`` covers "redkit cannot serve this now".
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class Error(Exception):
    """A redkit call failed. ``code`` is the server's machine-readable code."""

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class InvalidInput(Error):
    """400: the request broke a rule; the message names the field and the rule."""

    code = "invalid_input"


class Unauthorized(Error):
    """401: no API key, or one the server does not know."""

    code = "unauthorized"


class Forbidden(Error):
    """403: the API key's scopes do not cover this call (or a foreign ``Origin``)."""

    code = "forbidden"


class NotFound(Error):
    """404: no such value, session, job, policy, queue or route."""

    code = "not_found"


class Conflict(Error):
    """409: a lock is held by someone else, a job's lease was lost, a record's version is not
    the ``if_version`` given (or it exists where ``if_version=0`` asked for none), or an
    ``incr`` met a field that is not an integer."""

    code = "conflict"


class TooLarge(Error):
    """413: a body, value, session or batch over its limit."""

    code = "too_large"


class RateLimited(Error):
    """429: refused by a rate limit. ``retry_after`` is in seconds (float) when known."""

    code = "limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: Optional[float] = None,
        decision: Any = None,
        code: Optional[str] = None,
        status: Optional[int] = 429,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.retry_after = retry_after
        self.decision = decision


class Unavailable(Error):
    """503, or no server reachable: redkit cannot serve this call now.

    ``indeterminate`` is true when a write may or may not have taken effect (the server
    says so, or the connection broke after the request was sent). Every redkit write is
    safe to repeat, so retrying is correct; the client already retried what it could.
    """

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        indeterminate: bool = False,
        code: Optional[str] = None,
        status: Optional[int] = 503,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.indeterminate = indeterminate


class ConnectError(Unavailable):
    """No configured server could be connected to (nothing was sent)."""

    code = "connect_error"


class Timeout(Unavailable):
    """A server did not answer within the call's timeout (the outcome is unknown)."""

    code = "timeout"


class LockLost(Error):
    """A lock's lease ended while its holder still worked under it."""

    code = "lock_lost"


_BY_CODE: Dict[str, Type[Error]] = {
    "invalid_input": InvalidInput,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "too_large": TooLarge,
    "limit_exceeded": RateLimited,
    "unavailable": Unavailable,
}

_BY_STATUS: Dict[int, Type[Error]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
}


def from_response(status: int, body: Any, headers: Dict[str, str]) -> Error:
    """The exception for an error response (``body`` already decoded, or None)."""
    code: Optional[str] = None
    message = f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = body["error"]
        code = str(detail.get("code")) if detail.get("code") is not None else None
        message = str(detail.get("message", message))
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status, Error)
    request_id = headers.get("x-request-id")
    if cls is RateLimited:
        return RateLimited(
            message,
            retry_after=_retry_after(headers),
            code=code,
            status=status,
            request_id=request_id,
        )
    if cls is Unavailable:
        return Unavailable(
            message,
            indeterminate="may or may not" in message,
            code=code,
            status=status,
            request_id=request_id,
        )
    return cls(message, code=code, status=status, request_id=request_id)


def _retry_after(headers: Dict[str, str]) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
