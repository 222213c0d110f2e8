"""Retry timing shared by the Xero and Sugar adapters: reading ``Retry-After`` and the jittered
exponential backoff, so both services are waited for the same way."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_SECONDS = 0.25
CAP_SECONDS = 8.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """How long to wait before attempt ``attempt + 1``.

    Never sooner than the service asked; otherwise 0.25 s doubling up to 8 s. Both get a little
    random extra so parallel workers do not come back in step."""
    if retry_after is not None:
        return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after))
    wait = min(CAP_SECONDS, BASE_SECONDS * 2 ** (attempt - 1))
    return wait + random.uniform(0, 0.25 * wait)


# ---- the invocation's deadline ------------------------------------------------------------------
# A worker must never be cut off by Lambda's timeout half-way through its work: every retry wait
# and every HTTP timeout is planned against the time the invocation has left
# (``context.get_remaining_time_in_millis()``), and what cannot finish goes back to its queue
# with a delay instead. The batch runner (``shared.api.sqs.run_batch``) sets the deadline; the
# Xero and Sugar adapters read it. Outside an invocation (CLI, tests) there is none.
import contextlib  # noqa: E402 - kept beside the code that uses it
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextvars import ContextVar  # noqa: E402

# Left for what follows the last call: the state write, the job update, the batch answer.
FINISH_SECONDS = 5.0
# A call given less than this is not worth starting.
MIN_CALL_SECONDS = 2.0


class Deadline:
    def __init__(self, at: float, clock: Callable[[], float] = time.monotonic):
        self.at = at
        self._clock = clock

    @classmethod
    def from_context(cls, context: object, clock: Callable[[], float] = time.monotonic) -> Deadline | None:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return None
        try:
            millis = float(remaining())
        except (TypeError, ValueError):
            return None
        return cls(clock() + millis / 1000.0 - FINISH_SECONDS, clock)

    def remaining(self) -> float:
        """Seconds left for calls and waits (the finishing margin already taken off)."""
        return self.at - self._clock()

    def call_timeout(self, configured: float) -> float:
        """An HTTP timeout that ends before the deadline."""
        return max(0.1, min(configured, self.remaining()))

    def allows(self, wait: float) -> bool:
        """Whether waiting ``wait`` seconds still leaves time for one more call."""
        return self.remaining() - wait >= MIN_CALL_SECONDS


_current: ContextVar[Deadline | None] = ContextVar("sugar_xero_deadline", default=None)


def current_deadline() -> Deadline | None:
    return _current.get()


@contextlib.contextmanager
def deadline_of(context: object, clock: Callable[[], float] = time.monotonic) -> Iterator[Deadline | None]:
    """The invocation's deadline for the adapters' retries, while the batch is worked."""
    token = _current.set(Deadline.from_context(context, clock))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def time_for_a_call() -> bool:
    deadline = _current.get()
    return deadline is None or deadline.remaining() >= MIN_CALL_SECONDS


def call_timeout(configured: float) -> float:
    deadline = _current.get()
    return configured if deadline is None else deadline.call_timeout(configured)


def time_to_wait(wait: float) -> bool:
    deadline = _current.get()
    return deadline is None or deadline.allows(wait)
