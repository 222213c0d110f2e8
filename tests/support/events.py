"""Lambda events shaped like the ones AWS delivers, for calling handlers in-process."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any


def api_event(method: str, path: str, *, body: bytes | str | dict | None = None,
              headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
              resource: str | None = None, path_parameters: dict[str, str] | None = None,
              base64_body: bool = False) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event."""
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    headers = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", **(headers or {})}
    if raw is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "stage": "prod", "path": f"/prod{path}",
            "resourcePath": resource or path, "httpMethod": method, "requestId": str(uuid.uuid4()),
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "SugarCrm"},
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": (base64.b64encode(raw).decode() if base64_body else raw.decode()) if raw is not None
        else None,
        "isBase64Encoded": base64_body,
    }


def sqs_event(bodies: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:eu-west-1:123456789012:q"
              ) -> dict[str, Any]:
    records = []
    for body in bodies:
        text = json.dumps(body)
        records.append({
            "messageId": str(uuid.uuid4()), "receiptHandle": str(uuid.uuid4()), "body": text,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000)),
                           "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "0"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn, "awsRegion": "eu-west-1",
        })
    return {"Records": records}


class FakeLambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test-function"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "stream"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
