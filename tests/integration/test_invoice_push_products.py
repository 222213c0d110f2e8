"""invoice_push's /crm/products in-process under moto: callout in, SQS batch through, job out."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from tests.support.events import FakeLambdaContext, api_event, sqs_event
from tests.support.fakes import FakeXero

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


@pytest.fixture
def handler(invoice_push_handler):
    return invoice_push_handler


def call(handler, event):
    answer = handler(event, FakeLambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def queued(aws, url) -> list[dict]:
    answer = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def get_job(handler, job_id):
    return call(handler, api_event("GET", f"/jobs/{job_id}", resource="/jobs/{job_id}",
                                   path_parameters={"job_id": job_id},
                                   headers={"Authorization": f"Bearer {TOKEN}"}))


def test_product_template_callout_becomes_a_xero_item(handler, aws, invoice_queue, fixture_body,
                                                      monkeypatch):
    product = fixture_body("sugar/product_template_after_save.json")
    status, body = call(handler, api_event("POST", "/crm/products", body=product, query={"token": TOKEN}))
    assert status == 202, body
    assert body["status"] == "queued" and body["status_url"].endswith(f"/jobs/{body['job_id']}")
    status, repeat = call(handler, api_event("POST", "/crm/products", body=product, query={"token": TOKEN}))
    assert status == 202 and repeat["job_id"] == body["job_id"] and repeat["duplicate"] is True
    messages = queued(aws, invoice_queue)
    assert len(messages) == 1 and messages[0]["kind"] == "item.upsert"
    assert queued(aws, aws["queue_url"]) == []  # not on the contact queue

    fake = FakeXero()
    monkeypatch.setattr(wiring, "xero_client", lambda: fake)
    assert handler(sqs_event(messages), FakeLambdaContext()) == {"batchItemFailures": []}
    (item,) = fake.items.values()
    assert item["Code"] == "SVC-LIFT-02"
    assert item["SalesDetails"]["UnitPrice"] == Decimal("1170.0000")
    assert fake.params == [{"unitdp": "4", "summarizeErrors": "false"}]

    status, job = get_job(handler, body["job_id"])
    assert status == 200
    assert job["status"] == "succeeded" and job["xero"]["item_id"] == item["ItemID"]
    assert job["crm"] == {"module": "ProductTemplates", "id": product["data"]["id"]}


def test_own_item_document_is_accepted(handler, aws, invoice_queue):
    document = {"crm_id": "sku-1", "name": "Spare part", "code": "SP-1", "sales_price": "12.5"}
    status, body = call(handler, api_event("POST", "/crm/products", body=document,
                                           headers={"Authorization": f"Bearer {TOKEN}"}))
    assert status == 202, body
    (message,) = queued(aws, invoice_queue)
    assert message["document"]["code"] == "SP-1" and message["document"]["sales_price"] == "12.5"


@pytest.mark.parametrize(("raw", "status", "code"), [
    ("{not json", 400, "malformed_json"),
    ('{"bean": "Quote", "event": "after_save", "data": {"id": "x"}}', 422, "invalid_body"),
    ('{"bean": "ProductTemplate", "event": "after_save", "data": {"id": "x"}}', 422, "invalid_body"),
    ('{"bean": "ProductTemplate", "event": "after_save", "data": {"id": "x", "name": "A", '
     '"discount_price": "lots"}}', 422, "invalid_body"),
    ('{"crm_id": "x", "name": "A", "sales_price": "1.12345"}', 422, "invalid_body"),
    # A code longer than Xero's 30 is accepted with a derived code and a warning (test_long_text.py);
    # one that is only spaces can never be pushed.
    ('{"crm_id": "x", "name": "A", "code": "   "}', 422, "invalid_body"),
    ('{"crm_id": "../x", "name": "A"}', 422, "invalid_body"),
])
def test_bad_input_is_a_4xx_json_error_and_nothing_is_queued(handler, aws, invoice_queue, raw, status, code):
    answer_status, body = call(handler, api_event("POST", "/crm/products", body=raw, query={"token": TOKEN}))
    assert answer_status == status and body["error"] == code and body["message"]
    assert queued(aws, invoice_queue) == []
    assert aws["dynamodb"].Table("sync-test").scan()["Items"] == []


def test_no_credentials_is_401(handler, aws, invoice_queue):
    status, body = call(handler, api_event("POST", "/crm/products", body={"crm_id": "a", "name": "A"}))
    assert status == 401 and body["error"] == "unauthorized"
    assert queued(aws, invoice_queue) == []


def test_unknown_kinds_are_retried_never_dropped(handler, aws, invoice_queue, monkeypatch):
    status, body = call(handler, api_event("POST", "/crm/products", body={"crm_id": "a", "name": "A"},
                                           query={"token": TOKEN}))
    assert status == 202
    fake = FakeXero()
    monkeypatch.setattr(wiring, "xero_client", lambda: fake)
    event = sqs_event(queued(aws, invoice_queue) + [{"job_id": "j-2", "kind": "invoice.upsert",
                                                      "document": {}}])
    answer = handler(event, FakeLambdaContext())
    unknown_id = event["Records"][1]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": unknown_id}]}
    assert len(fake.items) == 1
    assert get_job(handler, body["job_id"])[1]["status"] == "succeeded"



@pytest.mark.parametrize("price", [1e24, "1e30", "NaN", "-Infinity"])
def test_an_amount_no_invoice_holds_is_a_422_not_a_crash(handler, aws, invoice_queue, price):
    """Found by fuzzing: a huge price once crashed the price rounding with a 5xx."""
    body = {"bean": "ProductTemplate", "event": "after_save",
            "data": {"id": "p-1", "name": "Widget", "discount_price": price}}
    status, answer = call(handler, api_event("POST", "/crm/products", body=body, query={"token": TOKEN}))
    assert status == 422 and "discount_price" in json.dumps(answer)
    assert queued(aws, invoice_queue) == []
