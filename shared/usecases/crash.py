"""Points where a worker can die between two steps, as a Lambda timeout kills it.

Every Xero write must survive a crash at any of these points; the use cases announce them to a
``CrashPoints`` port. In AWS it is ``NO_CRASH`` (does nothing). The local stack arms it with
``SUGAR_XERO_LOCAL_CRASH_RATE`` (``from_environment``) and tests arm it at one exact point
(``CrashAt``), so that work can be killed where it hurts most.

``WorkerCrashed`` derives from BaseException, so no ``except Exception`` on the way out can
swallow it: like a timeout, the invocation simply ends, nothing after the point runs, and the
queue redelivers the message after its visibility timeout.
"""

from __future__ import annotations

import os
import random
import threading
from typing import Protocol

XERO_ANSWERED = "xero_answered"  # a Xero write answered; the sync state is not written yet
STATE_WRITTEN = "state_written"  # the sync state is written; the job is not marked yet
JOB_MARKED = "job_marked"  # the job is marked; the SQS message is not deleted yet
POINTS = (XERO_ANSWERED, STATE_WRITTEN, JOB_MARKED)
CRASH_RATE_VARIABLE = "SUGAR_XERO_LOCAL_CRASH_RATE"


class WorkerCrashed(BaseException):  # noqa: N818 - it is what happened, not an error to handle
    """The invocation died at ``point`` (injected)."""

    def __init__(self, point: str):
        super().__init__(f"worker killed at {point} (crash injection)")
        self.point = point


class CrashPoints(Protocol):
    def reached(self, point: str) -> None:
        """Called at each point; raises WorkerCrashed when the invocation dies there."""


class NoCrash:
    def reached(self, point: str) -> None:
        return None


NO_CRASH = NoCrash()


class CrashAt:
    """Dies at ``point`` the first ``times`` times it is reached (tests)."""

    def __init__(self, point: str, *, times: int = 1, skip: int = 0):
        if point not in POINTS:
            raise ValueError(f"unknown crash point {point!r}")
        self.point, self.times, self.skip = point, times, skip
        self.crashes = 0

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        if self.skip > 0:
            self.skip -= 1
            return
        if self.crashes < self.times:
            self.crashes += 1
            raise WorkerCrashed(point)


class RandomCrash:
    """Dies with probability ``rate`` at every point (the local stack and the benchmarks)."""

    def __init__(self, rate: float, *, seed: int | None = None):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{CRASH_RATE_VARIABLE} must be between 0 and 1, not {rate}")
        self.rate = rate
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self._lock = threading.Lock()
        self.crashes: dict[str, int] = dict.fromkeys(POINTS, 0)

    def reached(self, point: str) -> None:
        with self._lock:
            dies = self.rate > 0 and self._random.random() < self.rate
            if dies:
                self.crashes[point] = self.crashes.get(point, 0) + 1
        if dies:
            raise WorkerCrashed(point)


_from_environment: tuple[str, CrashPoints] | None = None


def from_environment() -> CrashPoints:
    """``SUGAR_XERO_LOCAL_CRASH_RATE`` (0..1, default 0) outside Lambda; always NO_CRASH in Lambda
    (``AWS_EXECUTION_ENV`` is set there), so a stray variable can never kill production work."""
    global _from_environment
    text = (os.environ.get(CRASH_RATE_VARIABLE) or "").strip()
    if not text or os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda"):
        return NO_CRASH
    if _from_environment is None or _from_environment[0] != text:
        try:
            rate = float(text)
        except ValueError as error:
            raise ValueError(f"{CRASH_RATE_VARIABLE} must be a number between 0 and 1, not {text!r}") from error
        _from_environment = (text, RandomCrash(rate) if rate > 0 else NO_CRASH)
    return _from_environment[1]
