"""The local gateway's API Gateway proxy events and answers, without starting the stack."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from sugar_xero.local.gateway import GatewayServer, RouteTable, build_event, response_parts
from sugar_xero.local.template import ApiRoute

ROUTES = RouteTable(
    [
        ApiRoute("ContactSyncFunction", "/crm/contacts", "POST"),
        ApiRoute("ContactSyncFunction", "/jobs/{job_id}", "GET"),
        ApiRoute("ContactSyncFunction", "/health", "GET"),
        ApiRoute("Files", "/files/{key+}", "ANY"),
        ApiRoute("Files", "/files/special", "GET"),
    ]
)


def test_route_table_matches_declared_paths_with_parameter_names_from_the_template():
    job = ROUTES.match("GET", "/jobs/3f1c-ab")
    assert job.route.path == "/jobs/{job_id}" and job.path_parameters == {"job_id": "3f1c-ab"}
    assert ROUTES.match("post", "/crm/contacts").route.function == "ContactSyncFunction"
    assert ROUTES.match("GET", "/crm/contacts") is None  # declared for POST only
    assert ROUTES.match("GET", "/jobs") is None and ROUTES.match("GET", "/jobs/a/b") is None
    greedy = ROUTES.match("DELETE", "/files/a/b/c.txt")
    assert greedy.route.path == "/files/{key+}" and greedy.path_parameters == {"key": "a/b/c.txt"}
    assert ROUTES.match("GET", "/files/special").route.path == "/files/special"  # literal beats greedy


def test_event_has_the_rest_proxy_shape_with_multi_value_headers_and_query():
    match = ROUTES.match("GET", "/jobs/j-1")
    event = build_event(
        method="GET",
        raw_path="/jobs/j-1?token=t1&token=t2&empty=",
        header_pairs=[("Host", "127.0.0.1:3000"), ("X-Dup", "a"), ("X-Dup", "b")],
        body=b"",
        match=match,
        source_ip="127.0.0.9",
        host="127.0.0.1:3000",
    )
    assert event["resource"] == "/jobs/{job_id}" and event["path"] == "/jobs/j-1"
    assert event["httpMethod"] == "GET" and event["pathParameters"] == {"job_id": "j-1"}
    assert event["headers"]["X-Dup"] == "b" and event["multiValueHeaders"]["X-Dup"] == ["a", "b"]
    assert event["queryStringParameters"] == {"token": "t2", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"token": ["t1", "t2"], "empty": [""]}
    assert event["stageVariables"] is None and event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "local" and context["resourcePath"] == "/jobs/{job_id}"
    assert context["identity"]["sourceIp"] == "127.0.0.9" and context["httpMethod"] == "GET"
    assert context["accountId"] and context["apiId"] and context["requestId"] and context["domainName"]
    assert isinstance(context["requestTimeEpoch"], int) and context["path"] == "/jobs/j-1"


def test_event_without_query_or_path_parameters_has_nulls_like_api_gateway():
    event = build_event(
        method="POST",
        raw_path="/crm/contacts",
        header_pairs=[("Host", "h")],
        body=b'{"a": "\xc3\xa9"}',
        match=ROUTES.match("POST", "/crm/contacts"),
    )
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] == '{"a": "é"}' and event["isBase64Encoded"] is False


def test_a_body_that_is_not_utf8_arrives_base64_encoded():
    raw = b"\xff\xfe\x00binary"
    event = build_event(
        method="POST",
        raw_path="/crm/contacts",
        header_pairs=[],
        body=raw,
        match=ROUTES.match("POST", "/crm/contacts"),
    )
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == raw


def test_response_parts_merge_headers_and_decode_base64_bodies():
    status, headers, body = response_parts(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert status == 201 and body == b"\x00\x01"
    assert ("Set-Cookie", "a=1") in headers and ("Set-Cookie", "b=2") in headers and ("X-One", "1") in headers
    assert response_parts("not a proxy answer")[0] == 502


@pytest.fixture
def gateway():
    seen: list[tuple[str, dict]] = []

    def invoke(function, event):
        seen.append((function, event))
        if event["path"] == "/health":
            raise RuntimeError("handler crashed")
        return {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"X-Multi": ["1", "2"]},
            "body": json.dumps({"echo": event["body"], "b64": event["isBase64Encoded"]}),
        }

    server = GatewayServer(ROUTES, invoke, port=0)
    server.start()
    yield server, seen
    server.shutdown()


def _request(server, method, path, body=b"", headers=()):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    connection.putrequest(method, path)
    for name, value in headers:
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    result = answer.status, answer.getheaders(), answer.read()
    connection.close()
    return result


def test_gateway_over_http_keeps_repeated_headers_and_raw_bytes(gateway):
    server, seen = gateway
    status, headers, body = _request(
        server,
        "POST",
        "/crm/contacts?token=x",
        b"\xff\x00",
        headers=[("X-Dup", "a"), ("X-Dup", "b"), ("Content-Type", "application/json")],
    )
    assert status == 202 and json.loads(body)["b64"] is True
    assert [v for n, v in headers if n == "X-Multi"] == ["1", "2"]
    function, event = seen[-1]
    assert function == "ContactSyncFunction"
    assert event["multiValueHeaders"]["X-Dup"] == ["a", "b"]
    assert event["queryStringParameters"] == {"token": "x"}
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["requestContext"]["domainName"] == f"{server.host}:{server.port}"


def test_gateway_answers_undeclared_routes_with_json_404_and_handler_crashes_with_502(gateway):
    server, seen = gateway
    status, _, body = _request(server, "GET", "/nowhere")
    assert status == 404 and json.loads(body)["error"] == "no_such_route" and not seen
    status, _, body = _request(server, "GET", "/health")
    assert status == 502 and json.loads(body) == {"message": "Internal server error"}
