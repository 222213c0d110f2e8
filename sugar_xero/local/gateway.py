"""A local stand-in for API Gateway (REST API, proxy integration).

Each HTTP request to a route the template declares becomes the proxy event API Gateway would
send, and the declaring function's handler answers it. Anything else gets a JSON 404.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sugar_xero.local.template import LOCAL_ACCOUNT_ID, ApiRoute

LOG = logging.getLogger("sugar_xero.local")

LOCAL_API_ID = "local"
LOCAL_STAGE = "local"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass(frozen=True)
class RouteMatch:
    route: ApiRoute
    path_parameters: dict[str, str]


class RouteTable:
    """Matches a request against the declared paths: literal segments before ``{name}`` ones,
    ``{name+}`` taking the rest of the path, as API Gateway does."""

    def __init__(self, routes: Iterable[ApiRoute]):
        self.routes = list(routes)

    @staticmethod
    def _match_path(template_path: str, path: str) -> dict[str, str] | None:
        wanted = [s for s in template_path.strip("/").split("/") if s]
        given = [s for s in path.strip("/").split("/") if s]
        parameters: dict[str, str] = {}
        for index, segment in enumerate(wanted):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = given[index:]
                if not rest:
                    return None
                parameters[segment[1:-2]] = "/".join(rest)
                return parameters
            if index >= len(given):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                parameters[segment[1:-1]] = unquote(given[index])
            elif segment != given[index]:
                return None
        return parameters if len(wanted) == len(given) else None

    @staticmethod
    def _specificity(route: ApiRoute) -> tuple[int, int, int]:
        segments = [s for s in route.path.strip("/").split("/") if s]
        literal = sum(1 for s in segments if not s.startswith("{"))
        greedy = sum(1 for s in segments if s.endswith("+}"))
        return (-greedy, literal, 0 if route.method == "ANY" else 1)

    def match(self, method: str, path: str) -> RouteMatch | None:
        candidates = []
        for route in self.routes:
            if route.method not in {"ANY", method.upper()}:
                continue
            parameters = self._match_path(route.path, path)
            if parameters is not None:
                candidates.append(RouteMatch(route, parameters))
        if not candidates:
            return None
        return max(candidates, key=lambda m: self._specificity(m.route))


def _single_and_multi(
    pairs: list[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # API Gateway keeps the last value in the single-value map
        multi.setdefault(name, []).append(value)
    return single, multi


def build_event(
    *,
    method: str,
    raw_path: str,
    header_pairs: list[tuple[str, str]],
    body: bytes,
    match: RouteMatch,
    source_ip: str = "127.0.0.1",
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """The REST API proxy event for one request (``raw_path`` may carry a query string)."""
    parts = urlsplit(raw_path)
    path = unquote(parts.path) or "/"
    headers, multi_headers = _single_and_multi(header_pairs)
    query, multi_query = _single_and_multi(parse_qsl(parts.query, keep_blank_values=True))
    if body:
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    else:
        text, encoded = None, False
    return {
        "resource": match.route.path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": _request_context(method, path, match, headers, source_ip=source_ip, host=host),
        "body": text,
        "isBase64Encoded": encoded,
    }


def _request_context(method: str, path: str, match: RouteMatch, headers: dict[str, str] | None, *,
                     source_ip: str, host: str) -> dict[str, Any]:
    """API Gateway's requestContext for a REST API proxy request."""
    now = time.time()
    return {
        "resourceId": uuid.uuid4().hex[:6],
        "resourcePath": match.route.path,
        "httpMethod": method.upper(),
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "path": path,
        "accountId": LOCAL_ACCOUNT_ID,
        "protocol": "HTTP/1.1",
        "stage": LOCAL_STAGE,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "requestTimeEpoch": int(now * 1000),
        "requestId": str(uuid.uuid4()),
        "identity": {
            "sourceIp": source_ip,
            "userAgent": (headers or {}).get("User-Agent") or (headers or {}).get("user-agent"),
            "accessKey": None,
            "accountId": None,
            "caller": None,
            "user": None,
            "userArn": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "apiKey": None,
            "apiKeyId": None,
        },
        "domainName": host,
        "apiId": LOCAL_API_ID,
    }


def response_parts(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body from a handler's proxy answer (API Gateway's reading of it)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 502, [("Content-Type", "application/json")], b'{"message": "Internal server error"}'
    headers: dict[str, list[str]] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(name, []).extend(str(v) for v in (values or []))
    for name, value in (result.get("headers") or {}).items():
        if name not in headers:
            headers[name] = [str(value)]
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    return int(result["statusCode"]), [(n, v) for n, vs in headers.items() for v in vs], raw


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(body).encode()


Invoke = Callable[[str, dict[str, Any]], Any]


class GatewayServer:
    """The gateway on 127.0.0.1:<port>, one thread per request."""

    def __init__(self, routes: RouteTable, invoke: Invoke, *, host: str = "127.0.0.1", port: int = 0):
        self.routes = routes
        self.invoke = invoke
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "sugar-xero-local-gateway"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold every kept-alive answer up by about 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                LOG.debug("gateway: " + format, *args)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_PAYLOAD_BYTES:
                    self._send(
                        *_json(
                            413, {"error": "body_too_large", "message": "Request too large.", "details": []}
                        ),
                        close=True,
                    )
                    return
                body = self.rfile.read(length) if length else b""
                self._send(
                    *gateway.answer(
                        self.command,
                        self.path,
                        list(self.headers.items()),
                        body,
                        source_ip=self.client_address[0],
                    )
                )

            def _send(
                self, status: int, headers: list[tuple[str, str]], body: bytes, close: bool = False
            ) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                # Say so whenever the connection will close (also when the client asked for it),
                # so a pooling client never reuses a closed connection.
                client_closes = (self.headers.get("Connection") or "").lower() == "close"
                if close or client_closes:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    def answer(
        self,
        method: str,
        raw_path: str,
        header_pairs: list[tuple[str, str]],
        body: bytes,
        *,
        source_ip: str = "127.0.0.1",
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        path = unquote(urlsplit(raw_path).path) or "/"
        match = self.routes.match(method, path)
        if match is None:
            return _json(
                404,
                {
                    "error": "no_such_route",
                    "message": f"No route {method} {path} in the template.",
                    "details": [],
                },
            )
        host = next((v for n, v in header_pairs if n.lower() == "host"), f"{self.host}:{self.port}")
        pairs = list(header_pairs)
        present = {n.lower() for n, _ in pairs}
        for name, value in (
            ("X-Forwarded-For", source_ip),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Port", str(self.port)),
        ):
            if name.lower() not in present:
                pairs.append((name, value))
        event = build_event(
            method=method,
            raw_path=raw_path,
            header_pairs=pairs,
            body=body,
            match=match,
            source_ip=source_ip,
            host=host,
        )
        try:
            result = self.invoke(match.route.function, event)
        except Exception:
            LOG.exception("%s failed on %s %s", match.route.function, method, path)
            return _json(502, {"message": "Internal server error"})
        return response_parts(result)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, so only once it runs
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
