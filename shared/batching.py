"""Full Xero batches without a batching window: adapt to the organisation's headroom.

The document queues' event source mappings hand a worker what one receive returns (BatchSize 10,
MaximumBatchingWindowInSeconds 0: Lambda invokes at once with what is there; a BatchSize above 10
would force a window of at least 1 s, which a lone save would wait out). Before working a batch
short of Xero's 50, the worker gathers from its own queue (``gather``), by one rule:

- Calls plentiful and nothing more arriving: neither the first look (no long poll) nor one more
  after SETTLE_SECONDS finds anything, and the batch goes. A lone save waits for nothing but that
  and Xero; the second look is what keeps the first save of a burst from going alone (the saves
  the CRM sends with it are still on their way through the API).
- A burst arriving: each look finds more; the worker keeps looking until the batch holds 50, or
  nothing new has come for QUIET_SECONDS (the burst has ended), or MAX_GATHER_SECONDS have passed
  (well inside the function's timeout). So a burst goes to Xero in full batches even when the saves
  trickle in slower than a batch takes to fill.
- Calls scarce (fewer than PLENTIFUL_CALLS left in the organisation's rolling minute, or the next
  call must wait): the call would wait for the rate gate anyway, so the worker uses that wait to
  gather, at least QUIET_SECONDS, up to when the next call may go (bounded as above).

The gathered messages are the worker's own: it deletes the ones that succeeded and leaves the
others to come back after their visibility timeout or the defer the work gave them, exactly as
Lambda does for its batch, and reports to Lambda only the failures among Lambda's records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.observability import logger
from shared.usecases.work import finish
from shared.usecases.writeback import WRITE_BACK_PENDING  # the note of a job waiting for its write-back

XERO_BATCH = 50
# A burst has ended when nothing new came for this long. Saves from a CRM under load arrive with
# gaps of a few hundred ms; a lone save never waits for this (its first look finds nothing).
QUIET_SECONDS = 1.0
# Gathering never holds a batch longer than this (the workers' Timeout is 60 s).
MAX_GATHER_SECONDS = 15.0
GATHER_PAUSE_SECONDS = 0.1
# How long a save that found nothing waiting looks again before it goes alone.
SETTLE_SECONDS = 0.3
# Calls are plentiful while at least this many of the rolling minute's 60 are left: a third, so
# that lone saves going at once can never by themselves crowd out a burst's full batches.
PLENTIFUL_CALLS = 20


@dataclass(frozen=True)
class Headroom:
    """What is left of the organisation's Xero calls now: ``calls_left`` in the rolling minute
    (and the day), and ``next_call_in`` seconds until a call may go (0: now)."""

    calls_left: int
    next_call_in: float = 0.0

    @property
    def plentiful(self) -> bool:
        return self.calls_left >= PLENTIFUL_CALLS and self.next_call_in <= 0

    @classmethod
    def from_gate(cls, state: dict[str, Any], *, now: float | None = None) -> Headroom:
        """From ``SharedRateGate.headroom``'s answer (``now``: epoch seconds, as its block's)."""
        minute, day = state["minute"], state["day"]
        left = min(minute["limit"] - minute["used"], day["limit"] - day["used"])
        waits = [0.0]
        if minute["used"] >= minute["limit"]:
            waits.append(float(minute["resets_in_seconds"]))
        if state.get("blocked_until"):
            waits.append(float(state["blocked_until"]) - (time.time() if now is None else now))
        return cls(calls_left=max(0, int(left)), next_call_in=max(waits))


def lambda_record(message: dict[str, Any], *, like: dict[str, Any]) -> dict[str, Any]:
    """A ReceiveMessage message in the shape Lambda gives SQS records (source fields as ``like``'s)."""
    return {
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType")}
                              for name, value in (message.get("MessageAttributes") or {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""), "eventSource": "aws:sqs",
        "eventSourceARN": like.get("eventSourceARN", ""), "awsRegion": like.get("awsRegion", ""),
    }


def topped_up(event: dict[str, Any], queue: Any, *, limit: int = XERO_BATCH,
              headroom: Callable[[], Headroom | None] | None = None,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, Any], list[dict]]:
    """``event`` with messages gathered up to ``limit`` records (``gather``), and the added records.
    ``headroom`` tells the organisation's calls left; unknown (None, or it fails) counts as plentiful:
    the rate gate still holds every call to Xero's limits."""
    records = list(event.get("Records") or [])
    if not records or len(records) >= limit:
        return event, []
    try:
        waiting = gather(queue, limit - len(records), headroom=_read_headroom(headroom),
                         clock=clock, sleep=sleep)
    except Exception as error:  # noqa: BLE001 - a top-up is an optimisation: the batch goes as it is
        logger.warning("could not top the batch up from the queue", extra={"error": str(error)})
        return event, []
    # A copy of a job already in the batch (a redelivery) is handed back at once, not worked twice.
    jobs = {_job_id(record.get("body", "")) for record in records} - {None}
    added, copies = [], []
    for message in waiting:
        (copies if _job_id(message.get("Body", "")) in jobs else added).append(message)
        jobs.add(_job_id(message.get("Body", "")))
    for copy in copies:
        queue.release(copy["ReceiptHandle"])
    added_records = [lambda_record(m, like=records[0]) for m in added]
    return {**event, "Records": records + added_records}, added_records


def _read_headroom(headroom: Callable[[], Headroom | None] | None) -> Headroom | None:
    if headroom is None:
        return None
    try:
        return headroom()
    except Exception as error:  # noqa: BLE001 - unknown headroom: gather by arrivals alone
        logger.warning("could not read the organisation's Xero headroom", extra={"error": str(error)})
        return None


def gather(queue: Any, wanted: int, *, headroom: Headroom | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Up to ``wanted`` messages from ``queue`` (``receive_waiting``: no long poll), by the rule in
    this module's docstring. Bounded: at most MAX_GATHER_SECONDS, and every look either finds
    messages or counts towards a stop."""
    found: list[dict[str, Any]] = []
    started = clock()
    hold_until = started + SETTLE_SECONDS  # plentiful (or unknown): a moment for a burst to show
    if headroom is not None and not headroom.plentiful:
        hold_until = started + max(QUIET_SECONDS, headroom.next_call_in)
    last_arrival: float | None = None
    while len(found) < wanted:
        more = queue.receive_waiting(wanted - len(found))
        now = clock()
        if more:
            found += more
            last_arrival = now
        if len(found) >= wanted or now - started >= MAX_GATHER_SECONDS:
            break
        if now >= hold_until and (last_arrival is None or now - last_arrival >= QUIET_SECONDS):
            break  # nothing arrived (a lone save), or the burst has gone quiet
        if last_arrival is None and hold_until - now <= SETTLE_SECONDS:
            sleep(max(0.0, hold_until - now))  # a lone save: one more look, at the end of the settle
        else:
            sleep(GATHER_PAUSE_SECONDS)
    return found


def _job_id(body: str) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return str(value["job_id"]) if isinstance(value, dict) and value.get("job_id") else None


def run_topped_up(event: dict[str, Any], queue: Any,
                  run: Callable[[dict[str, Any]], dict[str, Any]], *, jobs: Any = None,
                  headroom: Callable[[], Headroom | None] | None = None) -> dict[str, Any]:
    """Run ``run`` (the worker's batch: event -> partial batch response) over the topped-up event;
    settle the added messages here and answer Lambda for its own records only. With ``jobs``, a
    job whose message failed its last delivery before the DLQ is marked so (``mark_dead_lettered``).
    ``headroom``: the organisation's Xero calls left (``gather``)."""
    full, added = topped_up(event, queue, headroom=headroom)
    answer = run(full)
    if jobs is not None:
        mark_dead_lettered(full["Records"], answer, queue=queue, jobs=jobs)
    if not added:
        return answer
    failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
    done = [record["receiptHandle"] for record in added if record["messageId"] not in failed]
    if done:
        queue.delete(done)
    own = {record["messageId"] for record in event["Records"]}
    logger.info("batch topped up from the queue", extra={"lambda_records": len(own), "added": len(added)})
    return {**answer, "batchItemFailures": [f for f in answer.get("batchItemFailures", [])
                                            if f["itemIdentifier"] in own]}




def mark_dead_lettered(records: list[dict[str, Any]], answer: dict[str, Any], *, queue: Any, jobs: Any) -> None:
    """A message that fails its last delivery goes to the dead-letter queue next (SQS moves it on
    the receive after ``maxReceiveCount``): its job stops saying ``queued`` and says ``failed``,
    "dead-lettered after N attempts", with the last error, so status lists it among the failures
    and ``sugar-xero replay`` can bring it back."""
    failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
    if not failed:
        return
    try:
        limit = queue.max_receive_count()
    except Exception as error:  # noqa: BLE001 - the job keeps its state; status still shows the DLQ depth
        logger.warning("could not read the queue's redrive policy", extra={"error": str(error)})
        return
    if not limit:
        return
    for record in records:
        deliveries = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 0)
        job_id = _job_id(record.get("body", ""))
        if record["messageId"] not in failed or deliveries < limit or job_id is None:
            continue
        job = jobs.get_job(job_id)
        attempts = f"{deliveries} attempt{'' if deliveries == 1 else 's'}"
        pending = [w for w in getattr(job, "warnings", None) or [] if WRITE_BACK_PENDING in str(w)]
        if job is not None and job.status in ("succeeded", "queued", "in_progress") and pending:
            # The Xero write is done; its follow-up step, the CRM write-back, is not: the job fails
            # visibly (status lists it, `sugar-xero replay` brings it back and the worker writes
            # back from the stored outcome) instead of a forgotten note on a succeeded job.
            jobs.update_job(job_id, status="failed",
                            error=f"dead-lettered after {attempts}: the Xero write is done, the CRM "
                                  f"write-back is not ({pending[-1]})")
            continue
        if job is None or job.status in ("succeeded", "failed", "ignored"):
            continue
        last = job.error or "no error given"
        finish(jobs, job_id, "failed", error=f"dead-lettered after {attempts}: {last}")
