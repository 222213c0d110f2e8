"""payment_webhook's worker end to end, in-process: a signed delivery through the handler (API
Gateway event), the queued message from moto's SQS through the handler again (SQS event), Xero's
invoices re-read over HTTP (the real XeroClient under `responses`), the CRM record written
(FakeSugar). Failures leave the pending item in place and the message deferred for a retry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from shared import wiring
from shared.billing.rules import rules_file
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.mapping.xero_documents import document_state
from shared.state.records import Mapping
from shared.sugar.errors import SugarUnavailable
from shared.xero.client import XeroClient
from tests.support.events import FakeLambdaContext, api_event
from tests.support.fakes import FakeSugar

KEY = LOCAL_SECRET_DEFAULTS["XERO_WEBHOOK_KEY"]
TENANT = "b1e2c3d4-aaaa-4bbb-8ccc-123456789abc"
XERO_BASE = "http://127.0.0.1:9/xero"  # never reached: `responses` answers
API = f"{XERO_BASE}/api.xro/2.0"
ONLINE = "https://in.xero.com/KnownLink"


def sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(KEY.encode(), body, hashlib.sha256).digest()).decode()


def xero_date(iso: str) -> str:
    return f"/Date({int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)}+0000)/"


def invoice(invoice_id: str, *, status: str = "AUTHORISED", paid: float = 0.0, credited: float = 0.0,
            updated: str = "2026-11-27T10:00:00") -> dict[str, Any]:
    return {"InvoiceID": invoice_id, "Type": "ACCREC", "InvoiceNumber": f"INV-{invoice_id[:4]}", "Status": status,
            "Contact": {"ContactID": "c0ffee00-0000-4000-8000-000000000001", "Name": "Harbour View"},
            "Total": 1090.0, "TotalTax": 90.0, "AmountPaid": paid, "AmountCredited": credited,
            "AmountDue": round(1090.0 - paid - credited, 2), "UpdatedDateUTC": xero_date(updated),
            "Payments": [{"PaymentID": str(uuid.uuid4()), "Date": xero_date("2026-11-26T00:00:00"),
                          "Amount": paid, "Status": "AUTHORISED"}] if paid else [],
            **({"FullyPaidOnDate": xero_date("2026-11-26T00:00:00")} if status == "PAID" else {})}


def event(resource_id: str, date: str, category: str = "INVOICE") -> dict[str, Any]:
    path = {"INVOICE": "Invoices", "CREDITNOTE": "CreditNotes", "CONTACT": "Contacts"}[category]
    return {"resourceUrl": f"https://api.xero.com/api.xro/2.0/{path}/{resource_id}", "resourceId": resource_id,
            "eventDateUtc": date, "eventType": "UPDATE", "eventCategory": category, "tenantId": TENANT,
            "tenantType": "ORGANISATION"}


class XeroDouble:
    """GET /Invoices by IDs, /CreditNotes by a where clause (Xero ignores IDs= there), and
    /Invoices/{id}/OnlineInvoice, over `responses`."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.documents: dict[str, dict[str, dict[str, Any]]] = {"Invoices": {}, "CreditNotes": {}}
        self.requests: list[tuple[str, list[str]]] = []
        self.failures: list[tuple[int, dict[str, str]]] = []  # answered first, in order
        for resource in self.documents:
            mock.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/{resource}(\?.*)?$"),
                              callback=lambda request, resource=resource: self._list(resource, request))
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/Invoices/[^/]+/OnlineInvoice$"),
                          callback=self._online)

    def add(self, resource: str, document: dict[str, Any]) -> None:
        key = "InvoiceID" if resource == "Invoices" else "CreditNoteID"
        self.documents[resource][document[key]] = document

    def _list(self, resource: str, request) -> tuple[int, dict[str, str], str]:
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(request.url).query)
        if resource == "Invoices":
            ids = query.get("IDs", [""])[0].split(",")
        else:  # GET /CreditNotes takes no IDs= (spec 16.1.0): only a where clause picks notes out
            ids = re.findall(r'CreditNoteID==Guid\("([^"]+)"\)', query.get("where", [""])[0])
            ids = ids if "where" in query else list(self.documents[resource])
        self.requests.append((resource, ids))
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, headers, json.dumps({"Title": "Unavailable"})
        found = [self.documents[resource][i] for i in ids if i in self.documents[resource]]
        return 200, {"Content-Type": "application/json"}, json.dumps({resource: found})

    def _online(self, request) -> tuple[int, dict[str, str], str]:
        invoice_id = request.url.split("/Invoices/")[1].split("/")[0]
        self.requests.append(("OnlineInvoice", [invoice_id]))
        return 200, {}, json.dumps({"OnlineInvoices": [{"OnlineInvoiceUrl": f"https://in.xero.com/{invoice_id[:8]}"}]})

    def gets(self, resource: str) -> list[list[str]]:
        return [ids for name, ids in self.requests if name == resource]


class SugarWithReads(FakeSugar):
    """FakeSugar plus record reads (what billing rules look up on the document's record)."""

    def get_record(self, module: str, record_id: str, fields: Any = None) -> dict[str, Any]:
        return {"id": record_id, **self.records.get((module, record_id), {})}


@pytest.fixture
def worker(aws, monkeypatch):
    from functions.payment_webhook import app

    sqs = aws["sqs"]
    dlq = sqs.create_queue(QueueName="webhook-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="webhook", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue)
    monkeypatch.setenv("SUGAR_BASE_URL", "http://127.0.0.1:9/sugar")
    monkeypatch.delenv("BILLING_RULES", raising=False)  # the shipped file: no rules
    rules_file.cache_clear()
    wiring.reset()
    sugar = SugarWithReads()
    monkeypatch.setattr(wiring, "sugar_client", lambda: sugar)
    clients: dict[str, XeroClient] = {}

    def xero_client_for(tenant_id: str) -> XeroClient:
        return clients.setdefault(tenant_id, XeroClient(XERO_BASE, tenant_id, lambda force: "token",
                                                        sleep=lambda s: None, max_attempts=3))

    monkeypatch.setattr(wiring, "xero_client_for", xero_client_for)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield {**aws, "queue": queue, "dlq": dlq, "handler": app.lambda_handler, "app": app, "sugar": sugar,
               "xero": XeroDouble(mock), "table": aws["dynamodb"].Table("sync-test")}
    wiring.reset()
    rules_file.cache_clear()


def deliver(worker, events: list[dict]) -> None:
    body = json.dumps({"events": events, "firstEventSequence": 1, "lastEventSequence": len(events),
                       "entropy": uuid.uuid4().hex[:20]}).encode()
    answer = worker["handler"](api_event("POST", "/xero/webhooks", body=body,
                                         headers={"x-xero-signature": sign(body)}), FakeLambdaContext())
    assert answer["statusCode"] == 200 and answer["body"] == ""


def receive(worker) -> dict[str, Any]:
    """The queued messages as Lambda's SQS event source hands them over (real receipt handles)."""
    records = []
    while True:
        answer = worker["sqs"].receive_message(QueueUrl=worker["queue"], MaxNumberOfMessages=10,
                                               VisibilityTimeout=30, AttributeNames=["All"])
        if not answer.get("Messages"):
            break
        for message in answer["Messages"]:
            records.append({"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                            "body": message["Body"], "attributes": message.get("Attributes", {}),
                            "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
                            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:webhook",
                            "awsRegion": "eu-west-1"})
    return {"Records": records}


def run(worker, sqs_event: dict[str, Any]) -> list[str]:
    answer = worker["handler"](sqs_event, FakeLambdaContext())
    return [f["itemIdentifier"] for f in answer["batchItemFailures"]]


def map_invoices(worker, documents: list[dict[str, Any]]) -> None:
    """Invoices the connector pushed, their state stored as the push left it (with a known link)."""
    with worker["table"].batch_writer() as batch:
        for n, document in enumerate(documents):
            state = document_state("Invoices", document, online_url=ONLINE)
            batch.put_item(Item={"PK": f"T#{TENANT}#Quotes#ACCREC#q-{n}", "SK": "MAP", **Mapping(
                tenant_id=TENANT, module="Quotes#ACCREC", crm_id=f"q-{n}", xero_id=state.xero_id,
                xero_number=state.number, document=state.model_dump(mode="json")).model_dump(exclude_none=True)})


def pending(worker) -> dict[str, dict]:
    items = worker["table"].query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": f"T#{TENANT}"},
                                  ConsistentRead=True)["Items"]
    return {i["resource_id"]: i for i in items if i["SK"].startswith("PENDING#")}


def stored_state(worker, crm_id: str = "q-0") -> dict[str, Any]:
    return worker["table"].get_item(Key={"PK": f"T#{TENANT}#Quotes#ACCREC#{crm_id}", "SK": "MAP"})["Item"]["document"]


# ---- tests ------------------------------------------------------------------------------------
def test_a_signed_payment_delivery_reaches_the_crm_record(worker):
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    worker["xero"].add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00.123")])

    assert run(worker, receive(worker)) == []
    fields = worker["sugar"].records[("Quotes", "q-0")]
    assert fields["xero_status_c"] == "PAID" and fields["xero_amount_paid_c"] == "1090.00"
    assert fields["xero_amount_due_c"] == "0.00" and fields["xero_paid_date_c"] == "2026-11-26"
    assert fields["xero_url_c"] == ONLINE and fields["xero_payments_c"] == "2026-11-26 1,090.00"
    assert stored_state(worker)["status"] == "PAID"
    assert pending(worker)[invoice_id]["status"] == "refreshed"
    assert worker["xero"].gets("Invoices") == [[invoice_id]] and worker["xero"].gets("OnlineInvoice") == []

    # Xero delivers the same event again: dropped as a duplicate, nothing fetched or written.
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00.123")])
    assert run(worker, receive(worker)) == []
    assert len(worker["xero"].requests) == 1 and len(worker["sugar"].calls) == 1


def test_a_fifty_event_delivery_costs_one_xero_get(worker):
    ids = [str(uuid.uuid4()) for _ in range(50)]
    map_invoices(worker, [invoice(i) for i in ids])
    for invoice_id in ids:
        worker["xero"].add("Invoices", invoice(invoice_id, paid=500.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(i, "2026-11-27T12:00:00") for i in ids])

    assert run(worker, receive(worker)) == []
    (asked,) = worker["xero"].requests
    assert asked[0] == "Invoices" and sorted(asked[1]) == sorted(ids)
    assert len(worker["sugar"].calls) == 3  # 20 records a Sugar bulk
    assert {worker["sugar"].records[("Quotes", f"q-{n}")]["xero_amount_paid_c"] for n in range(50)} == {"500.00"}
    assert {i["status"] for i in pending(worker).values()} == {"refreshed"}


def test_out_of_order_deliveries_never_move_the_record_backwards(worker):
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id, updated="2026-11-27T09:00:00")])
    xero = worker["xero"]
    xero.add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])  # the newer event first
    assert run(worker, receive(worker)) == []
    # The part-payment's event arrives late; Xero (eventually consistent) even answers the older state.
    xero.add("Invoices", invoice(invoice_id, paid=400.0, updated="2026-11-27T11:00:00"))
    deliver(worker, [event(invoice_id, "2026-11-27T11:00:00")])
    assert run(worker, receive(worker)) == []
    assert len(xero.gets("Invoices")) == 1  # the older event asked for no refresh
    # Even a refresh that reads the older state leaves the record as it is.
    worker["table"].update_item(Key={"PK": f"T#{TENANT}", "SK": f"PENDING#INVOICE#{invoice_id}"},
                                UpdateExpression="SET #s = :p", ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":p": "pending"})
    deliver(worker, [event(str(uuid.uuid4()), "2026-11-27T13:00:00")])  # any message of the tenant
    assert run(worker, receive(worker)) == []
    assert len(xero.gets("Invoices")) == 2
    assert stored_state(worker)["status"] == "PAID"
    assert [u["q-0"]["xero_status_c"] for _, u in worker["sugar"].calls] == ["PAID"]


def test_billing_rules_run_on_the_change_before_its_state_is_stored(worker, monkeypatch, tmp_path):
    rules = tmp_path / "billing.yaml"
    rules.write_text("version: 1\nrules:\n  - name: membership-active\n    when: paid\n"
                     "    set_fields:\n      values: {membership_status_c: Active}\n")
    monkeypatch.setenv("BILLING_RULES", str(rules))
    monkeypatch.setenv("INVOICE_QUEUE_URL", worker["sqs"].create_queue(QueueName="invoice")["QueueUrl"])
    rules_file.cache_clear()
    wiring.reset()
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    worker["xero"].add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    from shared.usecases import billing

    real_run, outcomes = billing.run_billing_rules, []

    def flaky_rules(changes, **kwargs):
        report = real_run(changes, **kwargs)
        if not outcomes:  # the first run fails in a way worth retrying, as a Sugar outage would
            report.failed.append(billing.ChangeFailure(changes[0], "Sugar answered 503", True))
        outcomes.append([(c.crm_id, c.before.status if c.before else None, c.after.status) for c in changes])
        return report

    monkeypatch.setattr(billing, "run_billing_rules", flaky_rules)
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    batch = receive(worker)
    assert run(worker, batch) == [batch["Records"][0]["messageId"]]
    assert stored_state(worker)["status"] == "AUTHORISED"  # not stored: the rules are run again
    assert run(worker, batch) == []
    assert outcomes == [[("q-0", "AUTHORISED", "PAID")]] * 2  # the same transition both times
    fields = worker["sugar"].records[("Quotes", "q-0")]
    assert fields["membership_status_c"] == "Active" and fields["xero_status_c"] == "PAID"
    assert stored_state(worker)["status"] == "PAID"


def test_a_xero_rate_limit_defers_the_message_and_the_refresh_happens_on_its_retry(worker):
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    xero = worker["xero"]
    xero.add("Invoices", invoice(invoice_id, paid=400.0, updated="2026-11-27T12:00:00"))
    xero.failures.append((429, {"Retry-After": "30", "X-Rate-Limit-Problem": "minute"}))
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    first = receive(worker)
    (message_id,) = [r["messageId"] for r in first["Records"]]

    assert run(worker, first) == [message_id]
    assert pending(worker)[invoice_id]["status"] == "pending" and worker["sugar"].calls == []
    # Deferred by Xero's Retry-After: not visible again straight away.
    assert worker["sqs"].receive_message(QueueUrl=worker["queue"], VisibilityTimeout=0).get("Messages") is None

    # SQS delivers it again: its events are now duplicates, but the refresh still runs.
    receipt = first["Records"][0]["receiptHandle"]
    worker["sqs"].change_message_visibility(QueueUrl=worker["queue"], ReceiptHandle=receipt, VisibilityTimeout=0)
    assert run(worker, receive(worker)) == []
    assert worker["sugar"].records[("Quotes", "q-0")]["xero_amount_paid_c"] == "400.00"
    assert pending(worker)[invoice_id]["status"] == "refreshed"


def test_xero_server_errors_defer_and_nothing_is_lost(worker):
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    worker["xero"].add("Invoices", invoice(invoice_id, status="VOIDED", updated="2026-11-27T12:00:00"))
    worker["xero"].failures += [(503, {})] * 3  # every attempt of the client's three
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    batch = receive(worker)
    assert run(worker, batch) == [batch["Records"][0]["messageId"]]
    assert pending(worker)[invoice_id]["status"] == "pending"
    assert run(worker, batch) == []  # the same message again (a redelivery)
    assert worker["sugar"].records[("Quotes", "q-0")]["xero_status_c"] == "VOIDED"


def test_sugar_failing_then_recovering_writes_once_with_the_right_values(worker, monkeypatch):
    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    worker["xero"].add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    sugar = worker["sugar"]
    sugar.down = SugarUnavailable("POST /bulk: Sugar answered 503 maintenance", status=503, retryable=True)
    deferred: list[tuple[str, int]] = []
    queue = wiring.webhook_queue()
    real_defer = queue.defer
    monkeypatch.setattr(queue, "defer", lambda receipt, seconds: (deferred.append((receipt, seconds)),
                                                                   real_defer(receipt, seconds)))
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    batch = receive(worker)

    assert run(worker, batch) == [batch["Records"][0]["messageId"]]
    assert deferred == [(batch["Records"][0]["receiptHandle"], 61)]  # REFRESH_RETRY_SECONDS + 1
    assert stored_state(worker)["status"] == "AUTHORISED"  # not stored while its write-back is pending
    assert pending(worker)[invoice_id]["status"] == "pending"

    sugar.down = None
    assert run(worker, batch) == []
    assert run(worker, batch) == []  # once applied, a further retry writes nothing
    attempts = [updates["q-0"] for _, updates in sugar.calls]
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the failed attempt and the one that landed
    assert sugar.records[("Quotes", "q-0")]["xero_status_c"] == "PAID"
    assert stored_state(worker)["status"] == "PAID" and pending(worker)[invoice_id]["status"] == "refreshed"


def test_a_credit_note_event_updates_the_credited_amount_on_the_invoice(worker):
    invoice_id, note_id = str(uuid.uuid4()), str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    xero = worker["xero"]
    xero.add("CreditNotes", {"CreditNoteID": note_id, "Type": "ACCRECCREDIT", "Status": "PAID", "Total": 90.0,
                             "RemainingCredit": 0.0, "UpdatedDateUTC": xero_date("2026-11-27T12:00:00"),
                             "Allocations": [{"Invoice": {"InvoiceID": invoice_id}, "Amount": 90.0,
                                              "Date": xero_date("2026-11-27T12:00:00")}]})
    xero.add("Invoices", invoice(invoice_id, credited=90.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(note_id, "2026-11-27T12:00:00", "CREDITNOTE")])
    assert run(worker, receive(worker)) == []
    assert xero.gets("CreditNotes") == [[note_id]] and xero.gets("Invoices") == [[invoice_id]]
    fields = worker["sugar"].records[("Quotes", "q-0")]
    assert fields["xero_amount_credited_c"] == "90.00" and fields["xero_amount_due_c"] == "1000.00"
    assert pending(worker)[note_id]["status"] == "refreshed"


def test_more_pending_than_one_run_takes_queues_a_continuation(worker, monkeypatch):
    monkeypatch.setattr(worker["app"], "REFRESH_LIMIT", 2)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    map_invoices(worker, [invoice(i) for i in ids])
    for invoice_id in ids:
        worker["xero"].add("Invoices", invoice(invoice_id, paid=10.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(i, "2026-11-27T12:00:00") for i in ids])
    assert run(worker, receive(worker)) == []
    assert sum(i["status"] == "pending" for i in pending(worker).values()) == 1
    continuation = receive(worker)
    (body,) = [json.loads(r["body"]) for r in continuation["Records"]]
    assert body["kind"] == "xero.webhook" and body["document"] == {"tenant_id": TENANT, "events": []}
    assert run(worker, continuation) == []
    assert {i["status"] for i in pending(worker).values()} == {"refreshed"}
    assert receive(worker)["Records"] == []  # nothing left: no further continuation


def test_no_xero_connection_defers_the_batch_for_the_operator(worker, monkeypatch):
    from shared.errors import ConnectionNotReady

    def not_connected(tenant_id):
        raise ConnectionNotReady("no Xero token set; run `sugar-xero connect`")

    monkeypatch.setattr(wiring, "xero_client_for", not_connected)
    invoice_id = str(uuid.uuid4())
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    batch = receive(worker)
    assert run(worker, batch) == [batch["Records"][0]["messageId"]]
    assert pending(worker)[invoice_id]["status"] == "pending"


def test_payment_and_credit_note_read_back_from_the_xero_emulator(moto_dynamodb):
    """The same refresh against the local Xero emulator (its answers shaped by Xero's spec):
    a part payment and an allocated credit note on a pushed invoice, and its online link."""
    from shared.mapping.settings import MappingConfig
    from shared.state.dynamo import SyncStateTable
    from shared.state.webhook_events import WebhookEventTable
    from shared.usecases.xero_updates import refresh_pending
    from sugar_xero.local.xero_emulator import EmulatorConfig, serve
    from tests.conftest import SYNC_TABLE_NAME

    resource = moto_dynamodb.resource("dynamodb")
    table = SyncStateTable(SYNC_TABLE_NAME, resource=resource)
    events = WebhookEventTable(SYNC_TABLE_NAME, resource=resource)
    config = EmulatorConfig()
    with serve(config=config) as server:
        xero = XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
        (contact,) = xero.upsert_batch("Contacts", [{"Name": "Harbour View Pte Ltd"}], idempotency_key="c")
        line = {"Description": "Membership", "Quantity": 1, "UnitAmount": 1000, "AccountCode": "200",
                "TaxType": "OUTPUT"}
        (pushed,) = xero.upsert_batch("Invoices", [{"Type": "ACCREC", "Contact": {"ContactID": contact["ContactID"]},
                                                    "Status": "AUTHORISED", "Date": "2026-11-01",
                                                    "DueDate": "2026-12-01", "LineItems": [line]}],
                                      idempotency_key="i")
        state = document_state("Invoices", pushed, line_crm_ids=["line-1"])
        table.put_mapping(Mapping(tenant_id=config.tenant_id, module="Memberships#ACCREC", crm_id="m-1",
                                  xero_id=state.xero_id, document=state.model_dump(mode="json")))
        invoice_id = pushed["InvoiceID"]
        xero._request("PUT", "/api.xro/2.0/Payments", idempotency_key="p", json_body={"Payments": [
            {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Date": "2026-11-26", "Amount": 400}]})
        (note,) = xero.upsert_batch("CreditNotes", [{"Type": "ACCRECCREDIT", "Status": "AUTHORISED",
                                                     "Contact": {"ContactID": contact["ContactID"]},
                                                     "Date": "2026-11-27", "LineItems": [{**line, "UnitAmount": 100}]}],
                                    idempotency_key="n")
        xero._request("PUT", f"/api.xro/2.0/CreditNotes/{note['CreditNoteID']}/Allocations", idempotency_key="a",
                      json_body={"Allocations": [{"Invoice": {"InvoiceID": invoice_id}, "Amount": 109,
                                                  "Date": "2026-11-27"}]})
        for category, resource_id in (("INVOICE", invoice_id), ("CREDITNOTE", note["CreditNoteID"])):
            events.record_pending(tenant_id=config.tenant_id, category=category, resource_id=resource_id,
                                  event_date_utc="2026-11-27T12:00:00.000000Z", event_type="UPDATE", resource_url="u")
        xero.calls, sugar = 0, FakeSugar()

        report = refresh_pending(config.tenant_id, store=events, xero=xero, mappings=table, crm=sugar,
                                 config=MappingConfig())
        assert report.cleared == 2 and report.kept == {}
        assert xero.calls == 3  # the credit note, the invoice, its online link
        fields = sugar.records[("Memberships", "m-1")]
        assert (fields["xero_amount_paid_c"], fields["xero_amount_credited_c"], fields["xero_amount_due_c"]) == (
            "400.00", "109.00", "581.00")
        assert fields["xero_payments_c"] == "2026-11-26 400.00" and fields["xero_status_c"] == "AUTHORISED"
        assert fields["xero_url_c"].startswith(server.url.split("://")[0]) and "online-invoices" in fields["xero_url_c"]
        stored = table.get_mappings(config.tenant_id, "Memberships#ACCREC", ["m-1"])["m-1"].document
        assert stored["line_ids"] == state.line_ids and stored["url"] == fields["xero_url_c"]


def test_a_record_the_crm_refuses_for_good_is_a_failed_job_not_a_log_line(worker):
    """Issue 11, Deliver 4: the webhook worker's write-back is a journal step; Sugar refusing it
    for good (the quote deleted in the CRM: 404) is listed as a failed ``crm.write_back`` job."""
    from shared.state.dynamo import SyncStateTable
    from shared.usecases.status import gather
    from shared.usecases.writeback import WRITE_BACK_KIND

    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])
    worker["xero"].add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    worker["sugar"].missing.add("q-0")
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00")])
    assert run(worker, receive(worker)) == []  # nothing to retry: Sugar said no for good
    assert stored_state(worker)["status"] == "PAID" and pending(worker)[invoice_id]["status"] == "refreshed"
    (failure,) = gather(store=SyncStateTable("sync-test"), probe=None, limits=None).recent_failures
    assert failure["kind"] == WRITE_BACK_KIND and (failure["crm_module"], failure["crm_id"]) == ("Quotes", "q-0")
    assert "(webhook)" in failure["error"] and "404" in failure["error"]
