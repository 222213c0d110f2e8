"""One CRM, several Xero organisations, in-process under moto: a later save of a customer or a
product reaches every organisation that holds it (and the one it is routed to), each through a
job of its own stamped with the organisation, worked by the ordinary worker and journal; such a
job re-driven by `sugar-xero replay` goes back to its organisation."""

from __future__ import annotations

import copy
import json

import pytest

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.errors import XeroError
from shared.mapping.settings import mapping_file
from shared.usecases.redrive import redrive_job
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeSugar, FakeXero

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
SG, MY = "t-sg", "t-my"
MAPPING = f"""
version: 1
organisations:
  names: {{SG: "{SG}", MY: "{MY}"}}
  default: SG
  route_by: account.billing_address_country
  routes: {{Malaysia: MY}}
"""


class Crm(FakeSugar):
    """Sugar as the router reads it (Accounts by id) and as write-back writes to it."""

    def __init__(self, accounts):
        super().__init__()
        self.accounts = accounts

    def get_record(self, module, record_id, fields=None):
        assert module == "Accounts"
        return {"id": record_id, **self.accounts[record_id]}


class Organisation(FakeXero):
    def __init__(self, tenant_id):
        super().__init__()
        self.tenant_id = tenant_id


@pytest.fixture
def world(aws, invoice_queue, tmp_path, monkeypatch):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    monkeypatch.setenv("MAPPING_CONFIG", str(mapping))
    mapping_file.cache_clear()
    monkeypatch.delenv("XERO_TENANT_ID", raising=False)
    monkeypatch.setenv("SUGAR_BASE_URL", "http://127.0.0.1:9")
    wiring.reset()
    xero = {SG: Organisation(SG), MY: Organisation(MY)}
    crm = Crm({})
    monkeypatch.setattr(wiring, "xero_client", lambda: xero[SG])
    monkeypatch.setattr(wiring, "xero_client_for", lambda tenant_id: xero[tenant_id])
    monkeypatch.setattr(wiring, "sugar_client", lambda: crm)
    yield {"xero": xero, "crm": crm, "aws": aws, "contact_queue": aws["queue_url"], "invoice_queue": invoice_queue}
    mapping_file.cache_clear()


def drain(world, queue) -> list[dict]:
    sqs, bodies = world["aws"]["sqs"], []
    while messages := sqs.receive_message(QueueUrl=world[queue], MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=world[queue], ReceiptHandle=message["ReceiptHandle"])
    return bodies


def contact_handler():
    from functions.contact_sync import app

    return app.lambda_handler


def invoice_handler():
    from functions.invoice_push import app

    return app.lambda_handler


def callout(handler, path, body):
    answer = handler(api_event("POST", path, body=body, query={"token": TOKEN}), FakeLambdaContext())
    assert answer["statusCode"] == 202, answer
    return json.loads(answer["body"])["job_id"]


def work(handler, bodies):
    assert handler(sqs_event(bodies), FakeLambdaContext()) == {"batchItemFailures": []}


def account_save(fixture_body, name, modified):
    account = copy.deepcopy(fixture_body("sugar/account_after_save.json"))
    account["data"].update(name=name, date_modified=modified)
    return account


def test_a_customer_reaches_the_organisation_it_is_routed_to_and_every_one_holding_it(world, fixture_body):
    handler, xero, crm = contact_handler(), world["xero"], world["crm"]
    account = account_save(fixture_body, "Kuala Trading Sdn Bhd", "2026-11-26T10:00:00+00:00")
    account_id = account["data"]["id"]
    crm.accounts[account_id] = {"billing_address_country": "Malaysia"}

    root = callout(handler, "/crm/contacts", account)
    work(handler, drain(world, "contact_queue"))
    (child,) = drain(world, "contact_queue")  # a job of its own for the routed organisation
    assert child["tenant_id"] == MY and child["job_id"] != root and child["document"]["crm_id"] == account_id
    jobs = wiring.job_store()
    assert xero[SG].contacts == {}  # the default organisation neither holds it nor is routed it
    assert jobs.get_job(root).status == "ignored" and child["job_id"] in jobs.get_job(root).warnings[0]
    assert "MY" in jobs.get_job(root).warnings[0]
    work(handler, [child])
    (in_my,) = xero[MY].contacts.values()
    assert in_my["Name"] == "Kuala Trading Sdn Bhd"
    assert jobs.get_job(child["job_id"]).tenant_id == MY and jobs.get_job(child["job_id"]).status == "succeeded"
    assert jobs.get_job(root).tenant_id is None
    assert jobs.get_job_payload(child["job_id"]) == child["document"]  # bare, as accept() stores it
    assert jobs.get_mappings(MY, "Accounts", [account_id])[account_id].xero_id == in_my["ContactID"]
    # The CRM's xero_* fields name the default organisation's contact: MY's push writes none.
    assert not [f for _, updates in crm.calls for f in updates.values() if f.get("xero_id_c")]

    # The same save delivered again: nothing new queued (that organisation's job has ended).
    work(handler, [{"job_id": root, "kind": "contact.upsert", "document": child["document"]}])
    assert drain(world, "contact_queue") == []
    assert len(xero[MY].contacts) == 1

    # The Account moves to Singapore and is renamed: routed to SG now, and MY still holds it.
    crm.accounts[account_id] = {"billing_address_country": "Singapore"}
    callout(handler, "/crm/contacts", account_save(fixture_body, "Kuala Trading (SG) Pte Ltd",
                                                   "2026-11-27T10:00:00+00:00"))
    work(handler, drain(world, "contact_queue"))
    (update,) = drain(world, "contact_queue")
    assert update["tenant_id"] == MY
    work(handler, [update])
    assert [c["Name"] for c in xero[MY].contacts.values()] == ["Kuala Trading (SG) Pte Ltd"]  # updated, not added
    (in_sg,) = xero[SG].contacts.values()
    assert in_sg["Name"] == "Kuala Trading (SG) Pte Ltd"
    written = [fields.get("xero_id_c") for _, updates in crm.calls for fields in updates.values()]
    assert written and set(written) == {in_sg["ContactID"]}


def test_a_customer_neither_routed_nor_held_elsewhere_stays_in_the_default_organisation(world, fixture_body):
    handler, xero = contact_handler(), world["xero"]
    account = fixture_body("sugar/account_after_save.json")
    world["crm"].accounts[account["data"]["id"]] = {"billing_address_country": "Singapore"}
    callout(handler, "/crm/contacts", account)
    work(handler, drain(world, "contact_queue"))
    assert drain(world, "contact_queue") == []
    assert len(xero[SG].contacts) == 1 and xero[MY].contacts == {}


def test_a_product_an_organisation_holds_gets_every_later_save(world, fixture_body):
    handler, xero = invoice_handler(), world["xero"]
    product = fixture_body("sugar/product_template_after_save.json")
    first = callout(handler, "/crm/products", product)
    work(handler, drain(world, "invoice_queue"))
    assert len(xero[SG].items) == 1 and xero[MY].items == {}
    assert drain(world, "invoice_queue") == []  # products route to the default: nobody else holds it

    # MY receives the product (as a quote for MY would push it: an organisation job).
    from shared.usecases.organisations import organisation_job, queue_message

    document = wiring.job_store().get_job_payload(first)
    item, _, _ = organisation_job("item.upsert", document, MY, jobs=wiring.job_store())
    work(handler, [queue_message(item)])
    assert len(xero[MY].items) == 1

    # A later price change: both organisations, MY through a job of its own.
    changed = copy.deepcopy(product)
    changed["data"].update(discount_price="1250.000000", date_modified="2026-11-28T10:00:00+08:00")
    callout(handler, "/crm/products", changed)
    work(handler, drain(world, "invoice_queue"))
    (child,) = drain(world, "invoice_queue")
    assert child["tenant_id"] == MY and child["kind"] == "item.upsert"
    work(handler, [child])
    for tenant in (SG, MY):
        (only,) = xero[tenant].items.values()
        assert str(only["SalesDetails"]["UnitPrice"]) in ("1250", "1250.0", "1250.00", "1250.0000")


def test_replaying_an_organisation_job_sends_it_to_that_organisation(world, fixture_body):
    handler, xero = contact_handler(), world["xero"]
    account = fixture_body("sugar/account_after_save.json")
    account_id = account["data"]["id"]
    world["crm"].accounts[account_id] = {"billing_address_country": "Malaysia"}
    callout(handler, "/crm/contacts", account)
    work(handler, drain(world, "contact_queue"))
    (child,) = drain(world, "contact_queue")
    xero[MY].fail_next.append(XeroError("Xero refused the contact", status=400, retryable=False))
    work(handler, [child])
    jobs = wiring.job_store()
    assert jobs.get_job(child["job_id"]).status == "failed" and xero[MY].contacts == {}

    sent = redrive_job(child["job_id"], jobs=jobs, queues={"contact": wiring.contact_queue()})
    assert sent.sent and sent.tenant_id == MY
    from sugar_xero.replay import ReplayReport, render
    from sugar_xero.status import StackTarget

    shown = render(ReplayReport(jobs=[sent]), StackTarget(where="test", sync_table="sync-test"))
    assert f"queued again on the contact queue for organisation {MY}" in shown
    (again,) = drain(world, "contact_queue")
    assert again["tenant_id"] == MY and again["document"] == child["document"]
    before = copy.deepcopy(xero[SG].contacts)
    work(handler, [again])
    assert len(xero[MY].contacts) == 1 and jobs.get_job(child["job_id"]).status == "succeeded"
    assert xero[SG].contacts == before  # the default organisation is not touched by MY's job
