"""``sugar-xero demo``: sample Sugar callouts through a running local stack, then what landed in
Xero (the emulator) and what the CRM (the Sugar double) holds for those records.

Then one failure, on purpose: through the Xero emulator's fault controls (``/_emulator/faults``)
every attempt of one more contact job is answered 503, so its message uses up its deliveries and
lands in the dead-letter queue. ``sugar-xero status`` shows it and ``sugar-xero replay`` clears it.
The fault is a fixed number of forced answers (``next``), just enough for that job's deliveries,
so it lifts itself even if the demo stops waiting; the demo also lifts it once the job is
dead-lettered. With the template's maxReceiveCount that takes a couple of minutes: start the stack
with ``SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT=1`` (or 2) to see it in seconds.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.models.jobs import TERMINAL_STATUSES
from sugar_xero.local.samples import demo_callouts
from sugar_xero.local.state_file import find_state_file, read_state_file

DEFAULT_WAIT_SECONDS = 30.0
FAULT_PATH = "/api.xro/2.0/Contacts"
FAULT_STATUS = "503"
CONTACT_QUEUE = "ContactSyncQueue"  # the template's logical id of the contact work queue


class DemoError(Exception):
    pass


@dataclass
class DemoTargets:
    api_url: str
    xero_url: str | None
    sugar_url: str | None
    state: dict[str, Any] = field(default_factory=dict)  # the running stack's state file, if found
    state_file: Path | None = None


ROUTES = {"Account": "/crm/contacts", "Contact": "/crm/contacts", "ProductTemplate": "/crm/products",
          "Quote": "/crm/quotes"}


def route_for(hook: dict[str, Any]) -> str:
    return ROUTES.get(str(hook.get("bean")), "/crm/contacts")


def targets(url: str | None, state_file: Path | None) -> DemoTargets:
    path = state_file or find_state_file()
    state = read_state_file(path)
    if url:
        urls = (state or {}).get("urls", {})
        return DemoTargets(url.rstrip("/"), urls.get("xero"), urls.get("sugar"), state or {},
                           path if state else None)
    if not state:
        raise DemoError(
            f"no running local stack found ({path}); start one with `sugar-xero local`, or pass --url"
        )
    urls = state["urls"]
    return DemoTargets(urls["gateway"], urls.get("xero"), urls.get("sugar"), state, path)


def _wait_for_job(
    session: requests.Session, api_url: str, job_id: str, token: str, deadline: float
) -> dict[str, Any]:
    job: dict[str, Any] = {"job_id": job_id, "status": "unknown"}
    while time.monotonic() < deadline:
        answer = session.get(f"{api_url}/jobs/{job_id}", params={"token": token}, timeout=10)
        if answer.status_code == 200:
            job = answer.json()
            if job.get("status") in TERMINAL_STATUSES:
                return job
        time.sleep(0.25)
    return job


def run_demo(
    url: str | None = None,
    *,
    state_file: Path | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    out: TextIO = sys.stdout,
) -> int:
    """The demo's story: what was sent, what landed in Xero and in the CRM, an injected failure
    and how to clear it, and where to look."""
    try:
        where = targets(url, state_file)
    except DemoError as error:
        print(f"sugar-xero demo: {error}", file=sys.stderr)
        return 2
    token = os.environ.get("CRM_TOKEN") or LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
    session = requests.Session()
    callouts = demo_callouts()
    try:
        accepted, failed = _send_callouts(session, where, callouts, token, out)
    except requests.RequestException as error:
        print(f"sugar-xero demo: cannot reach {where.api_url}: {error}", file=sys.stderr)
        return 2
    jobs, unfinished = _report_jobs(session, where, accepted, token, wait_seconds, out)
    failed = failed or unfinished
    crm_ids = {body["data"]["id"] for _, body in callouts}
    xero_ids = {str(v) for job in jobs for k, v in (job.get("xero") or {}).items()
                if k == "id" or k.endswith("_id")}
    _print_xero(session, where.xero_url, crm_ids, xero_ids, out)
    _print_sugar(session, where.sugar_url, crm_ids, out)
    if accepted and not failed:
        from sugar_xero.local.demo_organisations import route_one_quote_to_each

        failed = not route_one_quote_to_each(session, api_url=where.api_url, xero_url=where.xero_url,
                                             sugar_url=where.sugar_url, state=where.state, token=token,
                                             wait_seconds=wait_seconds, out=out)
    if accepted and not failed:
        # Only once the samples landed: the failing job updates a contact that exists.
        inject_failure(session, where, accepted[0][1], token, wait_seconds, out)
    _print_where_to_look(where, out)
    return 1 if failed else 0


ACCOUNT_WAIT_SECONDS = 15.0


def _send_callouts(session: requests.Session, where: DemoTargets, callouts: list[tuple[str, dict[str, Any]]],
                   token: str, out: TextIO) -> tuple[list[tuple[str, dict[str, Any], str]], bool]:
    """Post each sample hook as Sugar would; the accepted ones with their job ids, and whether any
    was refused."""
    print(f"Sending {len(callouts)} Sugar callouts to {where.api_url}/crm/*", file=out)
    accepted: list[tuple[str, dict[str, Any], str]] = []
    refused = False
    for label, body in callouts:
        answer = session.post(f"{where.api_url}{route_for(body)}", params={"token": token}, json=body, timeout=10)
        if answer.status_code != 202:
            print(f"  {label}: HTTP {answer.status_code} {answer.text[:300]}", file=out)
            refused = True
            continue
        job_id = answer.json()["job_id"]
        module = body["data"].get("_module", body.get("bean"))
        print(f"  {label}: {module} {body['data']['id']} → job {job_id}", file=out)
        accepted.append((label, body, job_id))
        if body.get("bean") == "Account":
            # As Sugar's cron sends an account's hook before its people's: the people then find it
            # in Xero at once instead of waiting a retry (which the demo's short redrive would end).
            _wait_for_job(session, where.api_url, job_id, token, time.monotonic() + ACCOUNT_WAIT_SECONDS)
    return accepted, refused


def _report_jobs(session: requests.Session, where: DemoTargets, accepted: list[tuple[str, dict[str, Any], str]],
                 token: str, wait_seconds: float, out: TextIO) -> tuple[list[dict[str, Any]], bool]:
    """Wait for each job and print how it ended, with its Xero ids, error and warnings."""
    deadline = time.monotonic() + wait_seconds
    print("Jobs:", file=out)
    jobs: list[dict[str, Any]] = []
    unfinished = False
    for label, _, job_id in accepted:
        job = _wait_for_job(session, where.api_url, job_id, token, deadline)
        jobs.append(job)
        status = job.get("status")
        line = f"  {job_id}  {status:<10} {label}"
        if job.get("xero"):
            line += "  xero " + ", ".join(f"{k}={v}" for k, v in job["xero"].items())
        if job.get("error"):
            line += f"  error: {job['error']}"
        if status not in TERMINAL_STATUSES:
            line += f"  (still {status} after {wait_seconds:.0f} s)"
        print(line, file=out)
        for warning in job.get("warnings") or []:
            print(f"      warning: {warning}", file=out)
        unfinished = unfinished or status not in {"succeeded", "ignored"}
    return jobs, unfinished


def _print_where_to_look(where: DemoTargets, out: TextIO) -> None:
    state = where.state or {}
    print("\nWhere to look:", file=out)
    if state.get("log_file"):
        print(f"  the functions' JSON logs     {state['log_file']}", file=out)
    print(f"  health, jobs, failures       {_command('status', where)}", file=out)
    if where.xero_url:
        print(f"  what Xero holds              {where.xero_url}/_emulator/state", file=out)
    if where.sugar_url:
        print(f"  what the CRM holds           {where.sugar_url}/_sugar/state", file=out)
    print(f"  the API (OpenAPI)            sugar-xero openapi   (served at {where.api_url})", file=out)


def _sqs(state: dict[str, Any]) -> Any:
    import boto3

    from sugar_xero.local.aws_resources import DEFAULT_REGION, FAKE_CREDENTIALS

    session = boto3.session.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                    aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                                    region_name=state.get("region") or DEFAULT_REGION)
    return session.client("sqs", endpoint_url=state["urls"]["moto"])


def _xero_attempts_per_delivery() -> int:
    """How many times the Xero client tries one call before the job goes back to its queue."""
    from shared.xero.client import XeroClient

    return int(inspect.signature(XeroClient.__init__).parameters["max_attempts"].default)


def _changed_account(hook: dict[str, Any]) -> dict[str, Any]:
    """The sample Account saved again with a new phone number: a change Xero must receive."""
    changed = copy.deepcopy(hook)
    data = changed["data"]
    before = data.get("phone_office") or ""
    data["phone_office"] = "+00 0000 0503"
    data["date_modified"] = datetime.now(UTC).isoformat(timespec="seconds")
    changed["dataChanges"] = {"phone_office": {"field_name": "phone_office", "data_type": "phone",
                                               "before": before, "after": data["phone_office"]}}
    changed.pop("isUpdate", None)
    return changed


def _waiting(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _command(name: str, where: DemoTargets, *extra: str) -> str:
    words = ["sugar-xero", name, *extra]
    if where.state_file is not None and where.state_file.resolve() != find_state_file().resolve():
        words += ["--state-file", str(where.state_file)]
    return " ".join(words)


def inject_failure(session: requests.Session, where: DemoTargets, account_hook: dict[str, Any], token: str,
                   wait_seconds: float, out: TextIO) -> str | None:
    """Make one contact job fail every attempt until it is dead-lettered; say how to see and clear
    it. Returns the job id (None when the stack offers no way to do it)."""
    queues = where.state.get("queues") or {}
    if not where.xero_url or CONTACT_QUEUE not in queues or not (where.state.get("urls") or {}).get("moto"):
        print("\n(No injected failure: the stack's state file does not say where its queues are.)", file=out)
        return None
    sqs = _sqs(where.state)
    queue = queues[CONTACT_QUEUE]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["RedrivePolicy"])
                        ["Attributes"].get("RedrivePolicy") or "{}")
    dlq_url = next((q["url"] for q in queues.values() if q.get("arn") == policy.get("deadLetterTargetArn")), None)
    deliveries = int(policy.get("maxReceiveCount") or 0)
    if not dlq_url or not deliveries:
        print("\n(No injected failure: the contact queue has no dead-letter queue.)", file=out)
        return None

    # Exactly as many forced answers as the job's attempts: the fault then lifts itself.
    answers = deliveries * _xero_attempts_per_delivery()
    faults = {"next": [FAULT_STATUS] * answers, "path_contains": FAULT_PATH}
    answer = session.post(f"{where.xero_url}/_emulator/faults", json=faults, timeout=10)
    if answer.status_code != 200:
        print(f"\n(No injected failure: the Xero emulator refused the fault: HTTP {answer.status_code})", file=out)
        return None
    hook = _changed_account(account_hook)
    crm = f"{hook['data'].get('_module', 'Accounts')}/{hook['data']['id']}"
    print(f"\nInjecting one failure: the Xero emulator answers {FAULT_STATUS} to the next {answers} calls to "
          f"{FAULT_PATH} ({deliveries} deliveries x {answers // deliveries} attempts), while {crm} is saved "
          "again with a new phone number.", file=out)
    sent = session.post(f"{where.api_url}/crm/contacts", params={"token": token}, json=hook, timeout=10)
    if sent.status_code != 202:
        print(f"  the callout was refused: HTTP {sent.status_code} {sent.text[:200]}", file=out)
        _lift(session, where.xero_url)
        return None
    job_id = sent.json()["job_id"]
    print(f"  job {job_id}: waiting for it to use its {deliveries} deliveries and reach the dead-letter queue",
          file=out, flush=True)

    dead_lettered, job = _wait_for_dead_letter(session, where, sqs, dlq_url, job_id, token, wait_seconds)
    status_command, replay_command = _command("status", where), _command("replay", where, "--all")
    if dead_lettered:
        _lift(session, where.xero_url)
        print(f"  it is in the contact dead-letter queue (job status {job.get('status')!r}, last error: "
              f"{job.get('error')!r}); the fault is lifted now.", file=out)
    elif job.get("status") in TERMINAL_STATUSES and not _says_dead_lettered(job):
        _lift(session, where.xero_url)
        print(f"  the job ended {job.get('status')!r} before it was dead-lettered; nothing to replay.", file=out)
        return job_id
    else:
        print(f"  still being retried after {wait_seconds:.0f} s (job status {job.get('status')!r}); it reaches the "
              f"dead-letter queue after its {deliveries} deliveries, and the fault lifts itself with its last "
              "attempt. SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT=1 when starting the stack makes that seconds.", file=out)
    print(f"  See it:   {status_command}   (the contact dead-letter queue holds 1 message: a problem)", file=out)
    print(f"  Clear it: {replay_command}   (the job runs again and updates the one Xero contact; "
          "nothing is duplicated)", file=out)
    return job_id


def _wait_for_dead_letter(session: requests.Session, where: DemoTargets, sqs: Any, dlq_url: str, job_id: str,
                          token: str, wait_seconds: float) -> tuple[bool, dict[str, Any]]:
    """Until the job is dead-lettered, ends otherwise, or ``wait_seconds`` pass (bounded):
    (whether the dead-letter queue holds it, the job as last read)."""
    deadline = time.monotonic() + wait_seconds
    dead_lettered = False
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        dead_lettered = _waiting(sqs, dlq_url) > 0
        job = session.get(f"{where.api_url}/jobs/{job_id}", params={"token": token}, timeout=10).json()
        # The worker marks the job failed "dead-lettered after N attempts" when its last delivery
        # fails; SQS moves the message on the next receive: wait for both.
        ended_otherwise = job.get("status") in TERMINAL_STATUSES and not _says_dead_lettered(job)
        if (dead_lettered and _says_dead_lettered(job)) or ended_otherwise:
            break
        time.sleep(0.5)
    return dead_lettered, job


def _says_dead_lettered(job: dict[str, Any]) -> bool:
    return job.get("status") == "failed" and "dead-lettered after" in str(job.get("error") or "")


def _lift(session: requests.Session, xero_url: str) -> None:
    session.post(f"{xero_url}/_emulator/faults", json={}, timeout=10)


def _print_xero(
    session: requests.Session, xero_url: str | None, crm_ids: set[str], xero_ids: set[str], out: TextIO
) -> None:
    if not xero_url:
        print("Xero: the emulator's URL is unknown (no state file)", file=out)
        return
    state = session.get(f"{xero_url}/_xero/state", timeout=10).json()
    contacts = [
        c
        for c in state.get("contacts", [])
        if c.get("ContactNumber") in crm_ids or c.get("ContactID") in xero_ids
    ]
    tenant = (state.get("tenant") or {}).get("tenantName", "")
    print(f"Xero contacts for these records ({xero_url}, organisation {tenant!r}):", file=out)
    if not contacts:
        print("  none", file=out)
    for contact in contacts:
        print(
            f"  {contact.get('Name')!r}  ContactID={contact.get('ContactID')}  "
            f"ContactNumber={contact.get('ContactNumber')}",
            file=out,
        )
        for person in contact.get("ContactPersons") or []:  # Sugar Contacts kept as contact persons
            name = " ".join(filter(None, [person.get("FirstName"), person.get("LastName")]))
            print(f"    contact person {name!r} {person.get('EmailAddress') or ''}".rstrip(), file=out)
    invoices = [i for i in state.get("invoices", []) if i.get("InvoiceID") in xero_ids]
    for invoice in invoices:
        print(f"  invoice {invoice.get('InvoiceNumber')} {invoice.get('Type')} {invoice.get('Status')}  "
              f"total {invoice.get('Total')} (tax {invoice.get('TotalTax')})  reference {invoice.get('Reference')!r}",
              file=out)


def _print_sugar(session: requests.Session, sugar_url: str | None, crm_ids: set[str], out: TextIO) -> None:
    if not sugar_url:
        print("Sugar: the double's URL is unknown (no state file)", file=out)
        return
    state = session.get(f"{sugar_url}/_sugar/state", timeout=10).json()
    print(f"Sugar records ({sugar_url}):", file=out)
    found = False
    for module, records in sorted((state.get("records") or {}).items()):
        for record in records:
            if record.get("id") not in crm_ids:
                continue
            found = True
            name = record.get("name") or " ".join(
                filter(None, [record.get("first_name"), record.get("last_name")])
            )
            xero_fields = {k: v for k, v in record.items() if k.startswith("xero_") and v not in (None, "")}
            extra = (
                ("  " + ", ".join(f"{k}={v}" for k, v in sorted(xero_fields.items())))
                if xero_fields
                else "  (no xero_* fields written back yet)"
            )
            print(
                f"  {module} {record['id']} {name!r}  modified {record.get('date_modified')}{extra}", file=out
            )
    if not found:
        print("  none of these records are in the Sugar double", file=out)
