"""Webhook answer (payment-webhooks issue): how long ``payment_webhook``'s handler takes to answer a
signed 50-event Xero delivery, in process, ÷ the work no receiver can avoid: the HMAC over the
body, the JSON encoding of the queue message (built beforehand, so no parsing is charged to it),
and one send to a queue. Target: p99 ratio at most 1.5.

Both sides send to the same SQS stand-in of a fixed, stated cost (SEND_COST_SECONDS, spun rather
than slept so that the scheduler's wake-up jitter is not in it) instead of moto, whose ~50 ms
send dominated both sides and pulled any ratio towards 1 whatever our code cost. The stand-in
keeps every message, so the run proves the handler really queued.

Both sides run interleaved (one handler call, then one baseline), after a warm-up that pays for
imports, so a busy moment weighs on both; the loop is bounded by a count and a time."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
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
TARGET_P99 = 1.5
SEND_COST_SECONDS = 0.001
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


class FixedCostSqs:
    """An SQS client's send_message that costs SEND_COST_SECONDS of CPU and keeps the message."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str, **_: Any) -> dict[str, str]:  # noqa: N803
        until = time.perf_counter() + SEND_COST_SECONDS
        while time.perf_counter() < until:
            pass
        self.sent.append(MessageBody)
        return {"MessageId": str(len(self.sent))}


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    environment = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1",
                   "AWS_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "1", "XERO_WEBHOOK_KEY": WEBHOOK_KEY,
                   "POWERTOOLS_LOG_LEVEL": "WARNING"}
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/webhook-bench"
    with _environment({**environment, "WEBHOOK_QUEUE_URL": queue_url}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from shared import wiring
        from shared.xero.webhooks import webhook_signature
        from tests.support.events import FakeLambdaContext, api_event

        wiring.reset()
        sqs = FixedCostSqs()
        wiring.webhook_queue()._client = sqs  # the handler's (cached) queue sends to the stand-in
        from functions.payment_webhook.app import lambda_handler

        body = delivery()
        signature = webhook_signature(body, WEBHOOK_KEY)
        parsed = json.loads(body)
        message = {"job_id": "xero-webhook-0", "kind": "xero.webhook",
                   "document": {"tenant_id": parsed["events"][0]["tenantId"], "events": parsed["events"],
                                "first_event_sequence": 1, "last_event_sequence": EVENTS}}

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
            expected = base64.b64encode(hmac.new(WEBHOOK_KEY.encode(), body, hashlib.sha256).digest())
            if not hmac.compare_digest(expected, signature.encode()):
                raise RuntimeError("the baseline's signature does not verify")
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message, separators=(",", ":")))
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
        handler_messages = len(sqs.sent) - len(baseline_samples) - WARM_UP
        wiring.reset()
    if handler_messages < len(handler_samples):
        raise RuntimeError("the handler did not queue every delivery: the benchmark did not measure a real send")
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
        Row("14", f"webhook answer p99: signed {EVENTS}-event delivery ÷ HMAC + JSON encode of the message + "
                  f"1 send (both to an SQS stand-in of fixed {SEND_COST_SECONDS * 1000:g} ms)",
            f"{ms['handler_p99']:.1f} ms ÷ {ms['baseline_p99']:.1f} ms ({result['rounds']} deliveries)",
            p99_ratio, f"≤ {TARGET_P99:g}", p99_ratio <= TARGET_P99),
        Row("14", "webhook answer p50 (same run)",
            f"{ms['handler_p50']:.1f} ms ÷ {ms['baseline_p50']:.1f} ms", p50_ratio, "for information", None),
    ]


if __name__ == "__main__":
    from bench.report import render

    print(render(run()))
