"""`sugar-xero reconcile` against `sugar-xero local` from a cold start: a lost Sugar hook, a
payment made while webhooks were down, an invoice voided by hand and a job stuck after a crash are
repaired in one pass, and afterwards the CRM, the sync state and Xero agree; `sugar-xero status`
shows the pass and its drift."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.mapping.xero_documents import document_state
from shared.models.jobs import CrmRef, Job
from shared.state.dynamo import SyncStateTable
from shared.state.records import Mapping
from sugar_xero.local.aws_resources import FAKE_CREDENTIALS

pytestmark = pytest.mark.e2e

STARTUP_SECONDS = 60
COMMAND_SECONDS = 120
WORK_SECONDS = 60
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


@contextmanager
def local_stack() -> Iterator[tuple[dict, Path]]:
    """`sugar-xero local` on free loopback ports; its state file. Always stopped."""
    folder = Path(tempfile.mkdtemp(prefix="sugar-xero-reconcile-"))
    state_file = folder / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sugar_xero.cli", "local", "--port", "0", "--xero-port", "0", "--sugar-port", "0",
         "--state-file", str(state_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()
    output: list[str] = []

    def watch() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line)
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(STARTUP_SECONDS):
            raise RuntimeError("the local stack did not become ready:\n" + "".join(output[-30:]))
        yield json.loads(state_file.read_text()), state_file
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT", "SYNC_TABLE"))}
    return subprocess.run([sys.executable, "-m", "sugar_xero.cli", *args], env={**env, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=COMMAND_SECONDS)


class Stack:
    def __init__(self, state: dict, state_file: Path):
        self.state, self.state_file = state, state_file
        self.urls = state["urls"]
        session = boto3.session.Session(region_name=state["region"], **{
            "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"]})
        self.table = SyncStateTable(state["environment"]["SYNC_TABLE"],
                                    resource=session.resource("dynamodb", endpoint_url=self.urls["moto"]))
        self.tenant = requests.get(f"{self.urls['xero']}/_emulator/health", timeout=10).json()["tenant_id"]

    def xero(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        answer = requests.request(method, f"{self.urls['xero']}/api.xro/2.0/{path}", json=body, params=params,
                                  headers={"Authorization": "Bearer person", "xero-tenant-id": self.tenant}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def sugar_records(self, module: str) -> dict[str, dict]:
        records = requests.get(f"{self.urls['sugar']}/_sugar/state", timeout=10).json()["records"].get(module, [])
        return {r["id"]: r for r in records}

    def pushed_invoice(self, quote_id: str) -> dict:
        """What the invoice worker leaves after pushing a quote: the invoice, its mapping, the write-back."""
        contact = self.xero("POST", "Contacts", {"Contacts": [{"Name": f"Customer {quote_id}",
                                                               "ContactNumber": quote_id}]})["Contacts"][0]
        invoice = self.xero("POST", "Invoices", {"Invoices": [{
            "Type": "ACCREC", "Contact": {"ContactID": contact["ContactID"]}, "Status": "AUTHORISED",
            "Date": "2026-11-20", "DueDate": "2026-12-20", "LineItems": [{
                "Description": "Consulting", "Quantity": 1, "UnitAmount": 200, "AccountCode": "200",
                "TaxType": "OUTPUT"}]}]})["Invoices"][0]
        state = document_state("Invoices", invoice)
        self.table.put_mapping(Mapping(tenant_id=self.tenant, module="Quotes#ACCREC", crm_id=quote_id,
                                       xero_id=state.xero_id, xero_number=state.number,
                                       document=state.model_dump(mode="json")))
        requests.post(f"{self.urls['sugar']}/_sugar/seed", timeout=10, json={"records": {"Quotes": [{
            "id": quote_id, "name": f"Quote {quote_id}", "quote_stage": "Closed Accepted",
            "xero_id_c": state.xero_id, "xero_status_c": "AUTHORISED",
            "date_modified": "2026-11-20T10:00:00+00:00"}]}}).raise_for_status()
        return invoice

    def agree(self, quote_id: str, status: str) -> None:
        mapping = self.table.get_mappings(self.tenant, "Quotes#ACCREC", [quote_id])[quote_id]
        (invoice,) = self.xero("GET", f"Invoices/{mapping.xero_id}")["Invoices"]
        quote = self.sugar_records("Quotes")[quote_id]
        assert invoice["Status"] == mapping.document["status"] == quote["xero_status_c"] == status
        assert Decimal(str(invoice["AmountDue"])) == Decimal(mapping.document["amount_due"]) == \
            Decimal(str(quote["xero_amount_due_c"]))

    def job_status(self, job_id: str) -> str:
        answer = requests.get(f"{self.urls['gateway']}/jobs/{job_id}", params={"token": TOKEN}, timeout=10)
        return answer.json()["status"]


def wait_for(condition, seconds: float = WORK_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    assert condition()


def test_one_pass_repairs_every_kind_of_loss_and_everything_agrees_afterwards():
    with local_stack() as (state, state_file):
        stack = Stack(state, state_file)
        # A lost Sugar hook: the Account was saved, no callout reached the connector.
        # The stuck job's Account is in the CRM too (a write-back to a deleted record fails the job).
        requests.post(f"{stack.urls['sugar']}/_sugar/seed", timeout=10, json={"records": {"Accounts": [
            {"id": "acc-lost-hook", "name": "Lost Hook Trading", "billing_address_city": "Singapore"},
            {"id": "acc-stuck", "name": "Crashed Ltd"}]}}).raise_for_status()
        # A payment made in Xero while the webhook subscription was off.
        paid = stack.pushed_invoice("q-paid")
        stack.xero("PUT", "Payments", {"Payments": [{"Invoice": {"InvoiceID": paid["InvoiceID"]},
                                                     "Account": {"Code": "090"}, "Amount": paid["Total"],
                                                     "Date": "2026-11-25"}]})
        # An invoice voided by hand in Xero.
        voided = stack.pushed_invoice("q-void")
        stack.xero("POST", f"Invoices/{voided['InvoiceID']}", {"Invoices": [{"InvoiceID": voided["InvoiceID"],
                                                                             "Status": "VOIDED"}]})
        # A job stuck after a crash: marked in progress an hour ago, its message gone.
        stamp = "2026-01-01T00:00:00.000Z"
        stuck = Job(job_id=str(uuid.uuid4()), status="in_progress", kind="contact.upsert",
                    crm=CrmRef(module="Accounts", id="acc-stuck"), created_at=stamp, updated_at=stamp)
        stack.table.create_job(stuck, {"crm_module": "Accounts", "crm_id": "acc-stuck", "name": "Crashed Ltd"})

        ran = cli("reconcile", "--state-file", str(state_file), "--json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        summary = json.loads(ran.stdout)
        (tenant,) = summary["tenants"]
        assert tenant["tenant_id"] == stack.tenant and tenant["errors"] == []
        assert tenant["repaired"]["xero_documents"] == 2 and tenant["repaired"]["jobs_redriven"] == 1
        assert "Accounts/acc-lost-hook" in tenant["jobs"]["queued_samples"]
        assert sorted(tenant["drift_samples"]["status"]) == ["Quotes/q-paid", "Quotes/q-void"]

        stack.agree("q-paid", "PAID")
        stack.agree("q-void", "VOIDED")
        # The queued and re-driven work is done by the stack's own workers.
        wait_for(lambda: stack.job_status(stuck.job_id) == "succeeded")
        wait_for(lambda: bool(stack.sugar_records("Accounts")["acc-lost-hook"].get("xero_id_c")))
        account = stack.sugar_records("Accounts")["acc-lost-hook"]
        mapping = stack.table.get_mappings(stack.tenant, "Accounts", ["acc-lost-hook"])["acc-lost-hook"]
        (contact,) = stack.xero("GET", f"Contacts/{mapping.xero_id}")["Contacts"]
        assert account["xero_id_c"] == mapping.xero_id == contact["ContactID"]
        assert contact["ContactNumber"] == "acc-lost-hook" and contact["Name"] == "Lost Hook Trading"

        # Nothing left: the next pass repairs nothing and prints so.
        again = cli("reconcile", "--state-file", str(state_file))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "repaired: nothing" in again.stdout and "Repaired 0, drift found 0." in again.stdout

        shown = cli("status", "--state-file", str(state_file), "--json")
        (row,) = json.loads(shown.stdout)["reconcile"]
        assert row["tenant_id"] == stack.tenant and row["errors"] == [] and row["complete"]
