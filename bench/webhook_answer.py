"""Webhook answer (payment-webhooks issue): how long ``payment_webhook``'s handler takes to answer a
signed 50-event Xero delivery, in process, with the webhook queue on moto; ÷ the work no receiver
can avoid (checking the signature and one SQS send of the body to the same moto), measured in the
same run. Target: p99 ratio at most 3.

Both sides run interleaved (one handler call, then one baseline), after a warm-up that pays for
imports and clients, so a busy moment weighs on both; the loop is bounded by a count and a time."""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.report import Row

EVENTS = 50
ROUNDS = 400
WARM_UP = 20
TIME_LIMIT_SECONDS = 120
TARGET_P99 = 3.0
WEBHOOK_KEY = "bench-webhook-key"


def delivery(events: int = EVENTS) -> bytes:
    """A Xero delivery of ``events`` INVOICE updates for one tenant, as Xero formats it."""
    tenant = str(uuid.uuid4())
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    items = []
    for index in range(events):
        invoice = str(uuid.uuid4())
        items.append({
            "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{invoice}", "resourceId": invoice,
            "eventDateUtc": (start + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            "eventType": "UPDATE", "eventCategory": "INVOICE", "tenantId": tenant, "tenantType": "ORGANISATION"})
    body = {"events": items, "firstEventSequence": 1, "lastEventSequence": events,
            "entropy": uuid.uuid4().hex.upper()[:20]}
    return json.dumps(body, separators=(",", ":")).encode()


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "SECRETS_ARN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    from moto import mock_aws

    environment = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1",
                   "AWS_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "1", "XERO_WEBHOOK_KEY": WEBHOOK_KEY,
                   "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with _environment(environment), mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import boto3

        from shared import wiring
        from shared.xero.webhooks import signature_is_valid, webhook_signature
        from tests.support.events import FakeLambdaContext, api_event

        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="webhook-bench")["QueueUrl"]
        os.environ["WEBHOOK_QUEUE_URL"] = queue_url
        wiring.reset()
        from functions.payment_webhook.app import lambda_handler

        body = delivery()
        signature = webhook_signature(body, WEBHOOK_KEY)
        text = body.decode()

        def handler_once() -> float:
            event = api_event("POST", "/xero/webhooks", body=body, headers={"x-xero-signature": signature})
            started = time.perf_counter()
            answer = lambda_handler(event, FakeLambdaContext())
            elapsed = time.perf_counter() - started
            if answer["statusCode"] != 200:
                raise RuntimeError(f"the handler answered {answer['statusCode']}: {answer.get('body')!r}")
            return elapsed

        def baseline_once() -> float:
            started = time.perf_counter()
            if not signature_is_valid(body, signature, WEBHOOK_KEY):
                raise RuntimeError("the baseline's signature does not verify")
            sqs.send_message(QueueUrl=queue_url, MessageBody=text)
            return time.perf_counter() - started

        handler_samples: list[float] = []
        baseline_samples: list[float] = []
        deadline = time.monotonic() + TIME_LIMIT_SECONDS
        # Metric lines (EMF) printed per call belong to CloudWatch, not to this report.
        with contextlib.redirect_stdout(io.StringIO()):
            for _ in range(WARM_UP):
                handler_once()
                baseline_once()
            for _ in range(rounds):
                if time.monotonic() > deadline:
                    break
                handler_samples.append(handler_once())
                baseline_samples.append(baseline_once())
        queued = int(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
                     ["Attributes"]["ApproximateNumberOfMessages"])
        wiring.reset()
    if queued == 0:
        raise RuntimeError("nothing reached the queue: the benchmark did not measure a real send")
    return {
        "rounds": len(handler_samples),
        "handler_p50": statistics.median(handler_samples), "handler_p99": _percentile(handler_samples, 0.99),
        "baseline_p50": statistics.median(baseline_samples), "baseline_p99": _percentile(baseline_samples, 0.99),
    }


def run() -> list[Row]:
    result = measure()
    p50_ratio = result["handler_p50"] / result["baseline_p50"]
    p99_ratio = result["handler_p99"] / result["baseline_p99"]
    ms = {key: value * 1000 for key, value in result.items() if key != "rounds"}
    return [
        Row("6", f"webhook answer p99: signed {EVENTS}-event delivery ÷ signature check + 1 SQS send",
            f"{ms['handler_p99']:.1f} ms ÷ {ms['baseline_p99']:.1f} ms ({result['rounds']} deliveries)",
            p99_ratio, f"≤ {TARGET_P99:g}", p99_ratio <= TARGET_P99),
        Row("6", "webhook answer p50 (same run)",
            f"{ms['handler_p50']:.1f} ms ÷ {ms['baseline_p50']:.1f} ms", p50_ratio, "for information", None),
    ]
