"""Cold start, measured end to end: a fresh interpreter imports ``functions.contact_sync.app`` and
serves its first API event (a Sugar callout: the secret read through Powertools Parameters, the
job's conditional write to DynamoDB, the SQS send), against a moto server in another process;
÷ a minimal handler in a fresh interpreter that imports plain boto3 and makes exactly the same AWS
calls with the same parameters (recorded from the handler's run), so both sides pay for boto3,
their clients and the same round trips, and the ratio is what our code and its libraries add.
Target at most 1.3.

Not measured here: the first SQS batch of the same container (its Xero side needs an onboarded
connection), see the closing note of the results.

Robust against a busy machine: one discarded warm-up round, then rounds that run both sides one
after the other against a freshly reset moto, each ratio the median of the per-round ratios."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from bench.report import Row

ROUNDS = 7
TARGET = 1.3
REPO = Path(__file__).resolve().parents[1]
SECRET_NAME = "sugar-xero-cold-start"
TOKEN = "cold-start-token"

# The handler side: everything after the interpreter is up, from the first import to the answer.
_HANDLER = r'''
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
calls = []
original = botocore.client.BaseClient._make_api_call
def recorded(self, operation, params):
    calls.append([self.meta.service_model.service_name, operation, params])
    return original(self, operation, params)
botocore.client.BaseClient._make_api_call = recorded
answer = lambda_handler(event, Context())
seconds = time.perf_counter() - started
print("RESULT " + json.dumps({"seconds": seconds, "status": answer["statusCode"], "calls": calls}, default=str))
'''

# The baseline: plain boto3, the same calls in the same order with the same parameters.
_BASELINE = r'''
import json, sys, time
calls = json.loads(open(sys.argv[1]).read())
started = time.perf_counter()
import boto3
from botocore import xform_name
clients = {}
def client_for(service):
    # the handler writes DynamoDB through boto3's resource layer (plain Python values): so does this
    if service not in clients:
        clients[service] = boto3.resource(service).meta.client if service == "dynamodb" else boto3.client(service)
    return clients[service]
for service, operation, params in calls:
    getattr(client_for(service), xform_name(operation))(**params)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - started}))
'''


def _child(script: str, argument: Path, environment: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(argument)], check=False, cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=environment)
    if out.returncode:
        raise RuntimeError(f"a cold-start child failed: {out.stderr[-1500:]}")
    line = next(line for line in reversed(out.stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _fresh_resources(endpoint: str) -> dict[str, str]:
    """Reset moto and create what the handler touches: the sync table, its queue, its secret."""
    import boto3

    from tests.conftest import create_sync_table

    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    kwargs = {"endpoint_url": endpoint, "region_name": "eu-west-1", "aws_access_key_id": "bench",
              "aws_secret_access_key": "bench"}
    create_sync_table(boto3.client("dynamodb", **kwargs), "sync-cold-start")
    queue = boto3.client("sqs", **kwargs).create_queue(QueueName="contact-cold-start")["QueueUrl"]
    boto3.client("secretsmanager", **kwargs).create_secret(Name=SECRET_NAME,
                                                           SecretString=json.dumps(
        {"CRM_TOKEN": TOKEN, "CRM_SIGNING_SECRET": "cold-start-signing"}))
    return {"SYNC_TABLE": "sync-cold-start", "CONTACT_QUEUE_URL": queue, "SECRETS_ARN": SECRET_NAME}


def measure(rounds: int = ROUNDS) -> dict[str, float]:
    from moto.server import ThreadedMotoServer

    from tests.support.events import api_event

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    base = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
            "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_SERVICE_NAME": "sugar-xero",
            "POWERTOOLS_METRICS_NAMESPACE": "SugarXero", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    samples, baselines, ratios = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="sugar-xero-cold-") as folder:
            event_file, calls_file = Path(folder) / "event.json", Path(folder) / "calls.json"
            for round_number in range(rounds + 1):
                body = {"crm_id": f"cold-{round_number}", "name": f"Cold Start {round_number}"}
                event_file.write_text(json.dumps(api_event("POST", "/crm/contacts", body=body,
                                                           query={"token": TOKEN})))
                environment = {**base, **_fresh_resources(endpoint)}
                handler = _child(_HANDLER, event_file, environment)
                if handler["status"] != 202:
                    raise RuntimeError(f"the handler answered {handler['status']}")
                calls_file.write_text(json.dumps(handler["calls"]))
                _fresh_resources(endpoint)
                baseline = _child(_BASELINE, calls_file, environment)
                if round_number == 0:
                    continue  # warm-up: bytecode and page cache
                samples.append(handler["seconds"])
                baselines.append(baseline["seconds"])
                ratios.append(handler["seconds"] / baseline["seconds"])
            operations = [operation for _, operation, _ in handler["calls"]]
    finally:
        server.stop()
    return {"seconds": statistics.median(samples), "baseline": statistics.median(baselines),
            "ratio": statistics.median(ratios), "operations": operations}


def run() -> list[Row]:
    result = measure()
    return [Row("14", "cold start: fresh interpreter, import contact_sync and serve its first API event against "
                      "moto ÷ plain boto3 making the same AWS calls",
                f"{result['seconds'] * 1000:.0f} ms ÷ {result['baseline'] * 1000:.0f} ms (median of {ROUNDS}); "
                f"calls: {', '.join(result['operations'])}",
                result["ratio"], f"≤ {TARGET:g}", result["ratio"] <= TARGET)]
