"""Cold start, measured end to end: a fresh interpreter imports ``functions.contact_sync.app``,
serves its first API event (a Sugar callout: the secret read through Powertools Parameters, the
job's conditional write to DynamoDB, the SQS send) and then, in the same interpreter, its first
SQS batch (that job: the token set and connection read from DynamoDB, the shared rate gate, the
Xero calls to the emulator, the job's state writes), against a moto server and a Xero emulator
both running in this (the parent) process; ÷ a minimal handler in a fresh interpreter that
imports plain boto3 and requests and makes exactly the same AWS calls and the same Xero HTTP
calls, with the same parameters and in the same order (recorded from the handler's run), against
the same moto and the same emulator, both reset and seeded alike before each side. So both sides
pay for boto3, requests, their clients and the same round trips, and the ratio is what our code
and its libraries add. Target at most 1.3.

Both children get the libraries' settings the template gives every function (Globals: Powertools',
``PYDANTIC_DISABLE_PLUGINS``), tracing off as outside Lambda.

The Xero connection is onboarded before each side as the onboarding callback leaves it
(``shared.usecases.onboarding``): a token set (status connected, access token valid for 30
minutes) and the connection item naming the emulator's organisation.

Robust against a busy machine: one discarded warm-up round, then rounds that run both sides one
after the other against freshly reset stand-ins, each ratio the median of the per-round ratios."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.report import Row

ROUNDS = 7
TARGET = 1.3
REPO = Path(__file__).resolve().parents[1]
SECRET_NAME = "sugar-xero-cold-start"
TOKEN = "cold-start-token"
CONNECTION_ID = "default"

# Values the recorder writes and the baseline reads back as the same Python types (DynamoDB
# numbers are Decimal, string sets are sets): a tagged JSON object per value.
_CODEC = r"""
import base64, decimal
def encode(value):
    if isinstance(value, decimal.Decimal): return {"__decimal__": str(value)}
    if isinstance(value, (set, frozenset)): return {"__set__": sorted(value, key=str)}
    if isinstance(value, (bytes, bytearray)): return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    raise TypeError(type(value).__name__)
def decode(value):
    if "__decimal__" in value: return decimal.Decimal(value["__decimal__"])
    if "__set__" in value: return set(value["__set__"])
    if "__bytes__" in value: return base64.b64decode(value["__bytes__"])
    return value
"""

# The handler side: everything after the interpreter is up, from the first import to the answer
# to the SQS batch (the moment between the two events, when Lambda would poll the queue, is not
# counted). Its AWS calls and Xero HTTP calls are recorded, in order, for the baseline.
_HANDLER = _CODEC + r'''
import json, sys, time
event = json.loads(open(sys.argv[1]).read())
class Context:
    function_name = "contact-sync"; function_version = "$LATEST"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:contact-sync"
    aws_request_id = "cold-start"; log_group_name = "/aws/lambda/contact-sync"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 30000
started = time.perf_counter()
from functions.contact_sync.app import lambda_handler
import botocore.client
import requests.sessions  # the handler needs both anyway (for its first events): counted either way
calls = []
send = requests.sessions.Session.send
def recorded_http(self, request, **kwargs):
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    calls.append(["http", request.method, request.url, dict(request.headers), body])
    return send(self, request, **kwargs)
requests.sessions.Session.send = recorded_http
original = botocore.client.BaseClient._make_api_call
def recorded(self, operation, params):
    calls.append(["aws", self.meta.service_model.service_name, operation, params])
    return original(self, operation, params)
botocore.client.BaseClient._make_api_call = recorded
api_answer = lambda_handler(event, Context())
api_seconds = time.perf_counter() - started
# Lambda receives the message the API event sent and invokes again with it: done here with the
# handler's own SQS client, neither counted nor recorded (the marker tells the baseline to do the same).
from shared import wiring
queue = wiring.contact_queue()
received = original(queue._client, "ReceiveMessage", {"QueueUrl": queue.queue_url, "MaxNumberOfMessages": 10,
                                                      "AttributeNames": ["All"], "WaitTimeSeconds": 0})
calls.append(["lambda-receive", queue.queue_url])
records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:contact-cold-start",
            "awsRegion": "eu-west-1"} for m in received.get("Messages", [])]
resumed = time.perf_counter()
sqs_answer = lambda_handler({"Records": records}, Context())
sqs_seconds = time.perf_counter() - resumed
print("RESULT " + json.dumps({"seconds": api_seconds + sqs_seconds, "api_seconds": api_seconds,
                              "sqs_seconds": sqs_seconds, "status": api_answer["statusCode"],
                              "batch_failures": sqs_answer.get("batchItemFailures"), "calls": calls},
                             default=encode))
'''

# The baseline: plain boto3 and requests, the same calls in the same order with the same parameters.
_BASELINE = _CODEC + r'''
import json, sys, time
calls = json.loads(open(sys.argv[1]).read(), object_hook=decode)
started = time.perf_counter()
import boto3
import requests
from botocore import xform_name
from botocore.exceptions import ClientError
clients = {}
session = requests.Session()
paused = 0.0
def client_for(service):
    # the handler writes DynamoDB through boto3's resource layer (plain Python values): so does this
    if service not in clients:
        clients[service] = boto3.resource(service).meta.client if service == "dynamodb" else boto3.client(service)
    return clients[service]
for call in calls:
    if call[0] == "lambda-receive":  # the handler's untimed pause: Lambda receives the batch
        pause = time.perf_counter()
        api_seconds = pause - started
        client_for("sqs").receive_message(QueueUrl=call[1], MaxNumberOfMessages=10, AttributeNames=["All"],
                                          WaitTimeSeconds=0)
        paused += time.perf_counter() - pause
        continue
    if call[0] == "http":
        _, method, url, headers, body = call
        session.request(method, url, headers=headers, data=body.encode() if isinstance(body, str) else body,
                        timeout=30)
        continue
    _, service, operation, params = call
    try:
        getattr(client_for(service), xform_name(operation))(**params)
    except ClientError:
        pass  # a conditional write refused, as it was for the handler
print("RESULT " + json.dumps({"seconds": time.perf_counter() - started - paused, "api_seconds": api_seconds}))
'''


def _child(script: str, argument: Path, environment: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(argument)], check=False, cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=environment)
    if out.returncode:
        raise RuntimeError(f"a cold-start child failed: {out.stderr[-1500:]}")
    line = next(line for line in reversed(out.stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _fresh_resources(endpoint: str, xero: Any) -> dict[str, str]:
    """Reset moto and the emulator, and create what the handler touches: the sync table (with the
    onboarded Xero connection in it), its queue, its secret."""
    import boto3

    from shared.state.dynamo import SyncStateTable
    from tests.conftest import create_sync_table

    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    xero.app.reset()
    kwargs = {"endpoint_url": endpoint, "region_name": "eu-west-1", "aws_access_key_id": "bench",
              "aws_secret_access_key": "bench"}
    create_sync_table(boto3.client("dynamodb", **kwargs), "sync-cold-start")
    queue = boto3.client("sqs", **kwargs).create_queue(QueueName="contact-cold-start")["QueueUrl"]
    boto3.client("secretsmanager", **kwargs).create_secret(Name=SECRET_NAME, SecretString=json.dumps(
        {"CRM_TOKEN": TOKEN, "CRM_SIGNING_SECRET": "cold-start-signing",
         "XERO_CLIENT_ID": "cold-start-client", "XERO_CLIENT_SECRET": "cold-start-client-secret"}))
    # What the onboarding callback leaves behind (shared.usecases.onboarding.finish).
    store = SyncStateTable("sync-cold-start", resource=boto3.resource("dynamodb", **kwargs))
    now = int(time.time())
    store.put_token(CONNECTION_ID, {"access_token": "cold-start-access", "refresh_token": "cold-start-refresh",
                                    "access_expires_at": now + 1800, "scope": "accounting.transactions",
                                    "status": "connected", "lease_until": 0, "connected_at": now},
                    expected_version=None)
    tenant = xero.config.tenant_id
    store.put_connection(CONNECTION_ID, tenant_id=tenant, tenant_name="Cold Start Ltd", tenant_type="ORGANISATION",
                         tenant_count=1, tenants=[{"tenant_id": tenant, "tenant_name": "Cold Start Ltd",
                                                   "tenant_type": "ORGANISATION"}])
    return {"SYNC_TABLE": "sync-cold-start", "CONTACT_QUEUE_URL": queue, "SECRETS_ARN": SECRET_NAME,
            "XERO_API_BASE_URL": xero.url, "XERO_IDENTITY_URL": f"{xero.url}/connect/token"}


def _library_settings() -> dict[str, str]:
    """The libraries' settings every function gets from the template (Globals), as deployed."""
    from sugar_xero.local.template import default_template_path, load_template

    variables = load_template(default_template_path())["Globals"]["Function"]["Environment"]["Variables"]
    return {name: str(value) for name, value in variables.items()
            if name.startswith(("POWERTOOLS_", "PYDANTIC_")) and isinstance(value, str)}


def _xero_writes(xero: Any) -> list[str]:
    """The emulator's answered writes since its reset, as "METHOD path status"."""
    entries, _ = xero.app.log.since(0)
    return [f"{e.get('method')} {e.get('path')} {e.get('status')}" for e in entries
            if e.get("method") in ("POST", "PUT")]


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from sugar_xero.local.xero_emulator import EmulatorConfig, serve
    from tests.support.events import api_event

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    xero = serve(config=EmulatorConfig())
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    base = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
            "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_LOG_LEVEL": "WARNING", **_library_settings()}
    samples, baselines, ratios, api_parts, baseline_api_parts = [], [], [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="sugar-xero-cold-") as folder:
            event_file, calls_file = Path(folder) / "event.json", Path(folder) / "calls.json"
            for round_number in range(rounds + 1):
                body = {"crm_id": f"cold-{round_number}", "name": f"Cold Start {round_number}"}
                event_file.write_text(json.dumps(api_event("POST", "/crm/contacts", body=body,
                                                           query={"token": TOKEN})))
                environment = {**base, **_fresh_resources(endpoint, xero)}
                handler = _child(_HANDLER, event_file, environment)
                if handler["status"] != 202:
                    raise RuntimeError(f"the handler answered {handler['status']}")
                if handler["batch_failures"] != []:
                    raise RuntimeError(f"the first SQS batch failed: {handler['batch_failures']}")
                writes = _xero_writes(xero)
                if not any(write.startswith("POST /api.xro/2.0/Contacts 200") for write in writes):
                    raise RuntimeError(f"the contact did not reach Xero: {writes}")
                calls_file.write_text(json.dumps(handler["calls"]))
                _fresh_resources(endpoint, xero)
                baseline = _child(_BASELINE, calls_file, environment)
                if _xero_writes(xero) != writes:
                    raise RuntimeError(f"the baseline's Xero writes differ: {_xero_writes(xero)} ≠ {writes}")
                if round_number == 0:
                    continue  # warm-up: bytecode and page cache
                samples.append(handler["seconds"])
                api_parts.append(handler["api_seconds"])
                baselines.append(baseline["seconds"])
                baseline_api_parts.append(baseline["api_seconds"])
                ratios.append(handler["seconds"] / baseline["seconds"])
            aws = [call[2] for call in handler["calls"] if call[0] == "aws"]
            if len(handler["calls"]) - len(aws) - 1 < 1:
                raise RuntimeError("the first SQS batch made no Xero call")
            http = [f"{call[1]} {call[2].split('/api.xro/2.0/', 1)[-1].split('?', 1)[0]}"
                    for call in handler["calls"] if call[0] == "http"]
    finally:
        xero.shutdown()
        server.stop()
    return {"seconds": statistics.median(samples), "api_seconds": statistics.median(api_parts),
            "baseline": statistics.median(baselines), "baseline_api_seconds": statistics.median(baseline_api_parts),
            "ratio": statistics.median(ratios),
            "spread": (min(ratios), max(ratios)), "aws": aws, "http": http}


def _counted(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in counts.items())


def run() -> list[Row]:
    result = measure()
    low, high = result["spread"]
    return [Row("14", "cold start: fresh interpreter, import contact_sync, serve its first API event and its first "
                      "SQS batch (the contact pushed to the Xero emulator) against moto ÷ plain boto3 + requests "
                      "making the same AWS and Xero calls",
                f"{result['seconds'] * 1000:.0f} ms ÷ {result['baseline'] * 1000:.0f} ms (median of {ROUNDS}; ratios "
                f"{low:.2f}–{high:.2f}; up to the API answer {result['api_seconds'] * 1000:.0f} ms ÷ "
                f"{result['baseline_api_seconds'] * 1000:.0f} ms); "
                f"AWS: {_counted(result['aws'])}; Xero: {_counted(result['http'])}",
                result["ratio"], f"≤ {TARGET:g}", result["ratio"] <= TARGET)]


if __name__ == "__main__":
    from bench.report import render

    print(render(run()))
