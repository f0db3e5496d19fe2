"""The pure translation between HTTP invocations, ``OnInvoke`` and ``InvokeService``."""

from __future__ import annotations

import grpc
import orjson
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

from tandem.blocks.errors import to_grpc_status
from tandem.blocks.invoke_translate import (
    ANY_TYPE_HEADER,
    GRPC_STATUS_HEADER,
    PROTOBUF_CONTENT_TYPE,
    error_of_http_status,
    grpc_code_of,
    http_call_of_invoke_service,
    http_status_of,
    invoke_response_of_http,
    on_invoke_request,
    reply_of_grpc_error,
    reply_of_invoke_response,
)

Verb = common_pb2.HTTPExtension.Verb


def test_on_invoke_request_carries_method_body_content_type_verb_and_query():
    req = on_invoke_request(
        "orders/7", http_verb="PUT", query="a=1&b=2", content_type="text/plain", body=b"hi"
    )
    assert req.method == "orders/7"
    assert (req.data.type_url, req.data.value) == ("", b"hi")
    assert req.content_type == "text/plain"
    assert req.http_extension.verb == Verb.PUT
    assert req.http_extension.querystring == "a=1&b=2"


def test_on_invoke_request_keeps_a_packed_messages_type():
    req = on_invoke_request(
        "m",
        http_verb="POST",
        query="",
        content_type=PROTOBUF_CONTENT_TYPE,
        body=b"\x0a\x01x",
        type_url="type.googleapis.com/google.protobuf.StringValue",
    )
    value = wrappers_pb2.StringValue()
    assert req.data.Unpack(value)
    assert value.value == "x"


def test_an_unknown_verb_becomes_none():
    req = on_invoke_request("m", http_verb="PROPFIND", query="", content_type="", body=b"")
    assert req.http_extension.verb == Verb.NONE


def test_invoke_response_becomes_200_with_the_apps_bytes_and_content_type():
    reply = reply_of_invoke_response(
        common_pb2.InvokeResponse(
            data=any_pb2.Any(value=b'{"ok":1}'), content_type="application/json"
        )
    )
    assert (reply.status, reply.content_type, reply.body) == (200, "application/json", b'{"ok":1}')


def test_the_apps_response_metadata_become_headers_without_grpc_plumbing():
    reply = reply_of_invoke_response(
        common_pb2.InvokeResponse(data=any_pb2.Any(value=b"x")),
        [
            ("x-receiver", "grpc"),
            ("grpc-encoding", "identity"),
            ("trace-bin", b"\x00"),
            ("content-type", "application/grpc"),
            ("x-split", "a\r\nb"),
        ],
    )
    assert reply.headers == (("x-receiver", "grpc"),)


def test_a_packed_invoke_response_is_protobuf_for_http_callers():
    data = any_pb2.Any()
    data.Pack(wrappers_pb2.StringValue(value="v"))
    reply = reply_of_invoke_response(
        common_pb2.InvokeResponse(data=data, content_type="text/plain")
    )
    assert reply.content_type == PROTOBUF_CONTENT_TYPE
    assert reply.body == data.value
    assert dict(reply.headers)[ANY_TYPE_HEADER] == data.type_url


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.OK, 200),
        (grpc.StatusCode.CANCELLED, 408),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_grpc_codes_map_to_http_statuses(code, status):
    assert http_status_of(code) == status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (200, grpc.StatusCode.OK),
        (204, grpc.StatusCode.OK),
        (400, grpc.StatusCode.INTERNAL),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (408, grpc.StatusCode.CANCELLED),
        (409, grpc.StatusCode.ALREADY_EXISTS),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNKNOWN),
        (501, grpc.StatusCode.UNIMPLEMENTED),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (302, grpc.StatusCode.UNKNOWN),
        (418, grpc.StatusCode.UNKNOWN),
    ],
)
def test_http_statuses_map_to_grpc_codes(status, code):
    assert grpc_code_of(status) == code


def test_grpc_error_becomes_mapped_status_and_status_json():
    reply = reply_of_grpc_error(grpc.StatusCode.NOT_FOUND, "no order 7", None)
    assert reply.status == 404
    assert reply.content_type == "application/json"
    assert orjson.loads(reply.body) == {"code": 5, "message": "no order 7"}
    assert dict(reply.headers)[GRPC_STATUS_HEADER] == "5"


def test_grpc_error_keeps_rich_details_the_app_sent():
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="OUT_OF_STOCK", domain="shop"))
    status = status_pb2.Status(code=9, message="no stock", details=[info])
    reply = reply_of_grpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, "no stock", status.SerializeToString()
    )
    body = orjson.loads(reply.body)
    assert reply.status == 400
    assert body["details"][0]["reason"] == "OUT_OF_STOCK"


def test_malformed_status_details_still_give_code_and_message():
    reply = reply_of_grpc_error(grpc.StatusCode.INTERNAL, "bad", b"\xff\xfe not a proto")
    assert orjson.loads(reply.body) == {"code": 13, "message": "bad"}


def test_invoke_service_becomes_an_http_invocation_through_the_invoke_route():
    req = invoke_pb2.InvokeServiceRequest(
        id="orders",
        message=common_pb2.InvokeRequest(
            method="/items/7",
            data=any_pb2.Any(value=b"{}"),
            content_type="application/json",
            http_extension=common_pb2.HTTPExtension(verb=Verb.DELETE, querystring="x=1"),
        ),
    )
    call = http_call_of_invoke_service(req)
    assert call.method == "DELETE"
    assert call.path == "/v1.0/invoke/orders/method/items/7"
    assert call.query == "x=1"
    assert call.headers == (("content-type", "application/json"),)
    assert call.body == b"{}"


def test_invoke_service_without_verb_posts_and_quotes_the_method():
    req = invoke_pb2.InvokeServiceRequest(
        id="a b", message=common_pb2.InvokeRequest(method="say hi")
    )
    call = http_call_of_invoke_service(req)
    assert call.method == "POST"
    assert call.path == "/v1.0/invoke/a%20b/method/say%20hi"
    assert call.headers == ()


def test_invoke_service_with_a_packed_message_sends_protobuf_and_its_type():
    data = any_pb2.Any()
    data.Pack(wrappers_pb2.StringValue(value="v"))
    call = http_call_of_invoke_service(
        invoke_pb2.InvokeServiceRequest(
            id="g", message=common_pb2.InvokeRequest(method="m", data=data)
        )
    )
    headers = dict(call.headers)
    assert headers["content-type"] == PROTOBUF_CONTENT_TYPE
    assert headers[ANY_TYPE_HEADER] == data.type_url
    assert call.body == data.value


def test_invoke_response_of_http_comes_back_packed_when_the_app_packed_it():
    resp = invoke_response_of_http(PROTOBUF_CONTENT_TYPE, b"\x0a\x01v", "type.googleapis.com/x.Y")
    assert (resp.content_type, resp.data.type_url) == ("", "type.googleapis.com/x.Y")
    plain = invoke_response_of_http("text/plain", b"hi")
    assert (plain.content_type, plain.data.value) == ("text/plain", b"hi")


def test_2xx_is_no_error():
    assert error_of_http_status(201, b"") is None


def test_non_2xx_becomes_grpc_status_named_after_http_with_error_info():
    err = error_of_http_status(404, b"x" * 100)
    assert err is not None
    assert err.grpc_status == grpc.StatusCode.NOT_FOUND
    assert err.message == "Not Found"
    status = to_grpc_status(err)
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    rich.details[0].Unpack(info)
    assert info.domain == "dapr.io"
    assert info.reason == "Not Found"
    assert info.metadata["http.code"] == "404"
    assert info.metadata["http.error_message"] == "x" * 63


def test_a_grpc_apps_own_status_passes_through_unchanged():
    body = orjson.dumps({"code": 12, "message": "m method not implemented!"})
    err = error_of_http_status(501, body, "12")
    assert err is not None
    assert (err.grpc_status, err.message) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "m method not implemented!",
    )


def test_a_status_marker_that_does_not_match_the_body_is_ignored():
    err = error_of_http_status(500, b"not json", "2")
    assert err is not None
    assert (err.grpc_status, err.message) == (grpc.StatusCode.UNKNOWN, "Internal Server Error")
