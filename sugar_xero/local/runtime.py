"""Calling a function's handler the way Lambda would: the same module and attribute the template
names, a context object with Lambda's fields, one invocation at a time per container.

A container here is a (function, lane): the API's requests share one lane (Powertools' resolver
keeps the current event on the app, so one request at a time), and each queue poller has a lane of
its own, as each of an event source mapping's MaximumConcurrency invocations runs in its own Lambda
container. So a worker busy with Xero does not hold up the API, as in AWS. The one process-wide
state the lanes write together, Powertools' metric set, is serialised (``load_all``).
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from sugar_xero.local.template import LOCAL_ACCOUNT_ID, FunctionSpec

LOG = logging.getLogger("sugar_xero.local")


class LocalLambdaContext:
    """The attributes of Lambda's Python context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, region: str):
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{spec.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    spec: FunctionSpec
    region: str
    handler: Callable[[dict[str, Any], Any], Any]


class _JsonWarning(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": "WARNING", "logger": record.name, "message": record.getMessage().strip()})


def _serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


class LocalRuntime:
    """Handlers by logical id, imported on first use (after the environment is set)."""

    def __init__(self, functions: dict[str, FunctionSpec], region: str, *, log: TextIO | None = None):
        """``log``: where the handlers' output goes (their JSON log lines, metric lines and library
        warnings), as CloudWatch Logs would hold it; None leaves it on standard output."""
        self._specs = functions
        self._region = region
        self._loaded: dict[str, LocalFunction] = {}
        self._lock = threading.RLock()
        self._lanes: dict[tuple[str, str], threading.Lock] = {}
        self._log = log

    def function(self, logical_id: str) -> LocalFunction:
        with self._lock:
            if logical_id not in self._loaded:
                spec = self._specs[logical_id]
                module = importlib.import_module(spec.module)
                self._loaded[logical_id] = LocalFunction(spec, self._region, getattr(module, spec.attribute))
            return self._loaded[logical_id]

    def load_all(self) -> None:
        for logical_id in self._specs:
            self.function(logical_id)
        # Lambda never shares a container between concurrent invocations; here the functions share
        # one process, so the one piece of state they write together, Powertools' metric set, is
        # written and flushed under a lock.
        from shared.observability import metrics

        lock = threading.RLock()  # add_metric flushes by itself at 100 metrics
        for name in ("add_metric", "add_dimension", "add_metadata", "flush_metrics"):
            setattr(metrics.provider, name, _serialised(getattr(metrics.provider, name), lock))
        if self._log is not None:
            # Powertools' Logger holds the stdout it found at import: point it at the log instead.
            from shared.observability import SERVICE

            for handler in logging.getLogger(SERVICE).handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(self._log)
            # Library warnings (Powertools' "No application metrics to publish") as log lines too.
            logging.captureWarnings(True)
            warning_handler = logging.StreamHandler(self._log)
            warning_handler.setFormatter(_JsonWarning())
            logging.getLogger("py.warnings").addHandler(warning_handler)
            logging.getLogger("py.warnings").propagate = False

    def invoke(self, logical_id: str, event: dict[str, Any], *, lane: str = "api") -> Any:
        """One invocation. Each (function, lane) is one warm container, serving one event at a
        time: the API's requests share the lane "api"; each queue poller has its own lane, as
        each of the event source mapping's MaximumConcurrency invocations has its own container."""
        function = self.function(logical_id)
        with self._lock:
            lane_lock = self._lanes.setdefault((logical_id, lane), threading.Lock())
        with lane_lock:
            context = LocalLambdaContext(function.spec, self._region)
            started = time.monotonic()
            try:
                return function.handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > function.spec.timeout_seconds:
                    LOG.warning(
                        "%s ran %.1f s, longer than its %d s timeout in the template",
                        logical_id,
                        elapsed,
                        function.spec.timeout_seconds,
                    )
