"""No input ends in a 5xx and nothing is lost to size (invoice_push in-process under moto).

- JSON nested deeper than any CRM record: 400 with the JSON error, nothing stored or queued.
- A body just under the 256 KiB limit full of non-ASCII text: stored and queued as compact UTF-8
  (with ``\\u`` escapes it would be three times larger and over DynamoDB's 400 KB item limit).
- A document larger than an item: to the payload bucket, the item pointing at it, the worker
  reading it back; without a bucket, a 413 before anything is stored.
"""

from __future__ import annotations

import json

import pytest

from shared import wiring
from shared.api.http import MAX_JSON_DEPTH, json_depth_exceeds
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.state.payloads import ITEM_PAYLOAD_LIMIT
from tests.integration.test_invoice_push_products import call, queued
from tests.support.events import FakeLambdaContext, api_event, sqs_event

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
# Accented, Chinese and Thai text: 2 or 3 bytes a character in UTF-8, 6 as a \u escape.
TEXT = "Entretien préventif de l'ascenseur, pièces détachées 电梯维修保养服务 บริการบำรุงรักษาลิฟต์ "


def big_invoice(lines: int, description_chars: int) -> dict:
    description = (TEXT * (description_chars // len(TEXT) + 1))[:description_chars]
    return {"kind": "sales", "crm_module": "Quotes", "crm_id": "q-big-1",
            "contact": {"crm_id": "acc-1"},
            "lines": [{"description": description, "quantity": "1", "unit_amount": "10.00", "tax_type": "OUTPUT"}
                      for _ in range(lines)]}


@pytest.fixture
def handler(invoice_push_handler):
    return invoice_push_handler


def stored_jobs(aws) -> list[dict]:
    return [i for i in aws["dynamodb"].Table("sync-test").scan()["Items"] if str(i["PK"]).startswith("JOB#")]


@pytest.mark.parametrize("path", ["/crm/invoices", "/crm/contacts", "/crm/quotes", "/crm/products"])
def test_deep_nesting_is_a_400_not_a_502(handler, aws, invoice_queue, path):
    body = "[" * 1100 + "]" * 1100  # 2.2 KB: Python's parser would recurse 1,100 levels
    answer = handler(api_event("POST", path, body=body, query={"token": TOKEN}), FakeLambdaContext())
    assert answer["statusCode"] == 400, answer
    error = json.loads(answer["body"])
    assert error["error"] == "too_deeply_nested" and error["details"] == []
    assert queued(aws, invoice_queue) == [] and stored_jobs(aws) == []


def test_the_depth_check_skips_strings_and_lets_real_documents_through():
    assert json_depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not json_depth_exceeds(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    quoted = json.dumps({"description": "[" * 5000 + '\\"{' * 100}).encode()
    assert not json_depth_exceeds(quoted)
    assert not json_depth_exceeds(json.dumps(big_invoice(500, 20)).encode())


def test_a_body_near_the_limit_in_non_ascii_text_is_stored_compact_and_queued(handler, aws, invoice_queue):
    document = big_invoice(140, 1000)
    raw = json.dumps(document, ensure_ascii=False).encode()
    assert 240_000 < len(raw) < 256 * 1024  # under the API's limit
    assert len(json.dumps(document).encode()) > 400 * 1024  # what \u escapes made of it
    status, accepted = call(handler, api_event("POST", "/crm/invoices", body=raw.decode(), query={"token": TOKEN}))
    assert status == 202, accepted
    (item,) = stored_jobs(aws)
    assert "\\u" not in item["payload"] and TEXT[:20] in item["payload"]
    stored = json.loads(item["payload"])  # the validated document: nothing lost on the way
    assert [line["description"] for line in stored["lines"]] == [line["description"] for line in document["lines"]]
    (message,) = queued(aws, invoice_queue)
    # Either in the message or (over SQS's 256 KiB once defaults are filled in) read back from the job.
    assert [line["description"] for line in worked_document(message)["lines"]] == \
        [line["description"] for line in document["lines"]]


def worked_document(message: dict) -> dict:
    """The document the worker gets for this queue message (run_batch as the handlers call it)."""
    from shared.api.sqs import run_batch
    from shared.usecases.work import BatchResult

    seen = []

    def work(items):
        seen.extend(items)
        return BatchResult()

    assert run_batch(sqs_event([message]), FakeLambdaContext(), work) == {"batchItemFailures": []}
    (item,) = seen
    assert item.job_id == message["job_id"]
    return item.document


def test_a_document_larger_than_an_item_goes_to_the_payload_bucket(handler, aws, invoice_queue, monkeypatch):
    import boto3

    boto3.client("s3").create_bucket(Bucket="payloads-test",
                                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.setenv("PAYLOAD_BUCKET", "payloads-test")
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))  # an operator allowing bigger documents
    wiring.reset()
    document = big_invoice(450, 1000)
    status, accepted = call(handler, api_event("POST", "/crm/invoices", body=json.dumps(document, ensure_ascii=False),
                                               query={"token": TOKEN}))
    assert status == 202, accepted
    (item,) = stored_jobs(aws)
    assert "payload" not in item and item["payload_s3_key"] == f"payloads/{accepted['job_id']}.json"
    stored = boto3.client("s3").get_object(Bucket="payloads-test", Key=item["payload_s3_key"])["Body"].read()
    assert len(stored) > ITEM_PAYLOAD_LIMIT
    assert wiring.job_store().get_job_payload(accepted["job_id"]) == json.loads(stored)
    assert json.loads(stored)["lines"][449]["description"] == document["lines"][449]["description"]
    # Over SQS's 256 KiB too: the message carries the job id, the worker reads the document back.
    (message,) = queued(aws, invoice_queue)
    assert "document" not in message and message["document_stored"] is True
    assert worked_document(message) == json.loads(stored) and message["job_id"] == accepted["job_id"]


def test_without_a_bucket_a_document_that_fits_no_item_is_a_413_up_front(handler, aws, invoice_queue, monkeypatch):
    monkeypatch.delenv("PAYLOAD_BUCKET", raising=False)
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))
    wiring.reset()
    answer = handler(api_event("POST", "/crm/invoices", body=json.dumps(big_invoice(450, 1000), ensure_ascii=False),
                               query={"token": TOKEN}), FakeLambdaContext())
    assert answer["statusCode"] == 413
    assert json.loads(answer["body"])["error"] == "payload_too_large"
    assert queued(aws, invoice_queue) == [] and stored_jobs(aws) == []
