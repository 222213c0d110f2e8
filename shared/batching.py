"""Full Xero batches without a long batching window.

The event source mapping hands a worker what it gathered within MaximumBatchingWindowInSeconds
(1 s, the least Lambda allows for a BatchSize above 10; it was 5 s, which a lone save waited out
even when the organisation had every call of its minute to spare). Two things then keep Xero
batches full without making anyone wait:

- Top-up: before working a batch short of Xero's 50, the worker takes from its own queue whatever
  is already waiting (no long poll). While each look finds more, a burst is arriving: it looks
  again for up to GATHER_SECONDS. A lone save finds nothing at the first look and goes at once. Those messages
  are the worker's own: it deletes the ones that succeeded and leaves the others to come back after
  their visibility timeout or the defer the work gave them, exactly as Lambda does for its batch,
  and reports to Lambda only the failures among Lambda's records.
- Scarcity gathers by itself: while calls are plentiful a batch goes at once; when the rolling
  minute is used up, the rate gate refuses and the batch is deferred until a call frees, while new
  saves queue up behind it, so the next batch is fuller. Nothing waits for a window that has nothing
  to wait for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shared.observability import logger
from shared.usecases.work import finish
from shared.usecases.writeback import WRITE_BACK_PENDING  # the note of a job waiting for its write-back

XERO_BATCH = 50
# While a top-up keeps finding messages (a burst is arriving), it looks again for up to this long.
GATHER_SECONDS = 2.0
GATHER_PAUSE_SECONDS = 0.1


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


def topped_up(event: dict[str, Any], queue: Any, *, limit: int = XERO_BATCH) -> tuple[dict[str, Any], list[dict]]:
    """``event`` with waiting messages added up to ``limit`` records, and the added records."""
    records = list(event.get("Records") or [])
    if not records or len(records) >= limit:
        return event, []
    try:
        waiting = _gather(queue, limit - len(records))
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


def _gather(queue: Any, wanted: int) -> list[dict[str, Any]]:
    """What is waiting; while each look finds more (saves are arriving: a burst), look again for
    up to GATHER_SECONDS. A lone save finds nothing at the first look and goes at once."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + GATHER_SECONDS
    while len(found) < wanted:
        more = queue.receive_waiting(wanted - len(found))
        found += more
        if not more or time.monotonic() >= deadline:
            break
        time.sleep(GATHER_PAUSE_SECONDS)
    return found


def _job_id(body: str) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return str(value["job_id"]) if isinstance(value, dict) and value.get("job_id") else None


def run_topped_up(event: dict[str, Any], queue: Any,
                  run: Callable[[dict[str, Any]], dict[str, Any]], *, jobs: Any = None) -> dict[str, Any]:
    """Run ``run`` (the worker's batch: event -> partial batch response) over the topped-up event;
    settle the added messages here and answer Lambda for its own records only. With ``jobs``, a
    job whose message failed its last delivery before the DLQ is marked so (``mark_dead_lettered``)."""
    full, added = topped_up(event, queue)
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
