"""httpx's request and response API over aiohttp's keep-alive connection pool.

The client speaks httpx everywhere (requests, replies, timeouts, errors); only the pool underneath is
aiohttp's. httpcore's pool probes every pooled socket on every request (`getpeername` through anyio),
which cost about 0.8 ms of CPU per Zoho call, 40 % of a backfill's CPU; aiohttp's pool and C parser
cost a fraction of that.

Why not the `httpx-aiohttp` package: it maps every `aiohttp.ClientConnectionError` to
`httpx.ConnectTimeout`, including a connection that dropped after the request was written. The client
must tell "never sent" (safe to send again) from "sent, reply lost" (a create may have happened: look
it up before sending again), so the mapping here is the one that matters and is kept explicit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson
from multidict import CIMultiDictProxy


def _not_sent(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error for a failure before any byte of the request left, or None."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"connect timed out: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, unreachable: nothing was written
        return httpx.ConnectError(f"could not connect: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(str(exc))
    return None


def _in_doubt(exc: BaseException) -> httpx.TransportError:
    """The httpx error for a failure once the request may have been written: its reply is lost."""
    if isinstance(exc, aiohttp.SocketTimeoutError | TimeoutError):
        return httpx.ReadTimeout(f"no reply in time: {exc}")
    return httpx.ReadError(f"connection lost before the whole reply: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class Reply:
    """One API reply, read whole: what the Zoho client maps to a result or an error."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes

    def json(self) -> Any:
        """The decoded JSON body; ValueError when it is not JSON (as `httpx.Response.json`)."""
        return orjson.loads(self.content)


class WirePool(httpx.AsyncBaseTransport):
    """What the Zoho client sends through: API calls by `send`, token requests as an httpx transport.

    `PooledTransport` is the one over sockets; the simulation hands in one that runs the simulator's app in
    process (`simulation.zoho`). Either raises the httpx errors of `_not_sent` and `_in_doubt`, so the
    client tells a call never sent from one whose reply was lost the same way over both."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str],
        timeouts: Mapping[str, float | None],
    ) -> Reply:
        """One API call, its reply read whole."""
        raise NotImplementedError


class PooledTransport(WirePool):
    """An `httpx.AsyncBaseTransport` that sends through one `aiohttp.ClientSession`.

    The session is opened on the first request, inside the running event loop (aiohttp binds it there),
    and closed by `aclose`. Replies are read whole before they are handed back (Zoho replies are small
    JSON documents), so a connection goes back to the pool at once."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str],
        timeouts: Mapping[str, float | None],
    ) -> Reply:
        """One API call without httpx's request and response objects (building both cost ~115 us a call,
        a tenth of a backfill's CPU per entity); failures raise the same httpx errors as the transport."""
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers = {**headers, "Content-Type": "application/json"}
        return await self._exchange(
            method,
            url,
            params=as_query(params),
            headers=headers,
            data=data,
            timeouts=timeouts,
            decompress=True,
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: Any,
        data: bytes | None,
        timeouts: Mapping[str, float | None],
        decompress: bool,
    ) -> Reply:
        """One request through the pool, its reply read whole; a failure raised as the httpx error that
        says whether the request was never sent or may have been (see the module docstring)."""
        session = self._session if self._session is not None and not self._session.closed else self._open()
        try:
            async with session.request(
                method,
                url,
                params=params,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=_timeout(timeouts),
                auto_decompress=decompress,
            ) as reply:
                return Reply(reply.status, reply.headers, await reply.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise (_not_sent(exc) or _in_doubt(exc)) from exc

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 5.0,
        )
        # No cookie jar: Zoho's API is stateless and a jar would carry one process's cookies into calls.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        reply = await self._exchange(
            request.method,
            str(request.url),
            params=None,  # already in the URL
            headers=request.headers.multi_items(),
            data=request.content or None,  # httpx has already encoded json= and data= bodies
            timeouts=request.extensions.get("timeout", {}),
            decompress=False,
        )
        # Still compressed: httpx decodes by Content-Encoding, as with its own pool.
        return httpx.Response(
            reply.status_code, headers=list(reply.headers.items()), content=reply.content, request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (pool, connect, read) as aiohttp's, and the whole call's deadline when given."""
    return aiohttp.ClientTimeout(
        total=timeouts.get("total"),
        connect=timeouts.get("pool"),
        sock_connect=timeouts.get("connect"),
        sock_read=timeouts.get("read"),
    )


def as_query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters as text, as httpx writes them (booleans lower-case, None left out)."""
    if not params:
        return None
    return {
        k: ("true" if v is True else "false" if v is False else str(v))
        for k, v in params.items()
        if v is not None
    }
