"""Run the emulator on loopback in a background thread (tests, the local stack) or in the foreground."""

from __future__ import annotations

import argparse
import logging
import threading

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import XeroEmulator
from .config import EmulatorConfig

LOG = logging.getLogger("sugar_xero.xero_emulator")


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a stderr line per request (the emulator keeps its own log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        LOG.debug("%s %s -> %s", self.command, self.path, code)

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 - werkzeug's signature
        LOG.debug(message, *args)


class EmulatorServer:
    """A running emulator: ``url`` (no trailing slash), ``port``, ``app`` and ``shutdown()``."""

    def __init__(self, server: BaseWSGIServer, app: XeroEmulator):
        self._server = server
        self.app = app
        self.host = server.server_address[0]
        self.port = server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"xero-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def config(self) -> EmulatorConfig:
        return self.app.config

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def create_app(config: EmulatorConfig | None = None) -> XeroEmulator:
    return XeroEmulator(config)


def serve(host: str = "127.0.0.1", port: int = 0, config: EmulatorConfig | None = None) -> EmulatorServer:
    """Start a threaded server on ``host:port`` (0: a free port) and return at once."""
    app = create_app(config)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    server.daemon_threads = True
    return EmulatorServer(server, app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Xero Accounting API emulator (xero-local extended), loopback only"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--tenant-id", default=EmulatorConfig.tenant_id)
    parser.add_argument("--organisation", action="append", default=[], metavar="TENANT_ID=NAME",
                        help="a further organisation the user can access, listed by /connections (repeatable)")
    parser.add_argument("--minute-limit", type=int, default=60)
    parser.add_argument("--concurrent-limit", type=int, default=5)
    parser.add_argument("--day-limit", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    parser.add_argument("--no-spec-validation", action="store_true")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        tenant_id=args.tenant_id,
        organisations=dict(value.split("=", 1) for value in args.organisation if "=" in value),
        minute_limit=args.minute_limit,
        concurrent_limit=args.concurrent_limit,
        day_limit=args.day_limit,
        latency_seconds=args.latency,
        validate_spec=not args.no_spec_validation,
    )
    server = serve(args.host, args.port, config)
    print(f"xero emulator on {server.url} (tenant {config.tenant_id})", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
