"""payment_webhook's receiver and worker in-process under moto: Xero deliveries in, one queue
message per organisation, redeliveries dropped, one pending refresh per changed resource."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid

import pytest

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from tests.conftest import OUR_FIXTURES
from tests.support.events import FakeLambdaContext, api_event, sqs_event

KEY = LOCAL_SECRET_DEFAULTS["XERO_WEBHOOK_KEY"]
TENANT = "b1e2c3d4-aaaa-4bbb-8ccc-123456789abc"
OTHER_TENANT = "0f0e0d0c-1111-4222-8333-444455556666"


def sign(body: bytes, key: str = KEY) -> str:
    # Computed here, not with the code under test.
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def fixture_bytes(name: str) -> bytes:
    return (OUR_FIXTURES / "xero" / name).read_bytes()


def xero_event(resource_id: str | None = None, date: str = "2026-11-26T11:20:05.123", *,
               tenant: str = TENANT, category: str = "INVOICE", event_type: str = "UPDATE") -> dict:
    resource_id = resource_id or str(uuid.uuid4())
    return {"resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": date, "eventType": event_type, "eventCategory": category, "tenantId": tenant,
            "tenantType": "ORGANISATION"}


def delivery(events: list[dict], sequence: int = 1) -> bytes:
    return json.dumps({"events": events, "firstEventSequence": sequence,
                       "lastEventSequence": sequence + max(len(events) - 1, 0),
                       "entropy": uuid.uuid4().hex[:20].upper()}, separators=(",", ":")).encode()


@pytest.fixture
def hook(aws, monkeypatch):
    """The receiver and the recording half of the worker. The refresh half (Xero and Sugar
    calls) is switched off here: tests/integration/test_payment_worker.py covers it."""
    from functions.payment_webhook import app

    queue = aws["sqs"].create_queue(QueueName="webhook")["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue)
    monkeypatch.setattr(app, "refresh_tenants", lambda items, result, *, store: None)
    wiring.reset()
    yield {**aws, "webhook_queue": queue, "handler": app.lambda_handler}
    wiring.reset()


def post(hook, body: bytes, signature: str | None, *, header_name: str = "x-xero-signature",
         base64_body: bool = False, content_type: str = "application/json") -> dict:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers[header_name] = signature
    event = api_event("POST", "/xero/webhooks", body=body, headers=headers, base64_body=base64_body)
    return hook["handler"](event, FakeLambdaContext())


def queued(hook) -> list[dict]:
    messages = []
    while True:
        answer = hook["sqs"].receive_message(QueueUrl=hook["webhook_queue"], MaxNumberOfMessages=10,
                                             VisibilityTimeout=60)
        if not answer.get("Messages"):
            return messages
        messages.extend(json.loads(m["Body"]) for m in answer["Messages"])


def items(hook) -> list[dict]:
    return hook["dynamodb"].Table("sync-test").scan()["Items"]


def work(hook, bodies: list[dict]) -> dict:
    return hook["handler"](sqs_event(bodies), FakeLambdaContext())


def assert_empty_answer(answer: dict, status: int) -> None:
    assert answer["statusCode"] == status
    assert answer["body"] == ""
    headers = {k.lower() for k in (answer.get("headers") or {})} | {
        k.lower() for k in (answer.get("multiValueHeaders") or {})}
    assert "set-cookie" not in headers


# ---- receiver -------------------------------------------------------------------------------
def test_signed_fixture_delivery_is_queued_and_answered_with_an_empty_200(hook):
    body = fixture_bytes("webhook_invoice_update.json")
    assert_empty_answer(post(hook, body, sign(body)), 200)
    (message,) = queued(hook)
    assert message["kind"] == "xero.webhook"
    assert message["document"]["tenant_id"] == TENANT
    assert message["document"]["events"] == json.loads(body)["events"]
    assert items(hook) == []  # nothing written in the request: dedupe is the worker's


def test_wrong_or_missing_signature_is_an_empty_401_and_nothing_else(hook):
    body = fixture_bytes("webhook_invoice_update.json")
    for signature in (None, "", sign(body, "another-key"), sign(body + b" "), sign(body)[:-2]):
        assert_empty_answer(post(hook, body, signature), 401)
    assert queued(hook) == [] and items(hook) == []


@pytest.mark.parametrize("header_name", ["x-xero-signature", "X-Xero-Signature", "X-XERO-SIGNATURE"])
def test_signature_header_name_is_case_insensitive(hook, header_name):
    body = delivery([xero_event()])
    assert_empty_answer(post(hook, body, sign(body), header_name=header_name), 200)
    assert len(queued(hook)) == 1


def test_signature_only_in_multi_value_headers_is_found(hook):
    body = delivery([xero_event()])
    event = api_event("POST", "/xero/webhooks", body=body)
    event["multiValueHeaders"]["X-Xero-Signature"] = [sign(body)]
    assert_empty_answer(hook["handler"](event, FakeLambdaContext()), 200)


def test_base64_encoded_body_is_verified_on_the_decoded_bytes(hook):
    body = delivery([xero_event()]) + b"\n"  # bytes as sent, trailing newline included
    assert_empty_answer(post(hook, body, sign(body), base64_body=True), 200)
    assert_empty_answer(post(hook, body, sign(base64.b64encode(body)), base64_body=True), 401)
    assert len(queued(hook)) == 1


def test_intent_to_receive_series_gets_the_right_answer_every_time(hook):
    intent = fixture_bytes("webhook_intent_to_receive.json")
    series = [(intent, sign(intent), 200), (intent, sign(intent, "wrong-key"), 401),
              (intent, None, 401), (intent, sign(intent.strip()), 401)]
    for n in range(6):
        other = json.dumps({"events": [], "firstEventSequence": 0, "lastEventSequence": 0,
                            "entropy": f"ENTROPY{n:013d}"}).encode()
        series += [(other, sign(other), 200), (other, sign(intent), 401)]
    random.Random(7).shuffle(series)
    for body, signature, expected in series:
        assert_empty_answer(post(hook, body, signature), expected)
    assert queued(hook) == [] and items(hook) == []


def test_a_thousand_bad_signatures_process_nothing(hook):
    body = delivery([xero_event() for _ in range(5)])
    forged = [None, "", sign(body, "guess"), sign(body + b"x"), base64.b64encode(b"\0" * 32).decode()]
    started = time.perf_counter()
    for n in range(1000):
        answer = post(hook, body, forged[n % len(forged)])
        assert answer["statusCode"] == 401 and answer["body"] == ""
    elapsed = time.perf_counter() - started
    assert queued(hook) == [] and items(hook) == []
    assert elapsed < 30, f"1,000 refusals took {elapsed:.1f} s"


def test_webhook_needs_no_crm_credential_and_ignores_the_content_type(hook):
    body = delivery([xero_event()])
    assert_empty_answer(post(hook, body, sign(body), content_type="text/plain"), 200)
    assert_empty_answer(post(hook, body, sign(body), content_type="application/x-www-form-urlencoded"), 200)
    assert len(queued(hook)) == 2


def test_signed_but_unreadable_body_is_acknowledged_and_queues_nothing(hook):
    for body in (b"not json at all", b'{"events": "nope"}', b""):
        assert_empty_answer(post(hook, body, sign(body)), 200)
    assert queued(hook) == []


def test_fifty_events_cost_one_send_and_each_organisation_gets_its_own_message(hook, monkeypatch):
    from shared.queue import SqsQueue

    sends = []
    real_send = SqsQueue.send
    monkeypatch.setattr(SqsQueue, "send",
                        lambda self, body, **kw: (sends.append(body), real_send(self, body, **kw)))
    body = delivery([xero_event() for _ in range(50)])
    started = time.perf_counter()
    assert_empty_answer(post(hook, body, sign(body)), 200)
    assert time.perf_counter() - started < 1.0  # Xero's limit is 5 s; this is far inside it
    assert len(sends) == 1 and len(sends[0]["document"]["events"]) == 50

    sends.clear()
    mixed = delivery([xero_event(tenant=TENANT), xero_event(tenant=OTHER_TENANT), xero_event(tenant=TENANT)])
    assert_empty_answer(post(hook, mixed, sign(mixed)), 200)
    assert sorted((s["document"]["tenant_id"], len(s["document"]["events"])) for s in sends) == [
        (OTHER_TENANT, 1), (TENANT, 2)]


def test_events_missing_needed_fields_are_left_out_and_the_rest_are_queued(hook):
    good = xero_event()
    body = delivery([good, {**xero_event(), "resourceId": None}, {"eventCategory": "INVOICE"}])
    assert_empty_answer(post(hook, body, sign(body)), 200)
    (message,) = queued(hook)
    assert message["document"]["events"] == [good]


def test_when_the_queue_refuses_xero_is_told_to_deliver_again(hook, monkeypatch):
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", hook["webhook_queue"] + "-missing")
    wiring.reset()
    body = delivery([xero_event()])
    answer = post(hook, body, sign(body))
    assert answer["statusCode"] == 503 and answer["body"] == ""


# ---- worker ---------------------------------------------------------------------------------
def pending_items(hook) -> dict[str, dict]:
    return {i["SK"]: i for i in items(hook) if i["SK"].startswith("PENDING#")}


def event_markers(hook) -> list[dict]:
    return [i for i in items(hook) if i["SK"] == "EVT"]


def test_worker_records_a_pending_refresh_and_drops_the_redelivery(hook):
    body = fixture_bytes("webhook_invoice_update.json")
    post(hook, body, sign(body))
    post(hook, body, sign(body))  # Xero did not see our first 200 and delivered again
    messages = queued(hook)
    assert len(messages) == 2

    assert work(hook, messages[:1]) == {"batchItemFailures": []}
    assert work(hook, messages[1:]) == {"batchItemFailures": []}
    resource = json.loads(body)["events"][0]["resourceId"]
    pending = pending_items(hook)
    assert list(pending) == [f"PENDING#INVOICE#{resource}"]
    item = pending[f"PENDING#INVOICE#{resource}"]
    assert item["PK"] == f"T#{TENANT}" and item["status"] == "pending"
    assert item["event_date_utc"] == "2026-11-26T11:20:05.123000Z"
    (marker,) = event_markers(hook)
    assert marker["PK"] == f"EVT#{TENANT}#{resource}#2026-11-26T11:20:05.123000Z"
    assert int(marker["expires_at"]) > time.time() + 23 * 3600

    # Even once the pending item is gone (a refresher may delete it), a redelivery asks for nothing.
    hook["dynamodb"].Table("sync-test").delete_item(Key={"PK": item["PK"], "SK": item["SK"]})
    post(hook, body, sign(body))
    assert work(hook, queued(hook)) == {"batchItemFailures": []}
    assert pending_items(hook) == {}


def test_the_same_event_twice_in_one_batch_is_recorded_once(hook):
    event = xero_event()
    body = {"job_id": "d", "kind": "xero.webhook", "document": {"tenant_id": TENANT, "events": [event]}}
    assert work(hook, [body, body]) == {"batchItemFailures": []}
    assert len(event_markers(hook)) == 1 and len(pending_items(hook)) == 1


def test_an_older_event_never_overwrites_a_newer_pending_item(hook):
    resource = str(uuid.uuid4())
    newer = xero_event(resource, "2026-11-26T11:20:07.5")
    older = xero_event(resource, "2026-11-26T11:20:05.123", event_type="CREATE")

    def message(*events):
        return {"job_id": "d", "kind": "xero.webhook",
                "document": {"tenant_id": TENANT, "events": list(events)}}

    assert work(hook, [message(newer)]) == {"batchItemFailures": []}
    assert work(hook, [message(older)]) == {"batchItemFailures": []}  # arrives late
    (item,) = pending_items(hook).values()
    assert item["event_date_utc"] == "2026-11-26T11:20:07.500000Z" and item["event_type"] == "UPDATE"
    assert len(event_markers(hook)) == 2  # the older one is seen too: a redelivery of it is dropped

    # Out of order inside one batch: the newest wins whatever the order.
    other = str(uuid.uuid4())
    dates = ("2026-11-26T11:21:00", "2026-11-26T11:23:00", "2026-11-26T11:22:00")
    events = [xero_event(other, d) for d in dates]
    assert work(hook, [message(*events[:1]), message(*events[1:])]) == {"batchItemFailures": []}
    assert pending_items(hook)[f"PENDING#INVOICE#{other}"]["event_date_utc"] == "2026-11-26T11:23:00.000000Z"

    # A later refresher marks the item done and keeps the date; a late older event then asks for
    # nothing, while a newer one asks again.
    table = hook["dynamodb"].Table("sync-test")
    key = {"PK": f"T#{TENANT}", "SK": f"PENDING#INVOICE#{resource}"}
    table.update_item(Key=key, UpdateExpression="SET #s = :r", ExpressionAttributeNames={"#s": "status"},
                      ExpressionAttributeValues={":r": "refreshed"})
    work(hook, [message(xero_event(resource, "2026-11-26T11:20:06"))])
    assert table.get_item(Key=key)["Item"]["status"] == "refreshed"
    # The very same date (a redelivery whose marker has expired) does not reopen it either.
    from shared.state.webhook_events import WebhookEventTable

    store = WebhookEventTable("sync-test")
    assert store.record_pending(tenant_id=TENANT, category="INVOICE", resource_id=resource,
                                event_date_utc="2026-11-26T11:20:07.500000Z", event_type="UPDATE",
                                resource_url="u") is False
    assert table.get_item(Key=key)["Item"]["status"] == "refreshed"
    work(hook, [message(xero_event(resource, "2026-11-26T11:30:00"))])
    item = table.get_item(Key=key)["Item"]
    assert item["status"] == "pending" and item["event_date_utc"] == "2026-11-26T11:30:00.000000Z"


def test_a_failed_pending_write_retries_only_its_message_and_marks_nothing_for_it(hook, monkeypatch):
    from shared.state.webhook_events import WebhookEventTable

    failing = str(uuid.uuid4())
    real = WebhookEventTable.record_pending

    def flaky(self, **kwargs):
        if kwargs["resource_id"] == failing:
            raise RuntimeError("throttled")
        return real(self, **kwargs)

    monkeypatch.setattr(WebhookEventTable, "record_pending", flaky)
    ok_body = {"job_id": "a", "kind": "xero.webhook",
               "document": {"tenant_id": TENANT, "events": [xero_event()]}}
    bad_body = {"job_id": "b", "kind": "xero.webhook",
                "document": {"tenant_id": TENANT, "events": [xero_event(failing)]}}
    batch = sqs_event([ok_body, bad_body])
    answer = hook["handler"](batch, FakeLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": batch["Records"][1]["messageId"]}]}
    assert len(event_markers(hook)) == 1 and len(pending_items(hook)) == 1

    monkeypatch.setattr(WebhookEventTable, "record_pending", real)
    assert work(hook, [bad_body]) == {"batchItemFailures": []}
    assert len(event_markers(hook)) == 2 and len(pending_items(hook)) == 2


def test_a_message_that_cannot_be_read_goes_back_to_the_queue(hook):
    batch = sqs_event([{"job_id": "x", "kind": "xero.webhook", "document": {"events": [xero_event()]}}])
    batch["Records"].append({**batch["Records"][0], "messageId": "broken", "body": "{not json"})
    answer = hook["handler"](batch, FakeLambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    assert len(pending_items(hook)) == 1


def test_end_to_end_receiver_to_worker_with_mixed_redeliveries(hook):
    first = [xero_event() for _ in range(30)]
    second = first[10:20] + [xero_event() for _ in range(5)]  # 10 redelivered, 5 new
    for events in (first, second):
        body = delivery(events)
        assert_empty_answer(post(hook, body, sign(body)), 200)
    messages = queued(hook)
    assert len(messages) == 2
    assert work(hook, messages) == {"batchItemFailures": []}
    assert len(pending_items(hook)) == 35 and len(event_markers(hook)) == 35


def test_a_deployed_stack_without_a_webhook_key_accepts_nothing(hook, monkeypatch):
    from shared import secrets

    def missing(name):
        raise secrets.MissingSecret(f"{name} is empty")

    monkeypatch.setattr("functions.payment_webhook.app.get_secret", missing)
    body = delivery([xero_event()])
    for signature in (sign(body), sign(body, "")):
        answer = post(hook, body, signature)
        assert answer["statusCode"] == 503 and answer["body"] == ""
    assert queued(hook) == []
