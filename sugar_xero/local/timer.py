"""The schedule, locally: fires a function with an EventBridge Scheduler-shaped event."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sugar_xero.local.background import BackgroundLoop
from sugar_xero.local.template import LOCAL_ACCOUNT_ID

LOG = logging.getLogger("sugar_xero.local")


class ScheduleTimer(BackgroundLoop):
    """Fires a function with the schedule's event every ``every_seconds``
    (the first time one period after start, as a new schedule does)."""

    def __init__(
        self,
        function: str,
        every_seconds: float,
        *,
        schedule_arn: str,
        region: str,
        invoke: Callable[[str, dict[str, Any]], Any],
        event_input: Any = None,
    ):
        self.function = function
        self.every_seconds = every_seconds
        self.schedule_arn = schedule_arn
        self.region = region
        self.event_input = event_input
        self._invoke = invoke
        super().__init__()
        self.thread_name = f"timer-{self.function}"
        self.fired = 0

    def event(self) -> dict[str, Any]:
        """The schedule's own Input when the template gives one (with Scheduler's context
        attributes filled in, as Scheduler does), else Scheduler's default event."""
        scheduled_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        execution_id = str(uuid.uuid4())
        if isinstance(self.event_input, str):
            text = self.event_input
            for name, value in (
                ("scheduled-time", scheduled_time),
                ("schedule-arn", self.schedule_arn),
                ("execution-id", execution_id),
                ("attempt-number", "1"),
            ):
                text = text.replace(f"<aws.scheduler.{name}>", value)
            try:
                return json.loads(text)
            except ValueError:
                LOG.warning(
                    "the schedule's Input for %s is not JSON; sending the default event", self.function
                )
        return {
            "version": "0",
            "id": execution_id,
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": LOCAL_ACCOUNT_ID,
            "time": scheduled_time,
            "region": self.region,
            "resources": [self.schedule_arn],
            "detail": {},
        }

    def fire(self) -> Any:
        self.fired += 1
        return self._invoke(self.function, self.event())

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.fire()
            except Exception:
                LOG.exception("scheduled run of %s failed", self.function)
