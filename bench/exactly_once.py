"""Exactly once under crashes and faults (issue 11).

1,000 CRM records (contacts, sales invoices and bills, a third each) are pushed through the
workers' use cases with the state in DynamoDB (moto, in-process: the sync table's real
conditional writes) and Xero played by the emulator over HTTP. One record in ten is also saved
a second time, the newer save delivered *before* the older one, in another UTC offset.

The clean run has no second saves (they take SQS batch slots of their own, which is not the
journal's cost). Under faults, every worker invocation dies with probability 0.2 at each crash point
(``SUGAR_XERO_LOCAL_CRASH_RATE=0.2``: after a Xero write answered, after the state is written,
after the job is marked), its whole batch redelivered as SQS would; and 30% of Xero's answers
are faults of every kind: 429, 500, 502, 503, 504, a connection dropped before Xero acts, and
Xero doing the work and the answer being lost (the connection dropped, or 500/504 answered).

Checked: no Xero record twice (contacts by ContactNumber, invoices by type and number), none
lost, the newest save everywhere, every job ended; Xero calls (every attempt, retries and
lookups included) ÷ the least possible: one call per 50 records of each collection, plus the
documents' customers and suppliers. Targets: ≤ 1.05 clean, ≤ 1.6 under crashes and faults.

In-process rather than through the local stack, because SQS hands a crashed batch out again
only after its visibility timeout (360 s in the template): here a crashed batch goes to the
back of the queue at once, and the clock the journal and the emulator read is moved on by those
360 s (``_SimulatedTime``), so that what happens after a crash is what would happen in AWS: Xero
has forgotten the batch's Idempotency-Keys and the journal does not trust an identical resend.
The emulator's minute limit is lifted (this row counts calls, it does not time them); each
Retry-After is honoured as a zero wait for the same reason.

CRM ids are shaped as Sugar's are (36-character GUIDs): a contact's marker is its CRM id, and its
length sets how many contacts one lookup can carry. The seed is fixed (the issue's number),
never chosen by its outcome; ``EXACTLY_ONCE_SEEDS`` runs more, and the row then reports each
seed's ratio and floor and their means.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from bench.report import Row
from shared.mapping.settings import MappingConfig
from shared.models.documents import ContactDocument
from shared.models.invoices import ContactRef, LineDocument, PurchaseDocument, SalesInvoiceDocument
from shared.models.jobs import CrmRef
from shared.usecases import contacts, invoices
from shared.usecases.accept import accept
from shared.usecases.crash import JOB_MARKED, NO_CRASH, RandomCrash, WorkerCrashed
from shared.usecases.work import WorkItem
from shared.xero.client import XeroClient
from sugar_xero.local.xero_emulator import EmulatorConfig, FaultConfig, serve

RECORDS = 1000
RESAVED = 0.1  # records saved twice, the newer save delivered first
BATCH = 50  # the template's BatchSize
CRASH_RATE = 0.2
FAULT_RATE = 0.3
# Every kind the emulator has but "slow" (which only costs time): before Xero acts (429, 5xx,
# a dropped connection) and after it did the work (500/504 answered, or the connection dropped).
FAULT_KINDS = ("429", "500", "502", "503", "504", "dropped", "dropped_after", "500_after", "504_after")
CUSTOMERS, SUPPLIERS = 20, 10
MAX_ROUNDS = 400  # every invocation is bounded; so is the number of them
TARGET_CLEAN, TARGET_FAULTS = 1.05, 1.6
SGD_GST = {"OUTPUT": Decimal("9"), "INPUT": Decimal("9"), "NONE": Decimal("0")}
TABLE = "bench-sync"
# Fixed beforehand, never chosen by their outcome: the number. One faulty run takes about
# 2.5 minutes on the shared 2-core machine, so `make bench` runs one; EXACTLY_ONCE_SEEDS=11,12,13
# runs more and the row reports each and their means.
SEEDS = tuple(int(s) for s in os.environ.get("EXACTLY_ONCE_SEEDS", "11").split(","))
VISIBILITY_TIMEOUT_SECONDS = 360  # infra/template.yaml: when SQS hands a crashed batch out again


def _sugar_id(name: str) -> str:
    """A Sugar-shaped record id (a 36-character GUID), the same for the same name every run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{name}"))


class _SimulatedTime:
    """The wall clock as the journal and the emulator read it, moved on by SQS's visibility
    timeout whenever a worker dies (its batch comes back only then)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def crashed(self) -> None:
        self.offset += VISIBILITY_TIMEOUT_SECONDS

    def utc_now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def now_iso(self) -> str:
        return self.utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class _Queue:
    """SQS as the workers see it: messages are handed out in batches and deleted only when an
    invocation finished them; the rest comes back."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.messages.append(body)


def _contact(n: int, version: int) -> ContactDocument:
    # the newer save at 02:00 UTC; the older one at 09:00+08:00 (01:00 UTC), which sorts after it as text
    modified = "2026-12-03T02:00:00Z" if version == 2 else "2026-12-03T09:00:00+08:00"
    return ContactDocument(crm_module="Accounts", crm_id=_sugar_id(f"c{n:04d}"),
                           name=f"Bench Customer {n:04d} v{version}", email=f"c{n}@example.com", crm_modified=modified)


def _party(n: int, supplier: bool) -> ContactRef:
    kind = "s" if supplier else "p"
    return ContactRef(contact=ContactDocument(crm_module="Accounts", crm_id=_sugar_id(f"{kind}{n:03d}"),
                                              name=f"Bench {'Supplier' if supplier else 'Party'} {n:03d}",
                                              is_supplier=supplier or None, crm_modified="2026-12-01T00:00:00Z"))


def _sales(n: int, version: int) -> SalesInvoiceDocument:
    modified = "2026-12-03T02:00:00Z" if version == 2 else "2026-12-03T09:00:00+08:00"
    return SalesInvoiceDocument(
        crm_module="Invoices", crm_id=_sugar_id(f"i{n:04d}"), contact=_party(n % CUSTOMERS, False),
        number=f"BI-{n:04d}",
        lines=[LineDocument(crm_id="l1", description=f"Service v{version}", unit_amount=Decimal(f"{100 * version}.00"),
                            tax_type="OUTPUT")], crm_modified=modified, write_back=False)


def _bill(n: int, version: int) -> PurchaseDocument:
    modified = "2026-12-03T02:00:00Z" if version == 2 else "2026-12-03T09:00:00+08:00"
    return PurchaseDocument(
        crm_module="Purchases", crm_id=_sugar_id(f"b{n:04d}"), contact=_party(n % SUPPLIERS, True),
        number=f"BB-{n:04d}",
        lines=[LineDocument(description=f"Supplies v{version}", unit_amount=Decimal(f"{1000 * version}.00"),
                            account_code="310", tax_type="INPUT")], crm_modified=modified, write_back=False)


def _sync_table(session: Any) -> Any:
    session.client("dynamodb").create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"},
                              {"AttributeName": "xero_id", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-xero-id",
                                 "KeySchema": [{"AttributeName": "xero_id", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    from shared.state.dynamo import SyncStateTable

    return SyncStateTable(TABLE, resource=session.resource("dynamodb"))


def _run(*, faults: bool, resaved: float, seed: int = 11) -> dict[str, Any]:
    """One run: the saves accepted, the queues worked to the end (bounded), Xero's request log
    broken down, then Xero's records checked against the newest save of every record."""
    from unittest import mock

    import boto3
    from moto import mock_aws

    from shared.state import dynamo
    from shared.usecases import journal

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # 1,000 jobs' logs and metrics cost minutes
    logging.getLogger("sugar-xero").setLevel(logging.WARNING)
    simulated = _SimulatedTime()
    config = EmulatorConfig(minute_limit=1_000_000, day_limit=1_000_000, concurrent_limit=50,
                            faults=FaultConfig(rate=FAULT_RATE if faults else 0.0, seed=seed, kinds=FAULT_KINDS,
                                               retry_after=1), clock=simulated.monotonic)
    crash = RandomCrash(CRASH_RATE, seed=seed) if faults else NO_CRASH
    with mock_aws(), serve(config=config) as server, mock.patch.object(dynamo, "now_iso", simulated.now_iso), \
            mock.patch.object(journal, "_utc_now", simulated.utc_now):
        state = _sync_table(boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                                  region_name="eu-west-1"))
        xero = XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
        queues = {"contact": _Queue(), "invoice": _Queue()}
        saves = _saves(random.Random(seed), resaved)  # noqa: S311 - a reproducible workload
        for kind, doc, queue in saves:
            accept(kind=kind, crm=CrmRef(module=doc.crm_module, id=doc.crm_id), document=doc.model_dump(mode="json"),
                   jobs=state, queue=queues[queue], status_base_url="https://bench")
        newest = {}
        for _, doc, _ in saves:
            newest.setdefault(doc.crm_id, doc)  # the first save of a record is its newest
        invocations, died = _work_queues(queues, xero, state, crash, simulated)
        calls = xero.calls  # the checks below read Xero too: not counted
        log = requests.get(f"{server.url}/_emulator/requests", params={"since": 0}, timeout=60).json()["requests"]
        breakdown = _breakdown([r for r in log if r["path"].startswith("/api.xro/")])
        left = sum(len(q.messages) for q in queues.values())
        statuses = Counter(job.status for job in (state.get_job(j) for j in _all_job_ids(state)) if job)
        contacts_in_xero = list(xero.iter_pages("Contacts"))
        invoices_in_xero = [i for i in xero.iter_pages("Invoices") if i.get("Status") not in ("DELETED", "VOIDED")]
    return {"seed": seed, "calls": calls, "least": _least(newest), "unfinished": left, "statuses": statuses,
            "invocations": invocations, "died": died, "crashes": dict(getattr(crash, "crashes", {})),
            "saves": len(saves), "breakdown": breakdown, **_checked(newest, contacts_in_xero, invoices_in_xero)}


def _saves(randomly: random.Random, resaved: float) -> list[tuple[str, Any, str]]:
    """(job kind, document, queue) for every save, a third each contacts, sales invoices and
    bills; a ``resaved`` share saved twice, the newer save delivered first."""
    saves: list[tuple[str, Any, str]] = []
    for n in range(RECORDS):
        build, kind, queue = [(_contact, contacts.KIND, "contact"), (_sales, invoices.KIND_DOCUMENT, "invoice"),
                              (_bill, invoices.KIND_DOCUMENT, "invoice")][n % 3]
        if randomly.random() < resaved:  # the newer save arrives first, the older one right after
            saves += [(kind, build(n, 2), queue), (kind, build(n, 1), queue)]
        else:
            saves.append((kind, build(n, 1), queue))
    return saves


def _work_queues(queues: dict[str, _Queue], xero: Any, state: Any, crash: Any, simulated: Any) -> tuple[int, int]:
    """Invoke the workers on batches of 50 until the queues are empty (bounded by MAX_ROUNDS); a
    killed invocation's batch goes back to its queue, as SQS hands it out again. Returns
    (invocations, killed)."""
    invocations = died = 0
    for _ in range(MAX_ROUNDS):
        busy = [(name, q) for name, q in queues.items() if q.messages]
        if not busy:
            break
        for name, queue in busy:
            batch, queue.messages = queue.messages[:BATCH], queue.messages[BATCH:]
            invocations += 1
            work = [WorkItem(message_id=f"{m['job_id']}", job_id=m["job_id"], kind=m["kind"],
                             document=m["document"]) for m in batch]
            try:
                if name == "contact":
                    result = contacts.sync_contacts(work, xero=xero, jobs=state, mappings=state,
                                                    config=MappingConfig(), crash=crash)
                else:
                    result = invoices.push_documents(work, xero=xero, jobs=state, mappings=state,
                                                     config=MappingConfig(), tax_rates=SGD_GST, crash=crash)
                crash.reached(JOB_MARKED)
            except WorkerCrashed:
                died += 1
                simulated.crashed()
                queue.messages += batch  # not deleted: SQS hands the batch out again
                continue
            queue.messages += [m for m in batch if m["job_id"] in result.retry]
    return invocations, died


def _breakdown(api: list[dict[str, Any]]) -> dict[str, Any]:
    """Where Xero's calls went: writes, replays, faults, lookups; each lookup by collection and
    how many markers it carried, each fault by kind (a fault is a call Xero answered: it counts)."""
    breakdown: dict[str, Any] = {
        "writes answered": sum(1 for r in api if r["method"] in ("POST", "PUT") and not r["fault"]
                               and not r["replayed"]),
        "replayed by key": sum(1 for r in api if r["replayed"]),
        "faulted": sum(1 for r in api if r["fault"]),
        "lookups": sum(1 for r in api if r["method"] == "GET" and not r["fault"])}
    lookups: Counter[str] = Counter()
    for r in api:
        if r["method"] == "GET" and not r["fault"]:
            query = r.get("query") or {}
            terms = (len(query["InvoiceNumbers"].split(",")) if query.get("InvoiceNumbers")
                     else str(query.get("where") or "").count(" OR ") + 1)
            lookups[f"{r['path'].rsplit('/', 1)[-1]} x{terms}"] += 1
    breakdown["lookups by collection x markers"] = dict(sorted(lookups.items()))
    breakdown["faults by kind"] = dict(sorted(Counter(str(r["fault"]) for r in api if r["fault"]).items()))
    return breakdown


def _checked(newest: dict[str, Any], contacts_in_xero: list[dict[str, Any]],
             invoices_in_xero: list[dict[str, Any]]) -> dict[str, int]:
    """Duplicates (contacts by ContactNumber, invoices by type and number), records lost, and
    records whose Xero version is not the newest save."""
    by_number = Counter(c.get("ContactNumber") for c in contacts_in_xero)
    by_invoice = Counter((i["Type"], i.get("InvoiceNumber")) for i in invoices_in_xero)
    duplicates = sum(n - 1 for n in by_number.values() if n > 1) + sum(n - 1 for n in by_invoice.values() if n > 1)
    contact_names = {c.get("ContactNumber"): c.get("Name") for c in contacts_in_xero}
    invoice_totals = {(i["Type"], i.get("InvoiceNumber")): Decimal(str(i.get("SubTotal"))) for i in invoices_in_xero}
    lost = stale = 0
    for crm_id, doc in newest.items():
        if isinstance(doc, ContactDocument):
            found = contact_names.get(crm_id)
            lost += found is None
            stale += found is not None and found != doc.name
        else:
            key = ("ACCREC" if isinstance(doc, SalesInvoiceDocument) else "ACCPAY", doc.number)
            found_total = invoice_totals.get(key)
            lost += found_total is None
            stale += found_total is not None and found_total != doc.lines[0].unit_amount
    return {"duplicates": duplicates, "lost": lost, "stale": stale}


def _least(newest: dict[str, Any]) -> int:
    """One call per 50 records of each collection, plus the documents' customers and suppliers."""
    documents = sum(1 for d in newest.values() if not isinstance(d, ContactDocument))
    parties = len({d.contact.contact.crm_id for d in newest.values()
                   if not isinstance(d, ContactDocument) and d.contact.contact})
    return (math.ceil(sum(isinstance(d, ContactDocument) for d in newest.values()) / BATCH)
            + math.ceil(parties / BATCH) + math.ceil(documents / BATCH))


def _all_job_ids(state: Any) -> list[str]:
    return [job_id for kind, job_id, _ in state.scan_status_items() if kind == "job"]


def _floor(outcome: dict[str, Any]) -> int:
    """The least this run's faults and kills allow: every write once, every injected fault (a call
    Xero answered), one replay by key per answer lost in flight (how the worker learns what Xero
    did), and one recovery call (replay or marker lookup) per invocation killed after Xero answered
    (its answer died with it)."""
    b = outcome["breakdown"]
    return b["writes answered"] + b["faulted"] + b["replayed by key"] + outcome["crashes"].get("xero_answered", 0)


def _measured(outcome: dict[str, Any]) -> str:
    ended = outcome["statuses"].get("succeeded", 0) + outcome["statuses"].get("ignored", 0)
    return (f"{outcome['calls']} Xero calls ÷ {outcome['least']}; {outcome['duplicates']} duplicates, "
            f"{outcome['lost']} lost, {outcome['stale']} not the newest; "
            f"{ended}/{sum(outcome['statuses'].values())} jobs ended "
            f"({dict(outcome['statuses'])}); {outcome['died']} of {outcome['invocations']} invocations killed "
            f"{outcome['crashes'] or ''}; calls: {outcome['breakdown']}")


def _correct(outcome: dict[str, Any]) -> bool:
    return (outcome["duplicates"] == 0 and outcome["lost"] == 0 and outcome["stale"] == 0
            and outcome["unfinished"] == 0 and outcome["statuses"].get("failed", 0) == 0)


def _row(name: str, outcomes: list[dict[str, Any]], target: float) -> Row:
    """One row over the fixed seeds: the first seed's run in detail, each seed's calls ÷ least and
    floor ÷ least, and their means (the ratio column is the mean of calls ÷ least)."""
    ratios = [o["calls"] / o["least"] for o in outcomes]
    mean = sum(ratios) / len(ratios)
    holds = mean <= target and all(_correct(o) for o in outcomes)
    measured = _measured(outcomes[0])
    if len(outcomes) > 1 or outcomes[0]["died"] or outcomes[0]["breakdown"]["faulted"]:
        floors = [_floor(o) / o["least"] for o in outcomes]
        b, first = outcomes[0]["breakdown"], outcomes[0]
        kills = first["crashes"].get("xero_answered", 0)
        measured += (f"; floor for these faults and kills: {b['writes answered']} writes + {b['faulted']} faults + "
                     f"{b['replayed by key']} replays + {kills} recoveries = {_floor(first)} "
                     f"({floors[0]:.2f}); above it: {first['calls'] - _floor(first)} calls "
                     f"({b['lookups']} lookups for {kills} workers killed after Xero answered: a killed batch whose "
                     "messages come back in more than one batch, or whose markers do not fit in one query (30 Sugar "
                     "ids), needs more than one)")
        seeds = ", ".join(f"seed {o['seed']}: {r:.2f} (floor {f:.2f}, {o['duplicates']} duplicates, {o['lost']} lost, "
                          f"{o['stale']} stale)" for o, r, f in zip(outcomes, ratios, floors, strict=True))
        measured += (f". Fixed seeds {seeds}; mean {mean:.2f}, mean floor {sum(floors) / len(floors):.2f}"
                     + (" (the floor itself is above the target: the faults and kills alone cost more)"
                        if sum(floors) / len(floors) > target else ""))
    return Row("11", name, measured, mean, f"≤ {target:g}, 0 duplicates, 0 lost, newest", holds)


def run(seeds: tuple[int, ...] = SEEDS) -> list[Row]:
    # Clean: the journal's own cost (no second saves, which take SQS batch slots of their own).
    clean = _run(faults=False, resaved=0.0)
    faulty = [_run(faults=True, resaved=RESAVED, seed=seed) for seed in seeds]
    return [
        _row(f"exactly once, clean: {RECORDS} records (contacts, sales invoices, bills)", [clean], TARGET_CLEAN),
        _row(f"exactly once: {RECORDS} records, {RESAVED:.0%} saved twice out of order (other UTC offset), "
             f"worker killed at {CRASH_RATE:g} at each crash point (its batch back after SQS's "
             f"{VISIBILITY_TIMEOUT_SECONDS} s), {FAULT_RATE:.0%} Xero faults (429, 500, 502, 503, 504, dropped; "
             "and work done with the answer lost: dropped, 500, 504)", faulty, TARGET_FAULTS),
    ]


if __name__ == "__main__":
    from bench.report import render

    print(render(run()))
