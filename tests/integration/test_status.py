"""``sugar-xero status`` against moto: jobs in every state, a disconnected Xero connection, rate-limit
items written by a real SharedRateGate and messages in a dead-letter queue; then the same report
from a local stack found through its state file (a moto server on a free loopback port)."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.models.jobs import CrmRef, Job
from shared.state.dynamo import SyncStateTable
from shared.xero.limits import SharedRateGate
from sugar_xero.cli import main
from sugar_xero.status import run
from tests.conftest import SYNC_TABLE_NAME

NOW = float(int(time.time()) // 60 * 60 + 10)  # 10 s into the current minute: jobs' real TTLs still hold
SECRETS = ("xero-access-SECRET", "xero-refresh-SECRET", "sugar-access-SECRET")


def iso(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed(dynamodb, *, disconnected: bool = True) -> None:
    store = SyncStateTable(SYNC_TABLE_NAME, resource=dynamodb)
    counts = {"queued": 2, "in_progress": 1, "succeeded": 5, "failed": 11, "ignored": 1}
    for status, n in counts.items():
        for i in range(n):
            error = f"Xero answered 400: Account number {i} is in use" if status == "failed" else None
            store.create_job(Job(job_id=f"{status}-{i:02d}", status=status, kind="contact.upsert",
                                 crm=CrmRef(module="Accounts", id=f"acc-{status}-{i}"), attempts=i % 3,
                                 error=error, created_at=iso(-3600), updated_at=iso(-3600 + i)),
                             {"module": "Accounts"})
    store.update_job("failed-03", error="401 with Authorization: Bearer xero-access-SECRET")  # now the newest
    store.put_token("default", {"access_token": "xero-access-SECRET", "refresh_token": "xero-refresh-SECRET",
                                "access_expires_at": int(NOW) + 1200, "status": "connected"},
                    expected_version=None)
    if disconnected:  # what XeroTokens writes on invalid_grant
        store.put_token("default", {"status": "disconnected", "disconnected_at": int(NOW) - 300},
                        expected_version=1)
    tenants = [{"tenant_id": "t-demo", "tenant_name": "Demo Co"}, {"tenant_id": "t-other", "tenant_name": "Other"}]
    store.put_connection("default", tenant_id="t-demo", tenant_name="Demo Co", tenants=tenants)
    store.put_token("sugar:base:xero-connector", {"access_token": "sugar-access-SECRET", "status": "connected",
                                                  "access_expires_at": int(NOW) + 600}, expected_version=None)

    clock = lambda: NOW  # noqa: E731
    gate = SharedRateGate(dynamodb.Table(SYNC_TABLE_NAME), clock=clock, max_wait_seconds=0.1)
    for _ in range(4):
        gate.release(gate.acquire("t-demo"))
    gate.acquire("t-demo")  # one still in flight
    gate.observe("t-other", {"Retry-After": "40", "X-Rate-Limit-Problem": "minute"}, 429)


@pytest.fixture
def environ(aws):
    return {"SYNC_TABLE": SYNC_TABLE_NAME, "CONTACT_QUEUE_URL": aws["queue_url"], "CONTACT_DLQ_URL": aws["dlq_url"]}


def status(argv, environ, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = run([*argv, "--state-file", str(tmp_path / "none.json")], out=out, err=err, environ=environ,
               clock=lambda: NOW)
    assert err.getvalue() == ""
    for secret in SECRETS:
        assert secret not in out.getvalue()
    return code, out.getvalue()


def test_json_report_of_an_unhealthy_stack_exits_1(aws, environ, tmp_path):
    seed(aws["dynamodb"])
    for body in ("a", "b"):
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=body)
    for body in ("c", "d", "e"):
        aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody=body)
    aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=1)
    aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody="later", DelaySeconds=60)

    code, text = status(["--json"], environ, tmp_path)
    report = json.loads(text)

    assert code == 1 and report["healthy"] is False
    assert report["stack"]["sync_table"] == SYNC_TABLE_NAME
    assert report["jobs"] == {"queued": 2, "in_progress": 1, "succeeded": 5, "failed": 11, "ignored": 1}
    failures = report["recent_failures"]
    assert len(failures) == 10
    assert failures[0]["job_id"] == "failed-03"
    assert failures[0]["error"] == "401 with Authorization: [redacted] [redacted]"
    assert [f["job_id"] for f in failures[1:]] == [f"failed-{i:02d}" for i in (10, 9, 8, 7, 6, 5, 4, 2, 1)]
    assert failures[1] == {"job_id": "failed-10", "kind": "contact.upsert", "crm_module": "Accounts",
                           "crm_id": "acc-failed-10", "attempts": 1, "updated_at": iso(-3590),
                           "error": "Xero answered 400: Account number 10 is in use"}

    xero, sugar = report["connections"]
    assert (xero["connection_id"], xero["status"], xero["fix"]) == ("default", "disconnected",
                                                                   "run `sugar-xero connect`")
    assert xero["tenant_name"] == "Demo Co" and len(xero["tenants"]) == 2
    assert (sugar["system"], sugar["status"]) == ("sugar", "connected")

    [contact] = report["queues"]
    assert contact["queue"] == {"visible": 2, "in_flight": 1, "delayed": 1}
    assert contact["dlq"] == {"visible": 2, "in_flight": 0, "delayed": 0}

    demo, other = report["rate_limits"]
    assert demo["tenant_id"] == "t-demo"
    # the rolling minute: the oldest of the 5 calls (all made now) ages out in 60 s + the 1 s margin
    assert (demo["minute"], demo["day"]["used"], demo["in_flight"]) == (
        {"used": 5, "limit": 60, "resets_in_seconds": 61.0}, 5, {"used": 1, "limit": 5})
    assert demo["blocked_until"] is None
    assert other["tenant_id"] == "t-other" and other["blocked_until"] == NOW + 40
    assert other["blocked_problem"] == "minute"

    assert len(report["problems"]) == 2
    assert "disconnected" in report["problems"][0] and "sugar-xero connect" in report["problems"][0]
    assert report["problems"][1].startswith("2 message(s) in the contact dead-letter queue")


def test_readable_table_through_the_command_line(aws, environ, tmp_path, monkeypatch, capsys):
    seed(aws["dynamodb"])
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody="dead")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    code = main(["status", "--state-file", str(tmp_path / "none.json"), "--failures", "3"])
    text = capsys.readouterr().out

    assert code == 1
    for secret in SECRETS:
        assert secret not in text
    lines = text.splitlines()
    default_row = next(line for line in lines if line.startswith("  default "))
    assert "DISCONNECTED" in default_row and "FIX: run `sugar-xero connect`" in default_row
    assert "Demo Co (t-demo) +1 more" in default_row
    jobs_header = lines.index("Jobs") + 1
    assert lines[jobs_header].split() == ["queued", "in_progress", "succeeded", "failed", "ignored"]
    assert lines[jobs_header + 1].split() == ["2", "1", "5", "11", "1"]
    assert "Latest failures (3, newest first)" in text
    assert any(line.split()[:2] == ["contact", "0"] and line.split()[4] == "1" for line in lines)
    # The command reads the real clock, so this minute's counts depend on when the test runs; the
    # numbers themselves are checked with a fixed clock in the JSON test above.
    for tenant in ("t-demo", "t-other"):
        row = next(line for line in lines if line.startswith(f"  {tenant} "))
        assert "/ 60" in row and "/ 5000" in row and "/ 5 " in row
    assert "2 problem(s):" in text


def test_a_healthy_stack_exits_0(aws, environ, tmp_path):
    seed(aws["dynamodb"], disconnected=False)
    code, text = status([], environ, tmp_path)
    assert code == 0
    assert text.rstrip().endswith("Healthy.")
    assert "connected" in next(line for line in text.splitlines() if line.startswith("  default "))


def test_an_unreadable_sync_table_exits_2(aws, environ, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = run(["--state-file", str(tmp_path / "none.json")], out=out, err=err,
               environ={**environ, "SYNC_TABLE": "no-such-table"})
    assert code == 2 and "Cannot read the sync table no-such-table" in err.getvalue()


# ---- a local stack, found through its state file --------------------------------------------------
@pytest.fixture
def local_stack(tmp_path: Path, monkeypatch):
    """The template's resources on a moto server, and a state file as `sugar-xero local` writes it."""
    from moto.server import ThreadedMotoServer

    from sugar_xero.local.aws_resources import create_resources, handler_environment
    from sugar_xero.local.template import StackTemplate

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        template = StackTemplate(Path(__file__).resolve().parents[2] / "infra" / "template.yaml")
        resources = create_resources(template, endpoint)
        environment = handler_environment(template, resources).resources
        path = tmp_path / ".sugar-xero-local.json"
        path.write_text(json.dumps({
            "pid": os.getpid(), "urls": {"moto": endpoint}, "region": resources.region,
            "queues": resources.queues, "tables": resources.tables,
            "environment": {k: v for k, v in environment.items()
                            if not k.startswith("AWS_SECRET") and k != "AWS_SESSION_TOKEN"}}))
        yield path, resources
    finally:
        server.stop()


def test_a_local_stack_is_reported_through_its_state_file(local_stack):
    import boto3

    path, resources = local_stack
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                    region_name=resources.region)
    sqs = session.client("sqs", endpoint_url=resources.endpoint_url)
    sqs.send_message(QueueUrl=resources.queues["InvoicePushDLQ"]["url"], MessageBody="dead")
    SyncStateTable(resources.tables["SyncTable"],
                   resource=session.resource("dynamodb", endpoint_url=resources.endpoint_url)).create_job(
        Job(job_id="j1", status="failed", kind="contact.upsert", crm=CrmRef(module="Contacts", id="c1"),
            error="boom", created_at=iso(0), updated_at=iso(0)), {})

    out, err = io.StringIO(), io.StringIO()
    code = run(["--json", "--state-file", str(path)], out=out, err=err, environ={})
    report = json.loads(out.getvalue())

    assert code == 1, err.getvalue()
    assert report["stack"]["local"] is True and report["stack"]["endpoint_url"] == resources.endpoint_url
    assert report["jobs"]["failed"] == 1 and report["recent_failures"][0]["error"] == "boom"
    depths = {q["name"]: (q["queue"]["visible"], q["dlq"]["visible"]) for q in report["queues"]}
    assert depths == {"contact": (0, 0), "invoice": (0, 1), "webhook": (0, 0), "reconcile": (0, 0)}
    assert report["problems"] == ["1 message(s) in the invoice dead-letter queue: work that failed every "
                                  "attempt; inspect and re-drive it (`sugar-xero replay`)"]
