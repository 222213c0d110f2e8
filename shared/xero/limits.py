"""Xero's rate limits, counted once for every Lambda instance.

Each Lambda container is its own process, so a limit counted in memory would be a limit per
container. ``SharedRateGate`` keeps its counts in the sync table instead (PK/SK strings, TTL
attribute ``expires_at`` so finished windows vanish by themselves):

=====================  ====================  ================================================
PK                     SK                    holds
=====================  ====================  ================================================
``LIMIT#<tenant>``     ``MINUTE``            tickets ``t<i>``: when each of the last 60 calls started
``LIMIT#<tenant>``     ``DAY#<yyyy-mm-dd>``  ``calls`` started that UTC day (5,000; 1,000 free tier)
``LIMIT#app``          ``MIN#<epoch-min>``   ``calls`` over every tenant (limit 10,000)
``LIMIT#<tenant>``     ``INFLIGHT``          permit slots ``slot<i>`` / ``slot<i>_until`` (5)
``LIMIT#<tenant>``     ``BLOCK``             ``blocked_until``, ``problem``: Xero answered 429
``LIMIT#app``          ``BLOCK``             the same for the app-wide minute limit
=====================  ====================  ================================================

Calls in flight: the INFLIGHT item has one slot per permitted concurrent call. A slot is free
when it is absent or its lease (``slot<i>_until``) has passed. Taking a slot is one conditional
write (``attribute_not_exists(slot<i>_until) OR slot<i>_until <= :now``), so two instances can
never hold the same slot and there are never more permits than slots. A process that dies
holding a slot does not leak it: the slot stops counting when its lease lapses (the lease is the
longest one HTTP attempt may take, plus a margin). ``release`` removes the slot only while it
still holds our permit id, so a late release cannot free a slot another caller took after our
lease lapsed.

The organisation's minute is a rolling 60 seconds, not the epoch minute: fixed windows let 120
calls through in 60 rolling seconds (60 at 12:00:59, 60 at 12:01:00), and Xero counts the last 60
seconds whenever a call arrives. The MINUTE item holds one ticket per permitted call (60), each the
time a call started; a call takes a ticket whose time is at least 60 s (plus ``minute_margin``, for
the moments between our stamp and Xero's arrival) in the past, with one conditional write
(``attribute_not_exists(t<i>) OR t<i> <= :cutoff``), the same pattern as the in-flight slots. So
any 60 rolling seconds hold at most 60 of our calls, whoever sends them, and the 61st waits exactly
until the oldest ticket ages out. The day (a UTC day, as Xero's) and the app-wide minute (10,000
over every organisation, far above one connector's use, and Xero's ``X-AppMinLimit-Remaining``
is trusted over it) are counters in fixed windows: a conditional ``ADD calls :one`` with
``calls < :limit``. The ticket is the last step before the call goes; when a step refuses, the
earlier steps are undone (counter ``ADD -1``, slot released) so a refused call uses no quota.

Xero's own figures win over ours: other apps, manual calls, and windows that reset at other
moments than ours mean Xero may have fewer calls left than our counters think. ``observe``
raises our counter to ``limit - X-*-Remaining`` when that is higher (for the minute: stamps
free tickets with the current time until that many are live), and on 429 records a
``blocked_until`` from ``Retry-After`` and ``X-Rate-Limit-Problem`` so that every instance
stops at once.

``acquire`` never waits long: it polls briefly for an in-flight slot (calls finish in well under
a second) and otherwise raises ``RateLimited`` with the seconds until the limit frees, so the
caller can put the work back on its queue instead of holding a Lambda.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import RateLimited
from shared.observability import logger
from shared.state.dynamo import conditional_check_failed

APP_SCOPE = "app"
PROBLEMS = ("minute", "day", "appminute", "concurrent")

ROLLING_MINUTE_SECONDS = 60.0
TICKETS_SK = "MINUTE"

# How long a block lasts when a 429 names no Retry-After (Xero sends it for minute and day only).
DEFAULT_BLOCK_SECONDS = {"minute": 60.0, "appminute": 60.0, "concurrent": 1.0}


@dataclass(frozen=True)
class Permit:
    """One call's right to go: a held in-flight slot, counted in every window."""

    tenant_id: str
    permit_id: str
    slot: int
    lease_until: float


def limit_pk(scope: str) -> str:
    return f"LIMIT#{scope}"


def _number(value: float) -> Decimal:
    """boto3 refuses floats; millisecond precision is plenty for these clocks."""
    return Decimal(str(round(value, 3)))



def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SharedRateGate:
    def __init__(self, table: Any, *, minute_limit: int = 60, day_limit: int = 5000,
                 concurrent_limit: int = 5, app_minute_limit: int = 10_000,
                 lease_seconds: float = 45.0, max_wait_seconds: float = 2.0,
                 minute_margin_seconds: float = 1.0,
                 poll_seconds: float = 0.05, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        """``table`` is a boto3 DynamoDB Table (the sync table). ``lease_seconds`` must cover the
        longest HTTP attempt (the client's timeout) so that a live call never loses its slot."""
        self._table = table
        self.minute_limit = minute_limit
        self.day_limit = day_limit
        self.concurrent_limit = concurrent_limit
        self.app_minute_limit = app_minute_limit
        self._lease = lease_seconds
        self._ticket_life = ROLLING_MINUTE_SECONDS + minute_margin_seconds
        self._max_wait = max_wait_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._sleep = sleep
        # What this instance already knows, to skip needless DynamoDB calls.
        self._known_blocks: dict[str, tuple[float, str]] = {}
        self._known_counts: dict[tuple[str, str], int] = {}
        self._known_live_tickets: dict[str, int] = {}

    # ---- public ----------------------------------------------------------------------------
    def acquire(self, tenant_id: str) -> Permit:
        """A permit for one call to ``tenant_id`` now, or ``RateLimited`` saying when to retry."""
        now = self._clock()
        for scope in (APP_SCOPE, tenant_id):
            self._raise_if_known_block(scope, now)
        items = self._read_state(tenant_id)
        for (scope, sk), item in items.items():
            if sk == "BLOCK":
                self._remember_block(scope, item)
                self._raise_if_known_block(scope, now)

        permit = self._take_slot(tenant_id, items.get((tenant_id, "INFLIGHT"), {}))
        counted: list[tuple[str, str]] = []
        try:
            now = self._clock()
            minute_sk, minute_end = self._minute_window(now)
            day_sk, day_end = self._day_window(now)
            for scope, sk, limit, window_end, ttl, problem in (
                    (APP_SCOPE, minute_sk, self.app_minute_limit, minute_end, minute_end + 120,
                     "appminute"),
                    (tenant_id, day_sk, self.day_limit, day_end, day_end + 86400, "day")):
                self._count_call(scope, sk, limit, window_end, ttl, problem, now)
                counted.append((scope, sk))
            self._take_ticket(tenant_id, items.get((tenant_id, TICKETS_SK), {}))
        except BaseException:
            for scope, sk in counted:
                self._uncount_call(scope, sk)
            self.release(permit)
            raise
        return permit

    def release(self, permit: Permit) -> None:
        """Free the permit's slot. Never raises: a slot that cannot be freed lapses with its lease."""
        slot = f"slot{permit.slot}"
        try:
            self._table.update_item(
                Key={"PK": limit_pk(permit.tenant_id), "SK": "INFLIGHT"},
                UpdateExpression="REMOVE #slot, #until",
                ConditionExpression="#slot = :permit",
                ExpressionAttributeNames={"#slot": slot, "#until": f"{slot}_until"},
                ExpressionAttributeValues={":permit": permit.permit_id})
        except ClientError as error:
            if conditional_check_failed(error):
                return  # our lease lapsed and someone took the slot: not ours to free
            logger.warning("could not release a Xero call permit; its lease will lapse",
                           extra={"tenant": permit.tenant_id, "error": str(error)})
        except BotoCoreError as error:
            logger.warning("could not release a Xero call permit; its lease will lapse",
                           extra={"tenant": permit.tenant_id, "error": str(error)})

    def observe(self, tenant_id: str, headers: Mapping[str, str], status: int) -> None:
        """Learn from one Xero answer: its remaining-calls headers and, on 429, the block.
        Never raises: losing one observation only costs accuracy until the next answer."""
        plain = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
        now = self._clock()
        try:
            minute_sk, minute_end = self._minute_window(now)
            day_sk, day_end = self._day_window(now)
            minute_remaining = _header_number(plain, "x-minlimit-remaining")
            if minute_remaining is not None:
                self._raise_live_tickets_to(tenant_id, int(self.minute_limit - max(0.0, minute_remaining)))
            for header, scope, sk, limit, ttl in (
                    ("x-daylimit-remaining", tenant_id, day_sk, self.day_limit, day_end + 86400),
                    ("x-appminlimit-remaining", APP_SCOPE, minute_sk, self.app_minute_limit,
                     minute_end + 120)):
                remaining = _header_number(plain, header)
                if remaining is not None:
                    self._raise_count_to(scope, sk, int(limit - max(0.0, remaining)), ttl)
            if status == 429:
                problem = (plain.get("x-rate-limit-problem") or "minute").strip().lower()
                retry_after = _header_number(plain, "retry-after")
                if retry_after is None:
                    retry_after = (day_end - now if problem == "day"
                                   else DEFAULT_BLOCK_SECONDS.get(problem, 60.0))
                scope = APP_SCOPE if problem == "appminute" else tenant_id
                self._block(scope, now + max(0.0, retry_after), problem)
        except (ClientError, BotoCoreError) as error:
            logger.warning("could not record Xero's rate-limit answer",
                           extra={"tenant": tenant_id, "error": str(error)})

    def headroom(self, tenant_id: str) -> dict[str, Any]:
        """What is left of ``tenant_id``'s limits now, read-only (``sugar-xero status``): calls
        counted this minute and this UTC day, calls in flight (slots whose lease has not
        lapsed), the app-wide minute, and the block in force if Xero answered 429.
        ``blocked_until`` is epoch seconds (the later of the tenant's and the app's block), or
        None when calls may go."""
        now = self._clock()
        minute_sk, minute_end = self._minute_window(now)
        day_sk, day_end = self._day_window(now)
        items = self._get_items([(tenant_id, TICKETS_SK), (tenant_id, day_sk), (tenant_id, "INFLIGHT"),
                                 (tenant_id, "BLOCK"), (APP_SCOPE, minute_sk), (APP_SCOPE, "BLOCK")])
        live = self._live_tickets(items.get((tenant_id, TICKETS_SK), {}), now)

        def calls(scope: str, sk: str) -> int:
            return int(items.get((scope, sk), {}).get("calls", 0))

        inflight = items.get((tenant_id, "INFLIGHT"), {})
        in_flight = sum(1 for i in range(self.concurrent_limit)
                        if float(inflight.get(f"slot{i}_until", 0)) > now)
        blocks = [(float(item.get("blocked_until", 0)), str(item.get("problem", "minute")))
                  for item in (items.get((tenant_id, "BLOCK")), items.get((APP_SCOPE, "BLOCK"))) if item]
        blocked_until, problem = max(blocks, default=(0.0, ""))
        blocked = blocked_until > now
        return {
            "tenant_id": tenant_id,
            # rolling: the seconds until the oldest call in the last minute ages out (0: none counted)
            "minute": {"used": len(live), "limit": self.minute_limit,
                       "resets_in_seconds": round(min(live, default=now) - now, 1)},
            "day": {"used": calls(tenant_id, day_sk), "limit": self.day_limit,
                    "resets_in_seconds": round(day_end - now, 1)},
            "in_flight": {"used": in_flight, "limit": self.concurrent_limit},
            "app_minute": {"used": calls(APP_SCOPE, minute_sk), "limit": self.app_minute_limit},
            "blocked_until": round(blocked_until, 3) if blocked else None,
            "blocked_problem": problem if blocked else None,
        }

    # ---- blocks ----------------------------------------------------------------------------
    def _read_state(self, tenant_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The app and tenant blocks, the tenant's slots and its minute tickets, in one round trip."""
        return self._get_items([(APP_SCOPE, "BLOCK"), (tenant_id, "BLOCK"), (tenant_id, "INFLIGHT"),
                                (tenant_id, TICKETS_SK)])

    def _get_items(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by (scope, SK), read consistently in one BatchGetItem (at most 100 keys)."""
        keys = [{"PK": limit_pk(scope), "SK": sk} for scope, sk in wanted]
        request: dict[str, Any] = {self._table.name: {"Keys": keys, "ConsistentRead": True}}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for _ in range(5):  # UnprocessedKeys is rare for a few keys; bounded rather than spin
            answer = self._table.meta.client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self._table.name, []):
                found[(str(item["PK"]).removeprefix("LIMIT#"), str(item["SK"]))] = item
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        return found

    def _remember_block(self, scope: str, item: dict[str, Any]) -> None:
        until = float(item.get("blocked_until", 0))
        known = self._known_blocks.get(scope)
        if not known or until > known[0]:
            self._known_blocks[scope] = (until, str(item.get("problem", "minute")))

    def _raise_if_known_block(self, scope: str, now: float) -> None:
        until, problem = self._known_blocks.get(scope, (0.0, ""))
        if until > now:
            raise RateLimited(f"Xero's {problem} limit: blocked for {until - now:.1f}s",
                              retry_after=until - now, problem=problem)

    def _block(self, scope: str, until: float, problem: str) -> None:
        self._remember_block(scope, {"blocked_until": until, "problem": problem})
        try:
            self._table.update_item(
                Key={"PK": limit_pk(scope), "SK": "BLOCK"},
                UpdateExpression="SET blocked_until = :until, problem = :problem, expires_at = :ttl",
                # Only ever extend a block: a short minute block must not cut a day block.
                ConditionExpression="attribute_not_exists(blocked_until) OR blocked_until < :until",
                ExpressionAttributeValues={":until": _number(until), ":problem": problem,
                                           ":ttl": int(until) + 300})
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
        logger.warning("Xero rate limit hit: calls blocked",
                       extra={"scope": scope, "problem": problem, "seconds": round(until - self._clock())})

    # ---- in-flight slots -------------------------------------------------------------------
    def _take_slot(self, tenant_id: str, item: dict[str, Any]) -> Permit:
        """A free slot, polling briefly while all are busy. ``item``: INFLIGHT as just read."""
        deadline = self._clock() + self._max_wait
        permit_id = uuid.uuid4().hex
        max_polls = int(self._max_wait / max(self._poll, 0.001)) + 1  # bounded even if the clock stands
        for poll in range(max_polls):
            now = self._clock()
            if poll:
                item = self._table.get_item(Key={"PK": limit_pk(tenant_id), "SK": "INFLIGHT"},
                                            ConsistentRead=True).get("Item") or {}
            leases = {i: float(item.get(f"slot{i}_until", 0)) for i in range(self.concurrent_limit)}
            free = [i for i, until in leases.items() if until <= now]
            random.shuffle(free)  # spread contending instances over the free slots
            for slot in free:
                lease_until = now + self._lease
                if self._try_slot(tenant_id, slot, permit_id, now, lease_until):
                    return Permit(tenant_id, permit_id, slot, lease_until)
            if self._clock() + self._poll > deadline:
                busy = [until - now for until in leases.values() if until > now]
                retry_after = max(0.1, min([1.0, *busy]))
                raise RateLimited(f"{self.concurrent_limit} Xero calls already in flight",
                                  retry_after=retry_after, problem="concurrent")
            self._sleep(self._poll * random.uniform(0.5, 1.5))
        raise RateLimited(f"{self.concurrent_limit} Xero calls already in flight", retry_after=1.0,
                          problem="concurrent")

    def _try_slot(self, tenant_id: str, slot: int, permit_id: str, now: float,
                  lease_until: float) -> bool:
        try:
            self._table.update_item(
                Key={"PK": limit_pk(tenant_id), "SK": "INFLIGHT"},
                UpdateExpression="SET #slot = :permit, #until = :lease, expires_at = :ttl",
                ConditionExpression="attribute_not_exists(#until) OR #until <= :now",
                ExpressionAttributeNames={"#slot": f"slot{slot}", "#until": f"slot{slot}_until"},
                ExpressionAttributeValues={":permit": permit_id, ":lease": _number(lease_until),
                                           ":now": _number(now),
                                           # the newest lease ends last, so the item outlives all
                                           ":ttl": int(lease_until) + 300})
            return True
        except ClientError as error:
            if conditional_check_failed(error):
                return False
            raise

    # ---- the rolling minute: tickets ----------------------------------------------------------
    def _live_tickets(self, item: dict[str, Any], now: float) -> list[float]:
        """When each ticket still counted at ``now`` frees (its call's start + 60 s + margin)."""
        frees = (float(item.get(f"t{i}", 0)) + self._ticket_life for i in range(self.minute_limit))
        return [free for free in frees if free > now]

    def _take_ticket(self, tenant_id: str, item: dict[str, Any]) -> None:
        """A ticket whose call started over a rolling minute ago, or ``RateLimited`` saying when the
        oldest frees. ``item``: MINUTE as read at the start of ``acquire``; a contended ticket makes
        us read it again (bounded)."""
        for attempt in range(3):
            now = self._clock()
            if attempt:
                item = self._table.get_item(Key={"PK": limit_pk(tenant_id), "SK": TICKETS_SK},
                                            ConsistentRead=True).get("Item") or {}
            stamps = {i: float(item.get(f"t{i}", 0)) for i in range(self.minute_limit)}
            free = [i for i, stamp in stamps.items() if stamp + self._ticket_life <= now]
            if not free:
                retry_after = min(stamps.values()) + self._ticket_life - now
                raise RateLimited(f"Xero's minute limit ({self.minute_limit} in any 60 s) is used up",
                                  retry_after=max(0.1, retry_after), problem="minute")
            random.shuffle(free)  # spread contending instances over the free tickets
            for ticket in free[:8]:
                if self._try_ticket(tenant_id, ticket, now):
                    self._known_live_tickets[tenant_id] = self.minute_limit - len(free) + 1
                    return
        raise RateLimited("Xero's minute tickets are contended", retry_after=0.2, problem="minute")

    def _try_ticket(self, tenant_id: str, ticket: int, now: float) -> bool:
        try:
            self._table.update_item(
                Key={"PK": limit_pk(tenant_id), "SK": TICKETS_SK},
                UpdateExpression="SET #t = :now, expires_at = :ttl",
                ConditionExpression="attribute_not_exists(#t) OR #t <= :cutoff",
                ExpressionAttributeNames={"#t": f"t{ticket}"},
                ExpressionAttributeValues={":now": _number(now), ":cutoff": _number(now - self._ticket_life),
                                           ":ttl": int(now + self._ticket_life) + 300})
            return True
        except ClientError as error:
            if conditional_check_failed(error):
                return False
            raise

    def _raise_live_tickets_to(self, tenant_id: str, floor: int) -> None:
        """Xero says ``floor`` calls were made in its last minute: make at least that many tickets
        live (stamped now, which holds them as long as possible: the safe side)."""
        if floor <= self._known_live_tickets.get(tenant_id, 0):
            return  # our own tickets already say as much: no read or write needed
        item = self._table.get_item(Key={"PK": limit_pk(tenant_id), "SK": TICKETS_SK},
                                    ConsistentRead=True).get("Item") or {}
        now = self._clock()
        live = len(self._live_tickets(item, now))
        free = [i for i in range(self.minute_limit)
                if float(item.get(f"t{i}", 0)) + self._ticket_life <= now]
        for ticket in free[:max(0, floor - live)]:
            if self._try_ticket(tenant_id, ticket, now):
                live += 1
        self._known_live_tickets[tenant_id] = live

    # ---- windows ---------------------------------------------------------------------------
    @staticmethod
    def _minute_window(now: float) -> tuple[str, float]:
        minute = int(now // 60)
        return f"MIN#{minute}", (minute + 1) * 60.0

    @staticmethod
    def _day_window(now: float) -> tuple[str, float]:
        day = datetime.fromtimestamp(now, UTC).date()
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        return f"DAY#{day.isoformat()}", end.timestamp()

    def _count_call(self, scope: str, sk: str, limit: int, window_end: float, ttl: float,
                    problem: str, now: float) -> None:
        try:
            answer = self._table.update_item(
                Key={"PK": limit_pk(scope), "SK": sk},
                UpdateExpression="ADD calls :one SET expires_at = :ttl",
                ConditionExpression="attribute_not_exists(calls) OR calls < :limit",
                ExpressionAttributeValues={":one": 1, ":limit": limit, ":ttl": int(ttl)},
                ReturnValues="UPDATED_NEW")
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            raise RateLimited(f"Xero's {problem} limit ({limit}) is used up for this window",
                              retry_after=max(0.1, window_end - now), problem=problem) from None
        self._known_counts[(scope, sk)] = int(answer.get("Attributes", {}).get("calls", 0))

    def _uncount_call(self, scope: str, sk: str) -> None:
        try:
            self._table.update_item(Key={"PK": limit_pk(scope), "SK": sk},
                                    UpdateExpression="ADD calls :minus_one",
                                    ExpressionAttributeValues={":minus_one": -1})
        except (ClientError, BotoCoreError) as error:  # one call too many counted: harmless
            logger.warning("could not give back a counted Xero call", extra={"error": str(error)})

    def _raise_count_to(self, scope: str, sk: str, floor: int, ttl: float) -> None:
        """Xero says only ``limit - floor`` calls remain: count at least ``floor`` here."""
        if floor <= self._known_counts.get((scope, sk), 0):
            return  # our own count already says as much: no write needed
        try:
            self._table.update_item(
                Key={"PK": limit_pk(scope), "SK": sk},
                UpdateExpression="SET calls = :floor, expires_at = if_not_exists(expires_at, :ttl)",
                ConditionExpression="attribute_not_exists(calls) OR calls < :floor",
                ExpressionAttributeValues={":floor": floor, ":ttl": int(ttl)})
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
        self._known_counts[(scope, sk)] = floor
