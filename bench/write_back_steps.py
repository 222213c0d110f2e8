"""Follow-up steps under crashes and Sugar faults (issue 11, Deliver 4): the CRM write-back.

1,000 CRM Accounts are pushed to Xero through the contact worker's use case (Xero played by the
in-memory double that upserts by ContactNumber as Xero does; every request body checked against
Xero's OpenAPI spec), each with its CRM write-back into a Sugar double that misbehaves: 30% of
its bulk calls fail, half of them before Sugar wrote anything (503) and half after Sugar wrote
the records and the answer was lost (a timeout); 2% of the records were deleted in the CRM
(404 for good). Every worker invocation dies with probability 0.2 at each crash point
(``SUGAR_XERO_LOCAL_CRASH_RATE=0.2``: after Xero answered, after the state is written, after the
job is marked) and its whole batch is delivered again, as SQS would; a batch Sugar deferred comes
back too.

Checked, from every status each job ever took (as a poller of ``GET /jobs/{id}`` could have seen
it): no job ever ``succeeded`` and then turned into anything else; every job ended; every job
that succeeded has its write-back in Sugar with its Xero id and status; every deleted record's
job ``failed`` saying why. Printed: Sugar bulk calls ÷ the least possible (one per 20 records
that can be written) and Xero calls ÷ the least possible (one per 50 records): the write-back's
retries must never send anything to Xero again.

In-process rather than through the local stack, for the same reason as ``bench.exactly_once``:
SQS hands a crashed batch out again only after its visibility timeout (360 s in the template).
The job, mapping and journal stores are the tests' in-memory ones, which keep the sync table's
conditions (``tests/support/fakes.py``); run alone: ``python -m bench --only write_back_steps
--out bench/results-write_back_steps.md``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from bench.report import Row
from shared.mapping.settings import MappingConfig
from shared.models.documents import ContactDocument
from shared.models.jobs import CrmRef
from shared.sugar.errors import SugarError
from shared.usecases import contacts
from shared.usecases.accept import accept
from shared.usecases.crash import JOB_MARKED, RandomCrash, WorkerCrashed
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeMappings, FakeQueue, FakeSugar, FakeXero, HistoryJobs

RECORDS = 1000
BATCH = 50  # the template's BatchSize
CRASH_RATE = 0.2
SUGAR_FAULT_RATE = 0.3
DELETED_RATE = 0.02
MAX_ROUNDS = 400  # every invocation is bounded; so is the number of them
SEED = 11


class _FaultySugar(FakeSugar):
    """Sugar's bulk update, failing ``rate`` of its calls: before writing (503), or after writing
    with the answer lost (a timeout); ids in ``missing`` answer 404."""

    def __init__(self, rate: float, rng: random.Random) -> None:
        super().__init__()
        self.rate, self.rng = rate, rng
        self.faults = {"503 before writing": 0, "answer lost after writing": 0}

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]], chunk_size: int = 20):
        if self.rng.random() < self.rate:
            if self.rng.random() < 0.5:
                self.faults["503 before writing"] += 1
                self.calls.append((module, dict(updates)))
                raise SugarError("POST /bulk: Sugar answered 503", status=503, retryable=True)
            self.faults["answer lost after writing"] += 1
            super().update_records_bulk(module, updates, chunk_size)
            raise SugarError("POST /bulk: read timed out", status=None, retryable=True)
        return super().update_records_bulk(module, updates, chunk_size)


def _run() -> dict[str, Any]:
    rng = random.Random(SEED)  # noqa: S311 - fault injection, not security
    jobs, mappings, xero, queue = HistoryJobs(), FakeMappings(), FakeXero(), FakeQueue()
    sugar = _FaultySugar(SUGAR_FAULT_RATE, rng)
    crash = RandomCrash(CRASH_RATE, seed=SEED)
    config = MappingConfig()
    documents = [ContactDocument(crm_module="Accounts", crm_id=f"acc-{n:04d}", name=f"Customer {n:04d} Pte Ltd",
                                 crm_modified="2026-12-01T09:00:00+08:00") for n in range(RECORDS)]
    deleted = {d.crm_id for d in documents if rng.random() < DELETED_RATE}
    sugar.missing |= deleted
    job_of: dict[str, str] = {}
    for document in documents:
        accepted = accept(kind=contacts.KIND, crm=CrmRef(module="Accounts", id=document.crm_id),
                          document=document.model_dump(mode="json"), jobs=jobs, queue=queue,
                          status_base_url="https://x/prod")
        job_of[document.crm_id] = accepted.job_id
    pending = [WorkItem(message_id=f"m-{m['job_id']}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
               for m in queue.sent]
    invocations = killed = 0
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        batch, pending = pending[:BATCH], pending[BATCH:]
        invocations += 1
        try:
            result = contacts.sync_contacts(batch, xero=xero, jobs=jobs, mappings=mappings, crm=sugar,
                                            config=config, crash=crash, batch_size=BATCH)
            crash.reached(JOB_MARKED)
        except WorkerCrashed:
            killed += 1
            pending += batch  # SQS delivers the whole batch again
            continue
        pending += [item for item in batch if item.message_id in result.retry]

    succeeded_then_other = [j for j, seen in jobs.history.items()
                            if "succeeded" in seen and seen[-1] != "succeeded"]
    finals = {j: jobs.jobs[j].status for j in job_of.values()}
    not_ended = [j for j, status in finals.items() if status not in ("succeeded", "failed", "ignored")]
    lost = []
    for crm_id, job_id in job_of.items():
        if finals[job_id] != "succeeded":
            continue
        written = sugar.records.get(("Accounts", crm_id)) or {}
        mapping = mappings.get_mappings(xero.tenant_id, "Accounts", [crm_id]).get(crm_id)
        if mapping is None or written.get("xero_id_c") != mapping.xero_id or not written.get("xero_sync_status_c"):
            lost.append(crm_id)
    deleted_wrong = [c for c in deleted if finals[job_of[c]] != "failed"
                     or "succeeded" in jobs.history[job_of[c]]
                     or "refused for good" not in (jobs.jobs[job_of[c]].error or "")]
    writable = RECORDS - len(deleted)
    return {
        "succeeded_then_other": len(succeeded_then_other), "not_ended": len(not_ended), "lost": len(lost),
        "deleted": len(deleted), "deleted_wrong": len(deleted_wrong),
        "finals": {s: list(finals.values()).count(s) for s in sorted(set(finals.values()))},
        "sugar_calls": len(sugar.calls), "sugar_least": math.ceil(writable / 20) + math.ceil(len(deleted) / 20),
        "sugar_faults": dict(sugar.faults), "xero_calls": len(xero.calls) + len(xero.gets),
        "xero_least": math.ceil(RECORDS / BATCH), "invocations": invocations, "killed": killed,
        "kills": dict(crash.crashes), "left": len(pending),
    }


def run() -> list[Row]:
    outcome = _run()
    ratio = outcome["sugar_calls"] / outcome["sugar_least"]
    holds = (outcome["succeeded_then_other"] == 0 and outcome["not_ended"] == 0 and outcome["lost"] == 0
             and outcome["deleted_wrong"] == 0 and outcome["left"] == 0)
    measured = (f"{outcome['succeeded_then_other']} jobs seen succeeded then changed; {outcome['lost']} write-backs "
                f"lost; {outcome['not_ended']} jobs not ended ({outcome['finals']}); "
                f"{outcome['deleted'] - outcome['deleted_wrong']}/{outcome['deleted']} deleted records' jobs failed "
                f"without a succeeded before; Sugar bulk calls {outcome['sugar_calls']} ÷ {outcome['sugar_least']} "
                f"(faults {outcome['sugar_faults']}); Xero calls {outcome['xero_calls']} ÷ {outcome['xero_least']}; "
                f"{outcome['killed']} of {outcome['invocations']} invocations killed {outcome['kills']}")
    return [Row("11", f"follow-up steps: {RECORDS} contacts with their CRM write-back, {SUGAR_FAULT_RATE:.0%} Sugar "
                      f"faults (503; written and the answer lost), {DELETED_RATE:.0%} records deleted in the CRM, "
                      f"worker killed at {CRASH_RATE:g} at each crash point",
                measured, ratio, "0 seen succeeded then changed, 0 lost, every job ended; Sugar calls ÷ least "
                                 "printed", holds)]


if __name__ == "__main__":
    from bench.report import render

    print(render(run()))
