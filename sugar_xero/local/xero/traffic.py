"""What happens to a call before it reaches the data: rate limits, idempotency, injected faults,
and the request log the tests read back."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig, FaultConfig

# ---- rate limits ------------------------------------------------------------------------------


@dataclass
class _Window:
    started: float = 0.0
    count: int = 0


class _Rolling:
    """Calls admitted in the last ``length`` seconds, whenever one asks: Xero's "60 calls per
    minute" read the least convenient way for a client (a rolling minute, so no burst at a window
    boundary gets through twice). Source: developer.xero.com/documentation/guides/oauth2/limits/
    gives "60 calls per minute" without naming a window; we take the strictest reading."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def count(self, now: float, length: float) -> int:
        while self.times and self.times[0] <= now - length:
            self.times.popleft()
        return len(self.times)

    def frees_in(self, now: float, length: float) -> float:
        return (self.times[0] + length - now) if self.times else 0.0


@dataclass
class _TenantUsage:
    minute: _Rolling = field(default_factory=_Rolling)
    day: _Window = field(default_factory=_Window)
    in_flight: int = 0


@dataclass
class Admission:
    admitted: bool
    headers: dict[str, str]
    problem: str | None = None
    retry_after: int | None = None


class RateLimiter:
    """Xero's limits per tenant: calls in any rolling minute, calls per day in a fixed window that
    starts at each tenant's first call (so it resets at a different moment for each), calls in
    flight, and the app-wide minute limit. Only admitted calls use quota."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._lock = threading.Lock()
        self._tenants: dict[str, _TenantUsage] = {}
        self._app = _Window()

    def reset(self) -> None:
        with self._lock:
            self._tenants.clear()
            self._app = _Window()

    def _roll(self, window: _Window, length: float, now: float) -> None:
        if window.count == 0 or now - window.started >= length:
            window.started, window.count = now, 0

    def admit(self, tenant: str) -> Admission:
        config = self.config
        with self._lock:
            now = config.clock()
            usage = self._tenants.setdefault(tenant, _TenantUsage())
            minute = config.minute_window_seconds
            self._roll(usage.day, config.day_window_seconds, now)
            self._roll(self._app, minute, now)
            problem, retry_after = None, None
            if usage.day.count >= config.day_limit:
                problem = "day"
                retry_after = usage.day.started + config.day_window_seconds - now
            elif usage.minute.count(now, minute) >= config.minute_limit:
                problem = "minute"
                retry_after = usage.minute.frees_in(now, minute)
            elif self._app.count >= config.app_minute_limit:
                problem = "appminute"
                retry_after = self._app.started + config.minute_window_seconds - now
            elif usage.in_flight >= config.concurrent_limit:
                problem = "concurrent"
            if problem is None:
                usage.minute.times.append(now)
                usage.day.count += 1
                self._app.count += 1
                usage.in_flight += 1
            headers = self._headers(usage, now)
            seconds = None if retry_after is None else max(1, math.ceil(retry_after))
            return Admission(problem is None, headers, problem, seconds)

    def release(self, tenant: str) -> None:
        with self._lock:
            usage = self._tenants.get(tenant)
            if usage and usage.in_flight > 0:
                usage.in_flight -= 1

    def _headers(self, usage: _TenantUsage, now: float) -> dict[str, str]:
        config = self.config
        minute = usage.minute.count(now, config.minute_window_seconds)
        return {
            "X-MinLimit-Remaining": str(max(0, config.minute_limit - minute)),
            "X-DayLimit-Remaining": str(max(0, config.day_limit - usage.day.count)),
            "X-AppMinLimit-Remaining": str(max(0, config.app_minute_limit - self._app.count)),
        }

    def headers(self, tenant: str) -> dict[str, str]:
        with self._lock:
            now = self.config.clock()
            usage = self._tenants.setdefault(tenant, _TenantUsage())
            self._roll(usage.day, self.config.day_window_seconds, now)
            return self._headers(usage, now)

    def usage(self) -> dict[str, Any]:
        with self._lock:
            now = self.config.clock()
            return {
                tenant: {"minute": u.minute.count(now, self.config.minute_window_seconds),
                         "day": u.day.count, "in_flight": u.in_flight}
                for tenant, u in self._tenants.items()
            }


class Latency:
    """Seconds each admitted call takes before Xero answers: ``latency_seconds``, or a draw from
    [``latency_seconds``, ``latency_max_seconds``] when the latter is larger (seeded, so a run
    can be repeated)."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._lock = threading.Lock()
        self._random = random.Random(config.latency_seed)  # noqa: S311 - test determinism

    def draw(self) -> float:
        low, high = self.config.latency_seconds, self.config.latency_max_seconds
        if high <= low:
            return low
        with self._lock:
            return self._random.uniform(low, high)


# ---- idempotency ------------------------------------------------------------------------------


@dataclass
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Entry:
    fingerprint: str
    done: threading.Event = field(default_factory=threading.Event)
    response: StoredResponse | None = None
    expires_at: float = math.inf


class IdempotencyCache:
    """Idempotency-Key per tenant: the first answer is kept for ``idempotency_ttl_seconds``; a replay
    with the same request gets it back, a different request under the same key is refused. A replay
    that arrives while the first is still running waits for it (bounded)."""

    WAIT_SECONDS = 30.0

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    @staticmethod
    def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
        digest = hashlib.sha256()
        for part in (method.upper().encode(), path.encode(), query.encode(), body):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    def begin(self, tenant: str, key: str, fingerprint: str) -> tuple[str, Any]:
        """("new", token) to go ahead, ("replay", StoredResponse), or ("conflict", None)."""
        with self._lock:
            now = self.config.clock()
            for stale in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[stale]
            entry = self._entries.get((tenant, key))
            if entry is None:
                entry = self._entries[(tenant, key)] = _Entry(fingerprint)
                return "new", (tenant, key, entry)
        if entry.fingerprint != fingerprint:
            return "conflict", None
        entry.done.wait(self.WAIT_SECONDS)
        if entry.response is None:
            return "conflict", None
        return "replay", entry.response

    def complete(self, token: tuple[str, str, _Entry], response: StoredResponse | None) -> None:
        """Keep the answer, or forget the key (``None``: the call failed, a retry may run it again)."""
        tenant, key, entry = token
        with self._lock:
            if response is None:
                if self._entries.get((tenant, key)) is entry:
                    del self._entries[(tenant, key)]
            else:
                entry.response = response
                entry.expires_at = self.config.clock() + self.config.idempotency_ttl_seconds
        entry.done.set()


# ---- faults -----------------------------------------------------------------------------------


class FaultInjector:
    def __init__(self, faults: FaultConfig):
        self._lock = threading.Lock()
        self.configure(faults)

    def configure(self, faults: FaultConfig) -> None:
        faults.check()
        with self._lock:
            self.faults = faults
            self._queue = deque(faults.next)
            self._random = random.Random(faults.seed)  # noqa: S311 - test determinism, not security
            self.injected = 0

    def draw(self, path: str) -> str | None:
        """The fault for this call, or None for a normal answer."""
        with self._lock:
            if self.faults.path_contains not in path:
                return None
            if self._queue:
                kind = self._queue.popleft()
            elif self.faults.rate > 0 and self._random.random() < self.faults.rate:
                kind = self._random.choice(self.faults.kinds)
            else:
                return None
            if kind == "ok":
                return None
            self.injected += 1
            return kind

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {**self.faults.as_json(), "pending_next": list(self._queue), "injected": self.injected}


# ---- request log ------------------------------------------------------------------------------


class RequestLog:
    def __init__(self, size: int):
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            entry.setdefault("time", dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
            self._entries.append(entry)
            return entry

    def since(self, seq: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            return [dict(e) for e in self._entries if e["seq"] > seq], self._seq
