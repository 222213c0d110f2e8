"""``sugar-xero demo``: sample Sugar callouts through a running local stack, then what landed in
Xero (the emulator) and what the CRM (the Sugar double) holds for those records."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.models.jobs import TERMINAL_STATUSES
from sugar_xero.local.samples import demo_callouts
from sugar_xero.local.state_file import find_state_file, read_state_file

DEFAULT_WAIT_SECONDS = 30.0


class DemoError(Exception):
    pass


@dataclass
class DemoTargets:
    api_url: str
    xero_url: str | None
    sugar_url: str | None


def targets(url: str | None, state_file: Path | None) -> DemoTargets:
    path = state_file or find_state_file()
    state = read_state_file(path)
    if url:
        urls = (state or {}).get("urls", {})
        return DemoTargets(url.rstrip("/"), urls.get("xero"), urls.get("sugar"))
    if not state:
        raise DemoError(
            f"no running local stack found ({path}); start one with `sugar-xero local`, or pass --url"
        )
    urls = state["urls"]
    return DemoTargets(urls["gateway"], urls.get("xero"), urls.get("sugar"))


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
    try:
        where = targets(url, state_file)
    except DemoError as error:
        print(f"sugar-xero demo: {error}", file=sys.stderr)
        return 2
    token = os.environ.get("CRM_TOKEN") or LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
    session = requests.Session()
    callouts = demo_callouts()
    print(f"Sending {len(callouts)} Sugar callouts to {where.api_url}/crm/contacts", file=out)
    accepted: list[tuple[str, dict[str, Any], str]] = []
    failed = False
    for label, body in callouts:
        try:
            answer = session.post(
                f"{where.api_url}/crm/contacts", params={"token": token}, json=body, timeout=10
            )
        except requests.RequestException as error:
            print(f"sugar-xero demo: cannot reach {where.api_url}: {error}", file=sys.stderr)
            return 2
        if answer.status_code != 202:
            print(f"  {label}: HTTP {answer.status_code} {answer.text[:300]}", file=out)
            failed = True
            continue
        job_id = answer.json()["job_id"]
        print(
            f"  {label}: {body['data'].get('_module', body.get('bean'))} {body['data']['id']} → job {job_id}",
            file=out,
        )
        accepted.append((label, body, job_id))

    deadline = time.monotonic() + wait_seconds
    print("Jobs:", file=out)
    jobs: list[dict[str, Any]] = []
    for label, _, job_id in accepted:
        job = _wait_for_job(session, where.api_url, job_id, token, deadline)
        jobs.append(job)
        status = job.get("status")
        detail = job.get("xero") or {}
        line = f"  {job_id}  {status:<10} {label}"
        if detail:
            line += "  xero " + ", ".join(f"{k}={v}" for k, v in detail.items())
        if job.get("error"):
            line += f"  error: {job['error']}"
        if status not in TERMINAL_STATUSES:
            line += f"  (still {status} after {wait_seconds:.0f} s)"
        print(line, file=out)
        if status not in {"succeeded", "ignored"}:
            failed = True

    crm_ids = {body["data"]["id"] for _, body in callouts}
    xero_ids = {str(v) for job in jobs for k, v in (job.get("xero") or {}).items() if k.endswith("_id")}
    _print_xero(session, where.xero_url, crm_ids, xero_ids, out)
    _print_sugar(session, where.sugar_url, crm_ids, out)
    return 1 if failed else 0


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
