"""The pool under the Zoho client tells "never sent" from "sent, reply lost", over real sockets.

The difference decides whether a create may be sent again (not sent) or must be looked up first (its
reply was lost after Zoho may have acted on it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from connectors.zoho.wire.http_pool import PooledTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()


def _client(timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=2.0),
        transport=PooledTransport(httpx.Limits(max_connections=4)),
    )


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + await reader.readexactly(length)


async def test_a_reply_comes_back_as_an_httpx_response_with_the_sent_body() -> None:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        body = b'{"code":0,"message":"ok"}'
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async for url in _serve(echo):
        async with _client() as http:
            reply = await http.post(url + "customers", json={"display_name": "A"}, headers={"X-Org": "1"})
    assert reply.status_code == 201 and reply.json() == {"code": 0, "message": "ok"}
    assert seen[0].startswith(b"POST /customers HTTP/1.1") and b'"display_name"' in seen[0]
    assert b"x-org: 1" in seen[0].lower()


async def test_a_refused_connection_is_never_sent() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with _client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{port}/customers", json={})


async def test_a_connection_dropped_after_the_request_is_a_lost_reply() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)  # the request arrived: Zoho may have acted on it
        writer.transport.abort()

    async for url in _serve(drop):
        async with _client() as http:
            with pytest.raises(httpx.ReadError) as lost:
                await http.post(url + "customers", json={})
    assert not isinstance(lost.value, httpx.ConnectError)


async def test_no_reply_in_time_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async for url in _serve(silent):
        async with _client(timeout=0.3) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(url + "customers", json={})


async def test_the_direct_send_writes_json_and_query_and_maps_a_dropped_reply_the_same_way() -> None:
    seen: list[bytes] = []

    async def echo_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # requests on one kept-alive connection
            seen.append(await _read_request(reader))
            if len(seen) > 1:
                writer.transport.abort()  # the second request arrived, its reply is lost
                return
            body = b'{"code":0,"customer":{"customer_id":"9"}}'
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nRetry-After: 3\r\n\r\n" % len(body)
            writer.write(head + body)
            await writer.drain()

    pool = PooledTransport(httpx.Limits(max_connections=2))
    timeouts = {"connect": 2.0, "read": 5.0, "pool": None}
    try:
        async for url in _serve(echo_then_drop):
            reply = await pool.send(
                "POST", url + "customers", params={"send": False, "page": 2, "skip": None},
                body={"display_name": "Zoë"}, headers={"Authorization": "x"}, timeouts=timeouts,
            )  # fmt: skip
            assert reply.status_code == 200 and reply.json() == {"code": 0, "customer": {"customer_id": "9"}}
            assert reply.headers.get("retry-after") == "3"
            with pytest.raises(httpx.ReadError):
                await pool.send(
                    "POST", url + "customers", params=None, body={}, headers={}, timeouts=timeouts
                )
    finally:
        await pool.aclose()
    first = seen[0]
    assert first.startswith(b"POST /customers?send=false&page=2 HTTP/1.1")
    assert b"content-type: application/json" in first.lower()
    assert first.endswith('{"display_name":"Zoë"}'.encode())
