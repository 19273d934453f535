"""Sessions: ``rk.sessions``.

Promises: ``get`` answers None for any id that is unknown, ended or malformed (never an
exception for a bad cookie); ``update`` merges fields, so concurrent requests never overwrite
each other's; ``create`` and ``rotate`` are never repeated once sent (a repeat would make a
second session).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from ._http import seg

if TYPE_CHECKING:
    from .client import AsyncClient


class Session:
    """A session as stored: ``id`` (a bearer secret), ``user``, ``data`` (a dict) and its
    times (ms since the Unix epoch). ``raw`` is the server's JSON."""

    __slots__ = (
        "absolute_deadline_ms",
        "created_ms",
        "data",
        "id",
        "idle_ms",
        "last_seen_ms",
        "raw",
        "user",
        "version",
    )

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.id: Optional[str] = raw.get("id")
        self.user: Optional[str] = raw.get("user")
        self.data: Dict[str, Any] = dict(raw.get("data") or {})
        self.created_ms: int = int(raw.get("created_ms", 0))
        self.last_seen_ms: int = int(raw.get("last_seen_ms", 0))
        self.idle_ms: int = int(raw.get("idle_ms", 0))
        self.absolute_deadline_ms: int = int(raw.get("absolute_deadline_ms", 0))
        self.version: int = int(raw.get("version") or 0)

    @property
    def expires_ms(self) -> int:
        """When it ends if left idle (ms since the Unix epoch)."""
        return int(self.raw.get("expires_ms") or min(self.last_seen_ms + self.idle_ms, self.absolute_deadline_ms))

    def __repr__(self) -> str:
        ident = f"{self.id[:6]}…" if self.id else None
        return f"Session(id={ident!r}, user={self.user!r}, data={self.data!r})"


class Sessions:
    """Server-side sessions. Ids are 256-bit random bearer secrets; idle and absolute
    timeouts are enforced by the store (``idle_ttl`` and ``absolute_ttl`` in seconds)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        data: Optional[Mapping[str, Any]] = None,
        user: Optional[str] = None,
        *,
        idle_ttl: Optional[int] = None,
        absolute_ttl: Optional[int] = None,
    ) -> Session:
        """A new session (default timeouts: idle 30 min, absolute 12 h)."""
        body: Dict[str, Any] = {"data": dict(data or {})}
        if user is not None:
            body["user"] = user
        if idle_ttl is not None:
            body["idle_ttl_s"] = int(idle_ttl)
        if absolute_ttl is not None:
            body["absolute_ttl_s"] = int(absolute_ttl)
        # Not retried once sent: a repeat would make a second session.
        return Session(await self._client.call("POST", "/v1/sessions", body=body, safe=False))

    async def get(self, session_id: str) -> Optional[Session]:
        """The session, or None when it is unknown, ended or malformed (this also counts
        as activity for the idle timeout)."""
        r = await self._client.request("GET", "/v1/sessions/" + seg(session_id), safe=True)
        if r.status == 404:
            return None
        if r.status != 200:
            raise r.error()
        return Session(r.json())

    async def update(self, session_id: str, data: Mapping[str, Any]) -> Session:
        """Merges ``data`` into the session's data (a ``None`` value removes that field), so
        concurrent requests never overwrite each other's fields. NotFound when it ended."""
        return Session(
            await self._client.call("PATCH", "/v1/sessions/" + seg(session_id), body={"data": dict(data)}, safe=True)
        )

    async def rotate(self, session_id: str) -> Session:
        """Gives the session a new id (after login or a privilege change); the old id ends."""
        return Session(await self._client.call("POST", f"/v1/sessions/{seg(session_id)}/rotate", safe=False))

    async def delete(self, session_id: str) -> bool:
        """Ends the session (logout); whether it existed."""
        r = await self._client.request("DELETE", "/v1/sessions/" + seg(session_id), safe=True)
        if r.status == 404:
            return False
        if r.status != 200:
            raise r.error()
        return bool(r.json().get("deleted", True))

    async def list(self, user: str) -> List[Session]:
        """The user's live sessions (ids and data only for keys with sessions admin access,
        or without API keys)."""
        body = await self._client.call("GET", f"/v1/users/{seg(user)}/sessions", safe=True)
        items = body if isinstance(body, list) else body.get("sessions", [])
        return [Session(s) for s in items]

    async def revoke_all(self, user: str) -> int:
        """Ends every session of ``user`` (log out everywhere); how many were ended."""
        body = await self._client.call("DELETE", f"/v1/users/{seg(user)}/sessions", safe=True)
        return int(body["revoked"])
