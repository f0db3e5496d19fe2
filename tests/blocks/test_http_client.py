"""The runtime's own HTTP/1.1 client (``tandem.blocks.http_client``) and the app channel on it,
against a real local HTTP server (asyncio streams, scripted per path)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tandem.blocks import http_client
from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.http_client import HttpClientError, HttpPool


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    conn: int


@dataclass
class App:
    """A small HTTP/1.1 server: what it was asked, on which connection."""

    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    serving: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.serving += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.serving -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.writers.append(writer)
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ")
                headers = {}
                for h in rest:
                    if h:
                        k, v = h.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                served += 1
                self.seen.append(Seen(method, path, headers, body, conn))
                if path == "/hangup-when-reused" and served > 1:
                    return  # read the request, answer nothing, close
                if not await self.answer(method, path, headers, body, conn, writer):
                    return
        finally:
            writer.close()

    async def answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        conn: int,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write the answer; False closes the connection."""
        if path == "/chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunks\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        elif path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye")
            await writer.drain()
            return False
        elif path == "/to-eof":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
            await writer.drain()
            return False
        elif path == "/truncated":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            await writer.drain()
            return False
        elif path == "/slow":
            await self.release.wait()  # answers nothing until the test ends
            return False
        elif path == "/wait":
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await self.release.wait()
            self.in_flight -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif path == "/gzip":
            data = gzip.compress(b"squeezed")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
        elif path == "/nobody":
            status = 204 if method != "HEAD" else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 7\r\n\r\n".encode())
        elif path == "/extra":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"
                b"HTTP/1.1 200 OK\r\nX-Not: asked\r\nContent-Length: 5\r\n\r\nstray"
            )
        elif path == "/interim":
            writer.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
        else:
            reply = f"{method} {path} {len(body)} on {conn}".encode()
            writer.write(
                b"HTTP/1.1 201 Created\r\nX-Daprremindercancel: true\r\nx-dup: first\r\n"
                + b"X-Dup: second\r\n"
                + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                + reply
            )
        await writer.drain()
        return True

    def hang_up_idle(self) -> None:
        for writer in self.writers:
            writer.close()

    async def stop(self, server: asyncio.Server) -> None:
        self.release.set()
        server.close()
        self.hang_up_idle()
        await wait_for(lambda: self.serving == 0, "the app's connections to end")


@contextlib.asynccontextmanager
async def tcp_app() -> AsyncIterator[tuple[App, int]]:
    app = App()
    server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        await app.stop(server)


def pool_to(port: int, limit: int = 10) -> HttpPool:
    return HttpPool(
        http_client.tcp("127.0.0.1", port),
        host=f"127.0.0.1:{port}",
        limit=limit,
    )


async def wait_for(check, what: str, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            first = await pool.request("POST", "/a?x=1", body=b"abc", timeout=5)
            second = await pool.request("GET", "/b", timeout=5)
        finally:
            await pool.close()
    assert (first.status, first.body) == (201, b"POST /a?x=1 3 on 1")
    assert second.body == b"GET /b 0 on 1"
    assert app.connections == 1
    sent = app.seen[0].headers
    assert sent["host"] == f"127.0.0.1:{port}"
    assert sent["content-type"] == "application/octet-stream"
    assert app.seen[0].body == b"abc"
    # Headers: looked up in any case, spelt as sent, the first of a repeated name.
    assert first.headers["x-daprremindercancel"] == "true"
    assert first.headers.get("X-Daprremindercancel") == "true"
    assert first.headers["X-DUP"] == "first"
    assert "X-Daprremindercancel" in list(first.headers)


async def test_at_most_limit_connections_and_the_rest_wait() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port, limit=2)
        try:
            calls = [
                asyncio.create_task(pool.request("GET", "/wait", timeout=10)) for _ in range(5)
            ]
            await wait_for(lambda: app.in_flight == 2, "two requests at the app")
            await asyncio.sleep(0.2)  # the other three must still be waiting, not connecting
            assert app.connections == 2
            app.release.set()
            answers = await asyncio.gather(*calls)
        finally:
            await pool.close()
    assert [a.status for a in answers] == [200] * 5
    assert app.most_in_flight == 2
    assert app.connections == 2


async def test_chunked_read_to_close_interim_gzip_and_bodiless_answers() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            chunked = await pool.request("GET", "/chunked", timeout=5)
            to_eof = await pool.request("GET", "/to-eof", timeout=5)
            interim = await pool.request("GET", "/interim", timeout=5)
            squeezed = await pool.request("GET", "/gzip", timeout=5)
            no_content = await pool.request("DELETE", "/nobody", timeout=5)
            head = await pool.request("HEAD", "/nobody", timeout=5)
            after = await pool.request("GET", "/after", timeout=5)
        finally:
            await pool.close()
    assert (chunked.body, chunked.headers["x-kind"]) == (b"hello world", "chunks")
    assert to_eof.body == b"until the end"
    assert (interim.status, interim.body) == (200, b"ok")
    assert squeezed.body == b"squeezed"
    assert (no_content.status, no_content.body) == (204, b"")
    assert (head.status, head.body) == (200, b"")
    assert after.status == 201
    # /to-eof ended its connection; the bodiless answers kept theirs.
    assert app.connections == 2


async def test_connection_close_and_an_idle_connection_the_server_closed() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            assert (await pool.request("GET", "/close", timeout=5)).body == b"bye"
            assert (await pool.request("GET", "/x", timeout=5)).body == b"GET /x 0 on 2"
            app.hang_up_idle()  # the app drops its idle keep-alive connection
            again = await pool.request("GET", "/y", timeout=5)
        finally:
            await pool.close()
    assert again.body == b"GET /y 0 on 3"


async def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_fresh_one() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            await pool.request("GET", "/hangup-when-reused", timeout=5)
            # The pooled connection looks alive, but the app closes it on the next request.
            retried = await pool.request("POST", "/hangup-when-reused", body=b"1", timeout=5)
        finally:
            await pool.close()
    assert retried.status == 201
    assert [s.conn for s in app.seen] == [1, 1, 2]


async def test_a_truncated_answer_is_an_error_and_not_retried() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            await pool.request("GET", "/warm", timeout=5)
            with pytest.raises(Exception, match="mid-response"):
                await pool.request("GET", "/truncated", timeout=5)
        finally:
            await pool.close()
    assert len(app.seen) == 2


async def test_bytes_after_the_answer_stay_out_of_it_and_end_the_connection() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            extra = await pool.request("GET", "/extra", timeout=5)
            after = await pool.request("GET", "/after", timeout=5)
        finally:
            await pool.close()
    assert (extra.body, "x-not" in extra.headers) == (b"mine", False)
    assert after.body == b"GET /after 0 on 2"


async def test_a_timed_out_connection_is_closed_not_reused() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/slow", timeout=0.3)
            after = await pool.request("GET", "/next", timeout=5)
        finally:
            await pool.close()
    assert after.body == b"GET /next 0 on 2"


async def test_close_closes_the_pooled_connections() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        await pool.request("GET", "/a", timeout=5)
        await pool.close()
        await wait_for(lambda: app.writers[0].is_closing(), "the app to see the close")


async def test_unix_socket(tmp_path: Path) -> None:
    app = App()
    path = str(tmp_path / "app.sock")
    server = await asyncio.start_unix_server(app.serve, path)
    pool = HttpPool(http_client.unix(path), host="127.0.0.1:1")
    try:
        first = await pool.request("PUT", "/over-unix", body=b"xy", timeout=5)
        second = await pool.request("GET", "/again", timeout=5)
    finally:
        await pool.close()
        await app.stop(server)
    assert first.body == b"PUT /over-unix 2 on 1"
    assert second.body == b"GET /again 0 on 1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_app_channel_errors_name_the_call_and_the_cause() -> None:
    channel = AppChannel(free_port(), app_id="me")
    try:
        with pytest.raises(AppChannelError, match=r"GET /dapr/subscribe: ConnectionRefusedError"):
            await channel.request("GET", "/dapr/subscribe")
    finally:
        await channel.close()
    async with tcp_app() as (app, port):
        channel = AppChannel(port, app_id="me", timeout=0.3)
        try:
            with pytest.raises(AppChannelError, match=r"GET /slow: TimeoutError"):
                await channel.request("GET", "/slow")
        finally:
            await channel.close()


async def test_app_channel_sends_app_id_token_and_reads_headers_in_any_case(
    tmp_path: Path,
) -> None:
    async with tcp_app() as (app, port):
        channel = AppChannel(port, app_id="me", token="secret")
        try:
            resp = await channel.request(
                "POST", "orders", body=b"{}", headers={"content-type": "application/json"}
            )
        finally:
            await channel.close()
    assert (resp.status, resp.body) == (201, b"POST /orders 2 on 1")
    assert resp.headers.get("x-daprremindercancel") == "true"
    sent = app.seen[0].headers
    assert (sent["dapr-app-id"], sent["dapr-api-token"]) == ("me", "secret")
    assert sent["content-type"] == "application/json"


async def test_app_channel_through_a_socket_and_back_to_the_port(tmp_path: Path) -> None:
    path = str(tmp_path / "envoy.sock")
    via_socket = App()
    server = await asyncio.start_unix_server(via_socket.serve, path)
    try:
        async with tcp_app() as (direct, port):
            channel = AppChannel(port, app_id="me", socket_path=path)
            try:
                await channel.request("GET", "/one")
                channel.route(False)
                await channel.request("GET", "/two")
            finally:
                await channel.close()
    finally:
        await via_socket.stop(server)
    assert [s.path for s in via_socket.seen] == ["/one"]
    assert [s.path for s in direct.seen] == ["/two"]
    assert via_socket.seen[0].headers["host"] == f"127.0.0.1:{port}"


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with tcp_app() as (app, port):
        pool = HttpPool(
            http_client.tcp("127.0.0.1", port),
            host=f"127.0.0.1:{port}",
            idle_timeout=0.3,
        )
        try:
            await pool.request("GET", "/a", timeout=5)
            await pool.request("GET", "/b", timeout=5)  # reused while fresh
            await wait_for(lambda: app.serving == 0, "the idle connection to be closed")
            after = await pool.request("GET", "/c", timeout=5)
        finally:
            await pool.close()
    assert [s.conn for s in app.seen] == [1, 1, 2]
    assert after.body == b"GET /c 0 on 2"


async def test_targets_are_percent_encoded_and_header_breaks_refused() -> None:
    async with tcp_app() as (app, port):
        pool = pool_to(port)
        try:
            await pool.request("GET", "/say hi/ünï?q=a b", timeout=5)
            await pool.request("GET", "/plain/a-b_c.d~e?x=1&y=%20", timeout=5)
            for name, value in (("x-evil", "a\r\nx-injected: 1"), ("", "v"), ("x-nul", "a\0")):
                with pytest.raises(HttpClientError, match="invalid header"):
                    await pool.request("GET", "/a", headers={name: value}, timeout=5)
        finally:
            await pool.close()
    assert [s.path for s in app.seen] == [
        "/say%20hi/%C3%BCn%C3%AF?q=a%20b",
        "/plain/a-b_c.d~e?x=1&y=%20",
    ]
    assert all("x-injected" not in s.headers for s in app.seen)
