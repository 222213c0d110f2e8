"""Calling a function's handler the way Lambda would: the same module and attribute the template
names, a context object with Lambda's fields, one invocation at a time.

One at a time because the handlers share process-wide state that Lambda never shares between
concurrent invocations (Powertools' resolver keeps the current event on the class, and one
Metrics set serves every function); locally every function is one warm container.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


def _warning_line(warning: warnings.WarningMessage) -> str:
    return json.dumps({"level": "WARNING", "message": str(warning.message), "category": warning.category.__name__,
                       "location": f"{Path(warning.filename).name}:{warning.lineno}"})


class LocalRuntime:
    """Handlers by logical id, imported on first use (after the environment is set)."""

    def __init__(self, functions: dict[str, FunctionSpec], region: str, *, log: TextIO | None = None):
        """``log``: where the handlers' output goes (their JSON log lines, metric lines and library
        warnings), as CloudWatch Logs would hold it; None leaves it on standard output."""
        self._specs = functions
        self._region = region
        self._loaded: dict[str, LocalFunction] = {}
        self._lock = threading.RLock()
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
        if self._log is not None:
            # Powertools' Logger holds the stdout it found at import: point it at the log instead.
            from shared.observability import SERVICE

            for handler in logging.getLogger(SERVICE).handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(self._log)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        function = self.function(logical_id)
        with self._lock:
            context = LocalLambdaContext(function.spec, self._region)
            started = time.monotonic()
            try:
                if self._log is None:
                    return function.handler(event, context)
                return self._logged(function, event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > function.spec.timeout_seconds:
                    LOG.warning(
                        "%s ran %.1f s, longer than its %d s timeout in the template",
                        logical_id,
                        elapsed,
                        function.spec.timeout_seconds,
                    )

    def _logged(self, function: LocalFunction, event: dict[str, Any], context: LocalLambdaContext) -> Any:
        """One invocation with its printed metric lines and library warnings in the log (invocations
        run one at a time, so swapping standard output here catches only the handler's)."""
        assert self._log is not None
        with contextlib.redirect_stdout(self._log), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return function.handler(event, context)
            finally:
                for warning in caught:
                    print(_warning_line(warning), file=self._log)
                self._log.flush()
