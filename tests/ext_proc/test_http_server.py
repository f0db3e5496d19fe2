"""The HTTP/1.1 front door over a real Unix socket, with the test playing Envoy."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.http_server import HttpApiServer
from tandem.ext_proc.router import Router

LIMIT = 1024


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Harness:
    server: HttpApiServer
    seen: list[ApiRequest]
    release: asyncio.Event
    entered: asyncio.Event
    crash_dispatch: list[bool] = field(default_factory=list)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(self.server.socket_path))
        return Client(reader, writer)


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 5) if length else b""
        return Reply(status, headers, body)

    async def request(self, data: bytes) -> Reply:
        await self.send(data)
        return await self.reply()

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nhost: tandem\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST {path} HTTP/1.1\r\nhost: tandem\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    router = Router()
    seen: list[ApiRequest] = []
    release = asyncio.Event()
    entered = asyncio.Event()

    async def echo(req: ApiRequest) -> ApiResponse:
        seen.append(req)
        return ApiResponse.json(
            {
                "method": req.method,
                "path": req.path,
                "q": req.query,
                "body": req.body.decode(),
                "app": req.app_id,
                "headers": dict(req.headers),
            }
        )

    async def boom(req: ApiRequest) -> ApiResponse:
        raise RuntimeError("kaput")

    async def refuse(req: ApiRequest) -> ApiResponse:
        raise DaprError("ERR_STATE_STORE_NOT_FOUND", "state store nope is not found")

    async def empty(req: ApiRequest) -> ApiResponse:
        return ApiResponse.empty()

    async def etag(req: ApiRequest) -> ApiResponse:
        return ApiResponse(body=b"v", content_type=b"text/plain", headers=(("etag", b"7"),))

    async def split(req: ApiRequest) -> ApiResponse:
        return ApiResponse(body=b"v", headers=(("x-bad", b"a\r\nset-cookie: evil"),))

    async def slow(req: ApiRequest) -> ApiResponse:
        seen.append(req)
        entered.set()
        await release.wait()
        return ApiResponse.json({"slow": True})

    async def big(req: ApiRequest) -> ApiResponse:
        return ApiResponse(body=b"b" * 200_000, content_type=b"application/octet-stream")

    router.add(("GET", "POST", "PUT"), "/echo/{rest...}", echo)
    router.add("GET", "/boom", boom)
    router.add("GET", "/refuse", refuse)
    router.add(("GET", "DELETE"), "/empty", empty)
    router.add("GET", "/etag", etag)
    router.add("GET", "/split", split)
    router.add("POST", "/slow", slow)
    router.add("GET", "/big", big)
    dispatcher = Dispatcher(router)
    crash: list[bool] = []

    async def dispatch(req: ApiRequest) -> ApiResponse:
        if crash:
            raise RuntimeError("the dispatcher itself broke")
        return await dispatcher(req)

    workdir = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))
    server = HttpApiServer(
        dispatch, app_id="self", max_body_bytes=LIMIT, socket_path=workdir / "http.sock"
    )
    await server.start()
    yield Harness(server, seen, release, entered, crash)
    release.set()
    await server.stop(grace=1)
    shutil.rmtree(workdir, ignore_errors=True)


async def test_request_reaches_the_handler_with_method_path_query_headers_body_app_id(
    harness: Harness,
) -> None:
    client = await harness.connect()
    reply = await client.request(
        post("/echo/a%2Fb?x=1&y=2", b'{"k":1}', "X-Test: Yes", "x-tandem-app-id: caller")
    )
    await client.close()

    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    got = orjson.loads(reply.body)
    assert got["method"] == "POST"
    assert got["path"] == "/echo/a%2Fb"
    assert got["q"] == "x=1&y=2"
    assert got["body"] == '{"k":1}'
    assert got["app"] == "caller"
    assert got["headers"]["x-test"] == "Yes"
    # Envoy's routing header is for the door, not for handlers.
    assert "x-tandem-app-id" not in got["headers"]
    assert harness.seen[-1].params == {"rest": "a/b"}


async def test_without_the_app_id_header_the_runtime_app_id_applies(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/echo/x"))
    await client.close()

    assert orjson.loads(reply.body)["app"] == "self"


async def test_keep_alive_serves_many_requests_on_one_connection(harness: Harness) -> None:
    client = await harness.connect()
    for i in range(5):
        reply = await client.request(post(f"/echo/{i}", str(i).encode()))
        assert reply.status == 200
        assert orjson.loads(reply.body)["body"] == str(i)
        assert "connection" not in reply.headers
    await client.close()


async def test_chunked_body_is_reassembled(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(b"PUT /echo/c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
    await client.send(b"5\r\nhello\r\n")
    await client.send(b"6\r\n world\r\n0\r\n\r\n")
    reply = await client.reply()
    # The connection still serves after a chunked request.
    again = await client.request(get("/echo/d"))
    await client.close()

    assert reply.status == 200
    assert orjson.loads(reply.body)["body"] == "hello world"
    assert again.status == 200


async def test_request_split_across_reads_is_parsed(harness: Harness) -> None:
    client = await harness.connect()
    raw = post("/echo/split-up?q=1", b"0123456789")
    for i in range(0, len(raw), 7):
        await client.send(raw[i : i + 7])
    reply = await client.reply()
    await client.close()

    got = orjson.loads(reply.body)
    assert (got["path"], got["q"], got["body"]) == ("/echo/split-up", "q=1", "0123456789")


async def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(get("/echo/1") + post("/echo/2", b"two") + get("/empty"))
    first, second, third = [await client.reply() for _ in range(3)]
    await client.close()

    assert orjson.loads(first.body)["path"] == "/echo/1"
    assert orjson.loads(second.body)["body"] == "two"
    assert third.status == 204


async def test_head_gets_a_length_but_no_body_and_the_connection_stays_in_step(
    harness: Harness,
) -> None:
    client = await harness.connect()
    await client.send(b"HEAD /echo/h HTTP/1.1\r\nhost: t\r\n\r\n")
    head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
    # Were a body sent, it would be read here as the start of the next answer.
    after = await client.request(get("/echo/next"))
    await client.close()

    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"content-length: " in head
    assert after.status == 200
    assert orjson.loads(after.body)["path"] == "/echo/next"


async def test_a_refusal_behind_a_pipelined_request_waits_for_its_answer(
    harness: Harness,
) -> None:
    client = await harness.connect()
    await client.send(post("/slow", b"{}") + b"BROKEN\r\n\r\n")
    await asyncio.wait_for(harness.entered.wait(), 5)
    harness.release.set()
    first = await client.reply()
    second = await client.reply()

    assert orjson.loads(first.body) == {"slow": True}
    assert second.status == 400
    assert await client.at_eof()
    await client.close()


async def test_204_has_no_body_and_no_content_headers(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(b"DELETE /empty HTTP/1.1\r\nhost: t\r\n\r\n")
    head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
    after = await client.request(get("/echo/next"))
    await client.close()

    assert head.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"content-length" not in head.lower()
    assert b"content-type" not in head.lower()
    assert after.status == 200


async def test_handler_headers_and_content_type_are_written(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/etag"))
    await client.close()

    assert (reply.status, reply.body) == (200, b"v")
    assert reply.headers["etag"] == "7"
    assert reply.headers["content-type"] == "text/plain"


async def test_large_answer_arrives_whole(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/big"))
    await client.close()

    assert reply.body == b"b" * 200_000


async def test_dapr_error_keeps_its_status_and_json(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/refuse"))
    unknown = await client.request(get("/nowhere"))
    await client.close()

    assert reply.status == 400
    assert orjson.loads(reply.body) == {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nope is not found",
    }
    assert unknown.status == 404


async def test_handler_crash_is_500_json_and_the_connection_keeps_serving(
    harness: Harness,
) -> None:
    client = await harness.connect()
    reply = await client.request(get("/boom"))
    after = await client.request(get("/echo/after"))
    await client.close()

    assert reply.status == 500
    assert orjson.loads(reply.body)["errorCode"] == "ERR_INTERNAL"
    assert after.status == 200


async def test_dispatcher_crash_is_500_json_and_the_connection_keeps_serving(
    harness: Harness,
) -> None:
    client = await harness.connect()
    harness.crash_dispatch.append(True)
    reply = await client.request(get("/echo/x"))
    harness.crash_dispatch.clear()
    after = await client.request(get("/echo/y"))
    await client.close()

    assert reply.status == 500
    assert reply.headers["content-type"] == "application/json"
    assert orjson.loads(reply.body) == {
        "errorCode": "ERR_INTERNAL",
        "message": "internal error: the dispatcher itself broke",
    }
    assert after.status == 200


async def test_header_value_with_a_line_break_is_never_sent(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/split"))
    await client.close()

    assert reply.status == 500
    assert "set-cookie" not in reply.headers
    assert orjson.loads(reply.body)["errorCode"] == "ERR_INTERNAL"


async def test_content_length_over_the_limit_is_413_before_the_body_is_read(
    harness: Harness,
) -> None:
    client = await harness.connect()
    # Only the head is sent: the answer must not wait for a body that never comes.
    await client.send(
        f"POST /echo/big HTTP/1.1\r\nhost: t\r\ncontent-length: {LIMIT + 1}\r\n\r\n".encode()
    )
    reply = await client.reply()

    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert orjson.loads(reply.body) == {
        "errorCode": "ERR_REQUEST_TOO_LARGE",
        "message": f"request body exceeds the limit of {LIMIT} bytes",
    }
    assert await client.at_eof()
    assert harness.seen == []
    await client.close()


async def test_413_is_readable_while_the_client_is_still_sending_its_body(
    harness: Harness,
) -> None:
    # Closing a Unix socket with unread data resets the peer: the server must drain instead,
    # or a client (Envoy) mid-upload loses the answer (Envoy would turn it into a 503).
    client = await harness.connect()
    size = LIMIT * 200
    await client.send(
        f"POST /echo/big HTTP/1.1\r\nhost: t\r\ncontent-length: {size}\r\n\r\n".encode()
    )
    for _ in range(20):
        await client.send(b"z" * (size // 20))
    reply = await client.reply()

    assert reply.status == 413
    assert orjson.loads(reply.body)["errorCode"] == "ERR_REQUEST_TOO_LARGE"
    assert await client.at_eof()
    await client.close()


async def test_body_at_the_limit_is_accepted(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(post("/echo/full", b"x" * LIMIT))
    await client.close()

    assert reply.status == 200
    assert len(orjson.loads(reply.body)["body"]) == LIMIT


async def test_chunked_body_over_the_limit_is_413(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(b"POST /echo/c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"y" * 600
    await client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    reply = await client.reply()

    assert reply.status == 413
    assert orjson.loads(reply.body)["errorCode"] == "ERR_REQUEST_TOO_LARGE"
    assert await client.at_eof()
    assert harness.seen == []
    await client.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/9.9 extra\r\n\r\n",
        b"POST /echo/x HTTP/1.1\r\ncontent-length: abc\r\n\r\n",
    ],
)
async def test_malformed_request_is_400_json_and_closed(harness: Harness, raw: bytes) -> None:
    client = await harness.connect()
    reply = await client.request(raw)

    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert orjson.loads(reply.body)["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert await client.at_eof()
    await client.close()


async def test_connection_close_is_honoured(harness: Harness) -> None:
    client = await harness.connect()
    reply = await client.request(get("/echo/last", "connection: close"))

    assert reply.status == 200
    assert reply.headers["connection"] == "close"
    assert await client.at_eof()
    await client.close()


async def test_client_gone_mid_body_leaves_the_server_serving(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(b"POST /echo/half HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
    await client.close()
    other = await harness.connect()
    reply = await other.request(get("/echo/other"))
    await other.close()

    assert reply.status == 200
    assert [r.path for r in harness.seen] == ["/echo/other"]


async def test_client_gone_while_the_handler_runs_leaves_the_server_serving(
    harness: Harness,
) -> None:
    client = await harness.connect()
    await client.send(post("/slow", b"{}"))
    await asyncio.wait_for(harness.entered.wait(), 5)
    await client.close()
    harness.release.set()
    other = await harness.connect()
    reply = await other.request(get("/echo/other"))
    await other.close()

    assert reply.status == 200


def test_uvloop_transports_are_served() -> None:
    """The runtime runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    import uvloop

    async def scenario() -> Reply:
        async def dispatch(req: ApiRequest) -> ApiResponse:
            return ApiResponse.json({"path": req.path})

        workdir = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))
        server = HttpApiServer(
            dispatch, app_id="a", max_body_bytes=LIMIT, socket_path=workdir / "h.sock"
        )
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
            client = Client(reader, writer)
            first = await client.request(get("/uv"))
            second = await client.request(get("/again"))
            await client.close()
            assert orjson.loads(first.body) == {"path": "/uv"}
            return second
        finally:
            await server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    reply = uvloop.run(scenario())

    assert orjson.loads(reply.body) == {"path": "/again"}


async def test_stop_lets_an_answer_in_progress_finish(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(post("/slow", b"{}"))
    await asyncio.wait_for(harness.entered.wait(), 5)
    stopping = asyncio.ensure_future(harness.server.stop(grace=5))
    harness.release.set()
    reply = await client.reply()
    await stopping

    assert orjson.loads(reply.body) == {"slow": True}
    assert await client.at_eof()
    assert not harness.server.socket_path.exists()
    await client.close()


async def test_a_bridged_grpc_call_is_cancelled_when_its_caller_goes_but_http_calls_run_on() -> (
    None
):
    """A gRPC client that gives up (deadline, cancel) makes Envoy reset the bridged stream and
    close the connection: the handler stops there, as under grpc.aio. An HTTP API call whose
    client hangs up still runs to its end."""
    from tandem.ext_proc.grpc_over_http import BRIDGE_HEADER

    started = {"grpc": asyncio.Event(), "http": asyncio.Event()}
    ended: dict[str, str] = {}
    release = asyncio.Event()

    async def wait(kind: str) -> ApiResponse:
        started[kind].set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            ended[kind] = "cancelled"
            raise
        ended[kind] = "finished"
        return ApiResponse.empty()

    async def grpc_unary(req: ApiRequest) -> ApiResponse:
        return await wait("grpc")

    async def dispatch(req: ApiRequest) -> ApiResponse:
        return await wait("http")

    workdir = Path(tempfile.mkdtemp(prefix="th", dir="/tmp"))
    server = HttpApiServer(
        dispatch,
        app_id="a",
        max_body_bytes=LIMIT,
        socket_path=workdir / "h.sock",
        grpc_unary=grpc_unary,
    )
    await server.start()
    try:
        for kind, request in (
            (
                "grpc",
                post(
                    "/dapr.proto.runtime.v1.Dapr/GetState",
                    b"\0\0\0\0\0",
                    "content-type: application/grpc",
                    f"{BRIDGE_HEADER}: 1",
                ),
            ),
            ("http", post("/v1.0/state/s", b"[]")),
        ):
            reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
            client = Client(reader, writer)
            await client.send(request)
            await asyncio.wait_for(started[kind].wait(), 5)
            await client.close()
        for _ in range(500):  # the cancellation lands within a few loop turns
            if "grpc" in ended:
                break
            await asyncio.sleep(0.01)
        assert ended == {"grpc": "cancelled"}
        release.set()
        for _ in range(500):
            if "http" in ended:
                break
            await asyncio.sleep(0.01)
        assert ended == {"grpc": "cancelled", "http": "finished"}
        # Still serving.
        reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
        client = Client(reader, writer)
        reply = await client.request(post("/v1.0/state/s", b"[]"))
        await client.close()
        assert reply.status == 204
    finally:
        release.set()
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
