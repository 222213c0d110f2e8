"""functions/reconcile in-process: moto (sync table, queues), the Xero emulator and the Sugar
double on loopback, and the real apply_documents. Each repair case of issue 7 that needs no
invoice worker ends with the CRM, the sync state and Xero agreeing."""

from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from shared import wiring
from shared.mapping.settings import mapping_file
from shared.mapping.xero_documents import document_state
from shared.models.jobs import CrmRef, Job
from shared.state.dynamo import SyncStateTable
from shared.state.records import Mapping
from shared.xero.client import XeroClient
from sugar_xero.local import sugar_double
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.conftest import SYNC_TABLE_NAME, create_sync_table
from tests.support.events import FakeLambdaContext, sqs_event

SCHEDULED = {"source": "aws.scheduler", "detail-type": "Scheduled Reconcile", "time": "2026-11-27T12:00:00Z"}


@pytest.fixture
def world(monkeypatch):
    config = EmulatorConfig()
    with serve(config=config) as xero_server, mock_aws():
        sugar = sugar_double.serve()
        try:
            sqs = boto3.client("sqs")
            create_sync_table(boto3.client("dynamodb"), SYNC_TABLE_NAME)
            queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"]
                      for name in ("contact", "invoice", "webhook", "reconcile")}
            env = {"SYNC_TABLE": SYNC_TABLE_NAME, "CONTACT_QUEUE_URL": queues["contact"],
                   "INVOICE_QUEUE_URL": queues["invoice"], "WEBHOOK_QUEUE_URL": queues["webhook"],
                   "RECONCILE_QUEUE_URL": queues["reconcile"], "XERO_API_BASE_URL": xero_server.url,
                   "XERO_IDENTITY_URL": xero_server.url + "/connect/token", "SUGAR_BASE_URL": sugar.url,
                   "XERO_TENANT_ID": config.tenant_id}
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            wiring.reset()
            mapping_file.cache_clear()
            from functions.reconcile import app

            xero = XeroClient(xero_server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
            yield {"xero": xero, "xero_url": xero_server.url, "tenant": config.tenant_id, "sugar": sugar,
                   "sqs": sqs, "queues": queues, "table": SyncStateTable(SYNC_TABLE_NAME),
                   "handler": app.lambda_handler, "app": app}
        finally:
            wiring.reset()
            sugar.shutdown()


def reconcile(world, event=None) -> dict:
    return world["handler"](event or SCHEDULED, FakeLambdaContext())


def drain(world, queue: str) -> list[dict]:
    found = []
    while True:
        answer = world["sqs"].receive_message(QueueUrl=world["queues"][queue], MaxNumberOfMessages=10)
        if not answer.get("Messages"):
            return found
        for message in answer["Messages"]:
            world["sqs"].delete_message(QueueUrl=world["queues"][queue], ReceiptHandle=message["ReceiptHandle"])
            found.append(json.loads(message["Body"]))


def xero_api(world, method: str, path: str, body: dict) -> dict:
    """Changes made in Xero by a person (outside the connector)."""
    answer = requests.request(method, f"{world['xero_url']}/api.xro/2.0/{path}", json=body, timeout=10,
                              headers={"Authorization": "Bearer person", "xero-tenant-id": world["tenant"]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def api_calls_since(world, seq: int) -> list[dict]:
    log = requests.get(f"{world['xero_url']}/_emulator/requests", params={"since": seq}, timeout=10).json()
    return [r for r in log["requests"] if r["path"].startswith("/api.xro/")]


def last_seq(world) -> int:
    return requests.get(f"{world['xero_url']}/_emulator/requests", timeout=10).json()["last_seq"]


def pushed_invoice(world, quote_id: str) -> dict:
    """What the invoice worker leaves after pushing a quote: the invoice in Xero, the mapping
    with its state, the write-back on the quote."""
    contact = world["xero"].upsert_batch("Contacts", [{"Name": f"Customer {quote_id}", "ContactNumber": quote_id}],
                                         idempotency_key=f"c-{quote_id}")[0]
    invoice = world["xero"].upsert_batch("Invoices", [{
        "Type": "ACCREC", "Contact": {"ContactID": contact["ContactID"]}, "Status": "AUTHORISED",
        "Date": "2026-11-20", "DueDate": "2026-12-20", "Reference": quote_id,
        "LineItems": [{"Description": "Consulting", "Quantity": 1, "UnitAmount": Decimal("100.00"),
                       "AccountCode": "200", "TaxType": "OUTPUT"}]}], idempotency_key=f"i-{quote_id}")[0]
    state = document_state("Invoices", invoice)
    world["table"].put_mapping(Mapping(tenant_id=world["tenant"], module="Quotes#ACCREC", crm_id=quote_id,
                                       xero_id=state.xero_id, xero_number=state.number,
                                       document=state.model_dump(mode="json")))
    world["sugar"].app.seed({"records": {"Quotes": [{
        "id": quote_id, "name": f"Quote {quote_id}", "quote_stage": "Closed Accepted",
        "xero_id_c": state.xero_id, "xero_status_c": "AUTHORISED", "xero_amount_paid_c": "0.00",
        "xero_amount_due_c": str(state.amount_due), "date_modified": "2026-11-20T10:00:00+00:00"}]}})
    return invoice


def mapping_of(world, quote_id: str) -> Mapping:
    return world["table"].get_mappings(world["tenant"], "Quotes#ACCREC", [quote_id])[quote_id]


def quote_in_crm(world, quote_id: str) -> dict:
    return world["sugar"].app.store.records["Quotes"][quote_id]


def test_an_invoice_voided_by_hand_in_xero_reaches_the_state_and_the_crm(world, tmp_path):
    invoice = pushed_invoice(world, "q-void")
    xero_api(world, "POST", f"Invoices/{invoice['InvoiceID']}",
             {"Invoices": [{"InvoiceID": invoice["InvoiceID"], "Status": "VOIDED"}]})
    summary = reconcile(world)
    assert summary["status"] == "ok", summary
    (tenant,) = summary["tenants"]
    assert tenant["drift"]["status"] == 1 and tenant["drift_samples"]["status"] == ["Quotes/q-void"]
    assert tenant["repaired"]["xero_documents"] == 1
    assert mapping_of(world, "q-void").document["status"] == "VOIDED"
    assert quote_in_crm(world, "q-void")["xero_status_c"] == "VOIDED"
    stored = world["app"].wiring.reconcile_state().get_last_reconcile(world["tenant"])
    assert stored["drift"]["status"] == 1 and stored["finished"]
    assert_status_shows_the_pass(world, tmp_path)


def assert_status_shows_the_pass(world, tmp_path: Path) -> None:
    """`sugar-xero status` (JSON and table) reads the stored report as "last reconcile"."""
    from sugar_xero import status

    environ = {"SYNC_TABLE": SYNC_TABLE_NAME, "XERO_TENANT_ID": world["tenant"]}
    no_stack = ["--state-file", str(tmp_path / "none.json")]
    out = io.StringIO()
    status.run(["--json", *no_stack], out=out, err=io.StringIO(), environ=environ, session=boto3.session.Session())
    (row,) = json.loads(out.getvalue())["reconcile"]
    assert row["tenant_id"] == world["tenant"] and row["drift"] == {"status": 1} and row["errors"] == []
    assert row["drift_samples"]["status"] == ["Quotes/q-void"] and row["repaired"] == {"xero_documents": 1}
    text = io.StringIO()
    status.run(no_stack, out=text, err=io.StringIO(), environ=environ, session=boto3.session.Session())
    assert "Last reconcile per organisation" in text.getvalue()
    assert "drift: 1 status" in text.getvalue() and "status: Quotes/q-void" in text.getvalue()


def test_a_payment_made_while_webhooks_were_down_is_applied(world):
    invoice = pushed_invoice(world, "q-paid")
    xero_api(world, "PUT", "Payments", {"Payments": [{
        "Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
        "Amount": float(invoice["Total"]), "Date": "2026-11-25"}]})
    summary = reconcile(world)
    assert summary["status"] == "ok", summary
    state = mapping_of(world, "q-paid").document
    assert state["status"] == "PAID" and Decimal(state["amount_paid"]) == Decimal(str(invoice["Total"]))
    quote = quote_in_crm(world, "q-paid")
    assert quote["xero_status_c"] == "PAID" and Decimal(quote["xero_amount_due_c"]) == 0
    assert summary["tenants"][0]["checked"]["Payments_read"] == 1


def test_a_lost_sugar_hook_is_queued_and_once_pushed_is_not_queued_again(world):
    world["sugar"].app.seed({"records": {"Accounts": [{
        "id": "acc-lost", "name": "Lost Hook Pte Ltd", "billing_address_city": "Singapore",
        "email": [{"email_address": "ap@losthook.example", "primary_address": True}]}]}})
    summary = reconcile(world)
    assert summary["tenants"][0]["repaired"]["crm_records_queued"] == 1
    (message,) = drain(world, "contact")
    assert message["kind"] == "contact.upsert" and message["document"]["crm_id"] == "acc-lost"
    assert world["table"].get_job(message["job_id"]).status == "queued"

    from functions.contact_sync import app as contact_app

    assert contact_app.lambda_handler(sqs_event([message]), FakeLambdaContext()) == {"batchItemFailures": []}
    contacts = [c for c in world["xero"].iter_pages("Contacts") if c.get("ContactNumber") == "acc-lost"]
    assert len(contacts) == 1
    account = world["sugar"].app.store.records["Accounts"]["acc-lost"]
    assert account["xero_id_c"] == contacts[0]["ContactID"]
    # The write-back moved date_modified: the next pass reads the Account again, finds the
    # content pushed already, and queues nothing.
    again = reconcile(world)
    assert again["tenants"][0]["repaired"]["crm_records_queued"] == 0 and drain(world, "contact") == []


def test_a_job_stuck_after_a_crash_is_redriven_to_its_queue(world):
    long_ago = "2026-01-01T00:00:00.000Z"
    job = Job(job_id=str(uuid.uuid4()), status="in_progress", kind="contact.upsert",
              crm=CrmRef(module="Accounts", id="acc-9"), created_at=long_ago, updated_at=long_ago)
    document = {"crm_module": "Accounts", "crm_id": "acc-9", "name": "Crashed Mid-Push Ltd"}
    world["table"].create_job(job, document)
    summary = reconcile(world)
    assert summary["tenants"][0]["repaired"]["jobs_redriven"] == 1
    assert drain(world, "contact") == [{"job_id": job.job_id, "kind": "contact.upsert", "document": document}]
    redriven = world["table"].get_job(job.job_id)
    assert redriven.status == "queued" and any("reconciliation" in w for w in redriven.warnings)
    # Just re-driven: not again on the next tick.
    assert reconcile(world)["tenants"][0]["repaired"]["jobs_redriven"] == 0


def test_an_idle_pass_costs_at_most_three_xero_calls(world):
    pushed_invoice(world, "q-idle")
    first = reconcile(world)
    assert first["status"] == "ok" and first["tenants"][0]["metadata"]["refreshed"]
    seq = last_seq(world)
    idle = reconcile(world)
    calls = api_calls_since(world, seq)
    assert idle["status"] == "ok" and idle["tenants"][0]["repaired_total"] == 0
    assert len(calls) <= 3, [c["path"] for c in calls]
    assert sorted(c["path"].rsplit("/", 1)[1] for c in calls) == ["CreditNotes", "Invoices", "Payments"]
    assert all(c["status"] == 200 for c in calls)
    assert idle["tenants"][0]["xero_calls"] == len(calls)


def test_several_organisations_fan_out_to_the_reconcile_queue(world, monkeypatch):
    other = str(uuid.uuid4())
    world["table"].put_connection("default", tenant_id=world["tenant"],
                                  tenants=[{"tenant_id": world["tenant"]}, {"tenant_id": other}])
    monkeypatch.delenv("XERO_TENANT_ID")
    wiring.reset()
    assert reconcile(world) == {"status": "fanned_out", "tenants": [world["tenant"], other]}
    messages = drain(world, "reconcile")
    assert [m["document"] for m in messages] == [{"tenant_id": world["tenant"], "global": True},
                                                 {"tenant_id": other, "global": False}]
    assert reconcile(world, sqs_event(messages)) == {"batchItemFailures": []}
    reports = world["app"].wiring.reconcile_state().last_reconciles([world["tenant"], other])
    assert all(r and r["ok"] for r in reports.values()), reports


def test_xero_news_the_crm_refuses_for_good_is_a_failed_job_status_lists(world):
    """Deliver 4 of issue 11: the reconcile's write-back is a journal step; Sugar refusing it for
    good (the quote deleted in the CRM: 404) is a failed ``crm.write_back`` job, not a log line."""
    from shared.usecases.status import gather
    from shared.usecases.writeback import WRITE_BACK_KIND, step_module

    invoice = pushed_invoice(world, "q-gone")
    del world["sugar"].app.store.records["Quotes"]["q-gone"]
    xero_api(world, "POST", f"Invoices/{invoice['InvoiceID']}",
             {"Invoices": [{"InvoiceID": invoice["InvoiceID"], "Status": "VOIDED"}]})
    reconcile(world)
    assert mapping_of(world, "q-gone").document["status"] == "VOIDED"  # Xero's state is kept all the same
    step = world["table"].get_intents(world["tenant"], step_module("Quotes"), ["q-gone"])["q-gone"]
    assert step.state == "failed"
    (failure,) = gather(store=world["table"], probe=None, limits=None).recent_failures
    assert failure["kind"] == WRITE_BACK_KIND and failure["crm_id"] == "q-gone"
    assert "(reconcile)" in failure["error"] and invoice["InvoiceID"] in failure["error"]
    reconcile(world)  # a second pass does not list it twice
    assert len(gather(store=world["table"], probe=None, limits=None).recent_failures) == 1
