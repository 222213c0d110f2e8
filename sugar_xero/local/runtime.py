"""Calling a function's handler the way Lambda would: the same module and attribute the template
names, a context object with Lambda's fields, one invocation at a time.

One at a time because the handlers share process-wide state that Lambda never shares between
concurrent invocations (Powertools' resolver keeps the current event on the class, and one
Metrics set serves every function); locally every function is one warm container.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


class LocalRuntime:
    """Handlers by logical id, imported on first use (after the environment is set)."""

    def __init__(self, functions: dict[str, FunctionSpec], region: str):
        self._specs = functions
        self._region = region
        self._loaded: dict[str, LocalFunction] = {}
        self._lock = threading.RLock()

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

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        function = self.function(logical_id)
        with self._lock:
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
