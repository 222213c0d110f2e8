"""``sugar-xero status``: the report's rules with in-memory adapters, finding a stack from its
state file, outputs or environment, and the rate gate's ``headroom`` against a real gate's items."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.usecases.status import QueueSpec, gather, redact
from shared.xero.limits import SharedRateGate
from sugar_xero.status import (
    StackNotFound,
    build_parser,
    find_target,
    render,
    run,
    target_from_environment,
    target_from_state,
)
from tests.conftest import SYNC_TABLE_NAME

NOW = datetime(2026, 3, 2, 9, 30, 10, tzinfo=UTC).timestamp()  # 10 s into a minute


def iso(offset_seconds: float) -> str:
    return datetime.fromtimestamp(NOW + offset_seconds, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def job(job_id: str, status: str, *, age: float = 100, error: str | None = None, **extra):
    item = {"PK": f"JOB#{job_id}", "SK": "JOB", "job_id": job_id, "status": status, "kind": "contact.upsert",
            "crm": {"module": "Accounts", "id": f"acc-{job_id}"}, "attempts": 2, "updated_at": iso(-age),
            "created_at": iso(-age - 5), "expires_at": int(NOW) + 86400, **extra}
    if error:
        item["error"] = error
    return ("job", job_id, item)


class FakeStore:
    def __init__(self, items):
        self.items = items

    def scan_status_items(self):
        yield from self.items


class FakeProbe:
    def __init__(self, depths: dict[str, dict[str, int]], broken: set[str] = frozenset()):
        self.depths, self.broken = depths, broken

    def depth(self, queue_url):
        if queue_url in self.broken:
            raise RuntimeError("AWS.SimpleQueueService.NonExistentQueue")
        return self.depths.get(queue_url, {"visible": 0, "in_flight": 0, "delayed": 0})


class FakeLimits:
    def __init__(self):
        self.asked: list[str] = []

    def headroom(self, tenant_id):
        self.asked.append(tenant_id)
        return {"tenant_id": tenant_id, "minute": {"used": 7, "limit": 60}, "day": {"used": 70, "limit": 5000},
                "in_flight": {"used": 1, "limit": 5}, "app_minute": {"used": 9, "limit": 10000},
                "blocked_until": None, "blocked_problem": None}


def connected_xero(connection_id="default", tenant="t-1", **token):
    return [("token", connection_id, {"status": "connected", "version": 3,
                                      "access_expires_at": int(NOW) + 900, **token}),
            ("connection", connection_id, {"tenant_id": tenant, "tenant_name": "Demo Co",
                                           "tenants": [{"tenant_id": tenant, "tenant_name": "Demo Co"}]})]


def report_of(items, *, probe=None, limits=None, queues=(), **kwargs):
    return gather(store=FakeStore(items), probe=probe or FakeProbe({}), limits=limits or FakeLimits(),
                  queues=queues, clock=lambda: NOW, **kwargs)


# ---- jobs ------------------------------------------------------------------------------------
def test_jobs_are_counted_by_state_and_the_ten_newest_failures_listed_newest_first():
    items = [job(f"q{i}", "queued") for i in range(3)] + [job("p", "in_progress"), job("s", "succeeded"),
                                                          job("i", "ignored")]
    items += [job(f"f{i:02d}", "failed", age=1000 - i * 10, error=f"Xero refused #{i}") for i in range(12)]
    report = report_of(items + connected_xero())

    assert report.jobs == {"queued": 3, "in_progress": 1, "succeeded": 1, "failed": 12, "ignored": 1}
    assert [f["job_id"] for f in report.recent_failures] == [f"f{i:02d}" for i in range(11, 1, -1)]
    newest = report.recent_failures[0]
    assert newest == {"job_id": "f11", "kind": "contact.upsert", "crm_module": "Accounts", "crm_id": "acc-f11",
                      "attempts": 2, "updated_at": iso(-890), "error": "Xero refused #11"}
    assert report.healthy  # failed jobs alone are history, not an alert


def test_expired_jobs_are_not_counted_and_unknown_states_get_their_own_count():
    items = [job("old", "failed", expires_at=int(NOW) - 1, error="gone"), job("odd", "paused")]
    report = report_of(items)
    assert report.jobs["failed"] == 0 and report.recent_failures == []
    assert report.jobs["paused"] == 1


def test_failure_errors_have_credentials_blanked():
    assert redact("401 from Xero; Authorization: Bearer eyJhbGciOi.abc") == \
        "401 from Xero; Authorization: [redacted] [redacted]"
    assert redact('body {"refresh_token": "r-123", "x": 1} ?token=crm-secret&a=b password=hunter2') == \
        'body {"refresh_token": "[redacted]", "x": 1} ?token=[redacted]&a=b password=[redacted]'
    assert redact("Xero answered 400: ValidationException") == "Xero answered 400: ValidationException"
    report = report_of([job("f", "failed", error="echo: Bearer very-secret")])
    assert "very-secret" not in json.dumps(report.as_dict())


# ---- connections -----------------------------------------------------------------------------
def test_a_disconnected_xero_connection_is_a_problem_with_its_fix():
    items = [("token", "default", {"status": "disconnected", "disconnected_at": int(NOW) - 60, "version": 4}),
             ("connection", "default", {"tenant_id": "t-1", "tenant_name": "Demo Co"})]
    report = report_of(items)
    [row] = report.connections
    assert row["status"] == "disconnected" and row["fix"] == "run `sugar-xero connect`"
    assert row["disconnected_at"] == "2026-03-02T09:29:10Z"
    assert not report.healthy
    assert report.problems == [f"Xero connection 'default' is disconnected since {row['disconnected_at']}: "
                               "run `sugar-xero connect`"]


def test_organisations_of_a_multi_org_connection_are_listed_once_under_it():
    tenants = [{"tenant_id": "t-1", "tenant_name": "Demo Co"}, {"tenant_id": "t-2", "tenant_name": "Other"}]
    items = [("token", "default", {"status": "connected", "access_expires_at": int(NOW) - 5}),
             ("connection", "default", {"tenant_id": "t-1", "tenant_name": "Demo Co", "tenants": tenants}),
             ("connection", "default#t-1", {"tenant_id": "t-1", "parent_connection": "default"}),
             ("connection", "default#t-2", {"tenant_id": "t-2", "parent_connection": "default"})]
    limits = FakeLimits()
    report = report_of(items, limits=limits, configured_tenants=["t-3"])
    [row] = report.connections
    assert row["tenants"] == tenants
    assert row["note"] == "access token expired; it is refreshed on next use"
    assert limits.asked == ["t-3", "t-1", "t-2"]
    assert report.healthy


def test_no_token_yet_is_shown_but_is_not_a_problem_and_sugar_refusals_are():
    items = [("connection", "default", {"tenant_id": "t-1"}),
             ("token", "sugar:xero_connector:xero-connector", {"status": "login_refused",
                                                             "login_refused_label": "need_login"}),
             ("token", "sugar:base:other", {"status": "connected", "access_expires_at": int(NOW) + 100})]
    report = report_of(items)
    statuses = {r["connection_id"]: (r["system"], r["status"]) for r in report.connections}
    assert statuses == {"default": ("xero", "no_token"),
                        "sugar:xero_connector:xero-connector": ("sugar", "login_refused"),
                        "sugar:base:other": ("sugar", "connected")}
    assert len(report.problems) == 1 and "Sugar refused the login" in report.problems[0]


# ---- queues ----------------------------------------------------------------------------------
def test_dead_letter_messages_and_unreadable_queues_are_problems_work_in_queues_is_not():
    queues = [QueueSpec("contact", "u-contact", "u-contact-dlq"), QueueSpec("invoice", "u-invoice", "u-inv-dlq"),
              QueueSpec("reconcile", "u-reconcile", None)]
    probe = FakeProbe({"u-contact": {"visible": 40, "in_flight": 5, "delayed": 2},
                       "u-contact-dlq": {"visible": 1, "in_flight": 1, "delayed": 0}}, broken={"u-inv-dlq"})
    report = report_of(connected_xero(), probe=probe, queues=queues)
    contact, invoice, reconcile = report.queues
    assert contact["queue"] == {"visible": 40, "in_flight": 5, "delayed": 2}
    assert contact["dlq"] == {"visible": 1, "in_flight": 1, "delayed": 0}
    assert invoice["dlq"]["error"].startswith("RuntimeError")
    assert reconcile["dlq"] is None
    assert report.problems == [
        "2 message(s) in the contact dead-letter queue: work that failed every attempt; inspect and "
        "re-drive it (`sugar-xero replay`)",
        "could not read the invoice dead-letter queue: RuntimeError: AWS.SimpleQueueService.NonExistentQueue"]


def test_the_readable_table_shows_each_section_and_never_a_token():
    items = connected_xero(access_token="SECRET-A", refresh_token="SECRET-R") + [
        job("f1", "failed", error="Xero answered 400: " + "x" * 300)]
    report = report_of(items, queues=[QueueSpec("contact", "u", "d")])
    target = target_from_environment({"SYNC_TABLE": "sync", "CONTACT_QUEUE_URL": "u"})
    text = render(report, target)
    assert "SECRET" not in text  # a store that did read tokens still never shows them
    for expected in ("Connections", "default", "Demo Co (t-1)", "Jobs", "Latest failures (1, newest first)",
                     "Accounts/acc-f1", "Queues", "contact", "Xero rate limits", "7 / 60", "70 / 5000", "1 / 5",
                     "app-wide this minute: 9 / 10000", "Healthy."):
        assert expected in text, expected
    assert max(len(line) for line in text.splitlines()) < 250  # long errors are clipped


# ---- finding the stack -----------------------------------------------------------------------
OUTPUTS = {
    "ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
    "SyncTableName": "prod-SyncTable-1X", "IdempotencyTableName": "prod-Idem-1Y",
    "ContactSyncQueueUrl": "https://sqs/1/prod-ContactSyncQueue", "ContactSyncDLQUrl": "https://sqs/1/prod-ContactSyncDLQ",
    "InvoicePushQueueUrl": "https://sqs/1/prod-InvoicePushQueue", "InvoicePushDLQUrl": "https://sqs/1/prod-InvoicePushDLQ",
    "PaymentWebhookQueueUrl": "https://sqs/1/prod-PaymentWebhookQueue",
    "PaymentWebhookDLQUrl": "https://sqs/1/prod-PaymentWebhookDLQ",
    "ReconcileQueueUrl": "https://sqs/1/prod-ReconcileQueue", "ReconcileDLQUrl": "https://sqs/1/prod-ReconcileDLQ",
    "ConnectorSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x",
}


class FakeCloudFormation:
    """describe_stacks as boto3 answers it."""

    def __init__(self, outputs: dict[str, str] | None):
        self.outputs = outputs
        self.asked: list[str] = []

    def describe_stacks(self, StackName):  # noqa: N803 - boto3's argument name
        self.asked.append(StackName)
        if self.outputs is None:
            raise RuntimeError(f"An error occurred (ValidationError): Stack with id {StackName} does not exist")
        return {"Stacks": [{"StackName": StackName, "StackStatus": "UPDATE_COMPLETE",
                            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]}


def test_a_deployed_stack_is_found_from_its_outputs():
    fake = FakeCloudFormation(OUTPUTS)
    args = build_parser().parse_args(["--stack", "prod"])
    target = find_target(args, {"XERO_DAY_LIMIT": "1000", "XERO_TENANT_ID": "t-9"}, cloudformation=lambda: fake)
    assert fake.asked == ["prod"]
    assert target.sync_table == "prod-SyncTable-1X" and not target.local and target.endpoint_url is None
    assert [(q.name, q.url, q.dlq_url) for q in target.queues] == [
        ("contact", OUTPUTS["ContactSyncQueueUrl"], OUTPUTS["ContactSyncDLQUrl"]),
        ("invoice", OUTPUTS["InvoicePushQueueUrl"], OUTPUTS["InvoicePushDLQUrl"]),
        ("webhook", OUTPUTS["PaymentWebhookQueueUrl"], OUTPUTS["PaymentWebhookDLQUrl"]),
        ("reconcile", OUTPUTS["ReconcileQueueUrl"], OUTPUTS["ReconcileDLQUrl"])]
    assert (target.day_limit, target.tenant_ids) == (1000, ("t-9",))


@pytest.mark.parametrize("outputs, message", [
    (None, "Cannot read the stack's outputs: RuntimeError: An error occurred (ValidationError)"),
    ({"ApiUrl": "https://x"}, "stack 'other' has no SyncTableName output"),
])
def test_a_stack_that_is_not_there_or_not_ours_exits_2(outputs, message):
    out, err = io.StringIO(), io.StringIO()
    code = run(["--stack", "other"], out=out, err=err, environ={}, cloudformation=lambda: FakeCloudFormation(outputs))
    assert code == 2 and out.getvalue() == ""
    assert message in err.getvalue()


def local_state(pid: int) -> dict:
    """What ``sugar-xero local`` writes (sugar_xero/local/stack.py ``_write_state_file``)."""
    queue = "http://127.0.0.1:5123/123456789012/sugar-xero-local-{}"
    return {
        "pid": pid, "region": "eu-west-1", "urls": {"moto": "http://127.0.0.1:5123", "gateway": "http://127.0.0.1:3000"},
        "queues": {lid: {"url": queue.format(lid), "arn": f"arn:{lid}", "name": lid}
                   for lid in ("ContactSyncQueue", "ContactSyncDLQ", "InvoicePushQueue", "InvoicePushDLQ",
                               "PaymentWebhookQueue", "PaymentWebhookDLQ", "ReconcileQueue", "ReconcileDLQ")},
        "tables": {"SyncTable": "sugar-xero-local-SyncTable", "IdempotencyTable": "sugar-xero-local-Idem"},
        "environment": {"SYNC_TABLE": "sugar-xero-local-SyncTable", "AWS_ENDPOINT_URL": "http://127.0.0.1:5123",
                        "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "local"},
    }


def test_a_running_local_stack_is_found_from_its_state_file(tmp_path: Path):
    import os

    path = tmp_path / ".sugar-xero-local.json"
    path.write_text(json.dumps(local_state(os.getpid())))
    target = find_target(build_parser().parse_args(["--state-file", str(path)]), {})
    assert target.local and target.endpoint_url == "http://127.0.0.1:5123" and target.region == "eu-west-1"
    assert target.sync_table == "sugar-xero-local-SyncTable"
    assert [q.name for q in target.queues] == ["contact", "invoice", "webhook", "reconcile"]
    assert target.queues[0].dlq_url.endswith("ContactSyncDLQ") and target.queues[0].url.endswith("ContactSyncQueue")


def test_a_state_file_whose_stack_is_gone_falls_back_to_the_environment_or_says_how_to_start(tmp_path: Path):
    path = tmp_path / ".sugar-xero-local.json"
    path.write_text(json.dumps(local_state(pid=2**22 + 12345)))  # above Linux's pid_max: no such process
    args = build_parser().parse_args(["--state-file", str(path)])
    environ = {"SYNC_TABLE": "sync", "CONTACT_QUEUE_URL": "u-c", "CONTACT_DLQ_URL": "u-cd", "RECONCILE_DLQ_URL": "u-r"}
    target = find_target(args, environ)
    assert not target.local and target.sync_table == "sync"
    assert [(q.name, q.url, q.dlq_url) for q in target.queues] == [("contact", "u-c", "u-cd"),
                                                                    ("reconcile", None, "u-r")]
    with pytest.raises(StackNotFound, match="sugar-xero local"):
        find_target(args, {})
    state = local_state(1)
    del state["queues"]  # an older state file: the environment's queue variables
    state["environment"]["CONTACT_QUEUE_URL"] = "u-env"
    assert [q.url for q in target_from_state(state, path).queues] == ["u-env"]


def test_help_says_what_the_exit_codes_mean(capsys):
    with pytest.raises(SystemExit):
        run(["--help"])
    text = capsys.readouterr().out
    assert "0  healthy" in text and "1  a problem" in text and "dead-letter queue holds messages" in text


# ---- headroom, read from what a real SharedRateGate wrote -------------------------------------
class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_headroom_reads_the_gates_own_items(moto_dynamodb):
    table = moto_dynamodb.resource("dynamodb").Table(SYNC_TABLE_NAME)
    clock = Clock()
    gate = SharedRateGate(table, day_limit=1000, clock=clock, sleep=clock.sleep, max_wait_seconds=0.1)
    reader = SharedRateGate(table, day_limit=1000, clock=clock)  # a separate process: shares only the table

    assert reader.headroom("t-1") == {
        "tenant_id": "t-1", "minute": {"used": 0, "limit": 60, "resets_in_seconds": 0.0},
        "day": {"used": 0, "limit": 1000, "resets_in_seconds": 86400 - (9 * 3600 + 30 * 60 + 10)},
        "in_flight": {"used": 0, "limit": 5}, "app_minute": {"used": 0, "limit": 10000},
        "blocked_until": None, "blocked_problem": None}

    held = [gate.acquire("t-1") for _ in range(3)]
    gate.release(held.pop())
    gate.release(gate.acquire("t-2"))
    gate.observe("t-1", {"X-DayLimit-Remaining": "980"}, 200)  # Xero counts 20 today, we 3
    room = reader.headroom("t-1")
    assert (room["minute"]["used"], room["day"]["used"], room["in_flight"]["used"]) == (3, 20, 2)
    assert room["app_minute"]["used"] == 4 and room["blocked_until"] is None

    gate.observe("t-2", {"Retry-After": "30", "X-Rate-Limit-Problem": "minute"}, 429)
    assert reader.headroom("t-2")["blocked_until"] == pytest.approx(NOW + 30)
    assert reader.headroom("t-2")["blocked_problem"] == "minute"
    assert reader.headroom("t-1")["blocked_until"] is None  # another tenant's block is not ours

    gate.observe("t-2", {"Retry-After": "5", "X-Rate-Limit-Problem": "appminute"}, 429)
    assert reader.headroom("t-1")["blocked_problem"] == "appminute"  # the app's block stops every tenant

    clock.now += 61  # the rolling minute (and its 1 s margin) has passed; the 45 s leases have lapsed
    room = reader.headroom("t-1")
    assert (room["minute"]["used"], room["day"]["used"], room["in_flight"]["used"]) == (0, 20, 0)
    assert reader.headroom("t-2")["blocked_until"] is None
