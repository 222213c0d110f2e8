"""``sugar-xero replay`` against moto: a message that really dead-lettered (moto applies the
queue's RedrivePolicy as SQS does) moved back, one job re-sent, a deployed stack found through its
CloudFormation outputs, and the refusals."""

from __future__ import annotations

import io
import json

import pytest

from shared.models.jobs import CrmRef, Job
from shared.state.dynamo import SyncStateTable
from sugar_xero.cli import main
from sugar_xero.replay import run
from tests.conftest import SYNC_TABLE_NAME

KIND = "contact.upsert"


@pytest.fixture(autouse=True)
def short_polls(monkeypatch):
    # In-process moto answers a short poll with every visible message; real SQS needs the long one.
    import sugar_xero.replay

    monkeypatch.setattr(sugar_xero.replay, "RECEIVE_WAIT_SECONDS", 0)


@pytest.fixture
def environ(aws):
    return {"SYNC_TABLE": SYNC_TABLE_NAME, "CONTACT_QUEUE_URL": aws["queue_url"], "CONTACT_DLQ_URL": aws["dlq_url"]}


def replay(argv, environ, tmp_path, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = run([*argv, "--state-file", str(tmp_path / "none.json")], out=out, err=err, environ=environ, **kwargs)
    return code, out.getvalue(), err.getvalue()


def store(aws) -> SyncStateTable:
    return SyncStateTable(SYNC_TABLE_NAME, resource=aws["dynamodb"])


def add_job(aws, job_id: str, status: str, document: dict | None = None) -> dict:
    document = document or {"crm_module": "Accounts", "crm_id": f"acc-{job_id}", "name": f"Customer {job_id}"}
    job = Job(job_id=job_id, status=status, kind=KIND, crm=CrmRef(module="Accounts", id=f"acc-{job_id}"),
              error="Xero answered 503 after 5 attempts" if status == "failed" else None,
              created_at="2026-11-27T10:00:00.000Z", updated_at="2026-11-27T10:00:00.000Z")
    store(aws).create_job(job, document)
    return {"job_id": job_id, "kind": KIND, "document": document}


def messages(aws, url: str) -> list[dict]:
    """Every message waiting in the queue, left waiting (visible again) afterwards."""
    found = []
    for _ in range(5):
        answer = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        if not answer.get("Messages"):
            break
        found += answer["Messages"]
    for message in found:
        aws["sqs"].change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return found


def dead_letter(aws, body: dict) -> None:
    """Send to the work queue and fail it past maxReceiveCount (5): moto then moves it to the DLQ."""
    aws["sqs"].send_message(QueueUrl=aws["queue_url"], MessageBody=json.dumps(body))
    for _ in range(6):
        aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=0)


def test_a_dead_lettered_job_is_moved_back_and_the_dlq_is_empty(aws, environ, tmp_path):
    body = add_job(aws, "job-1", "queued")
    dead_letter(aws, body)
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody="not a job")
    assert len(messages(aws, aws["dlq_url"])) == 2
    assert messages(aws, aws["queue_url"]) == []  # moved, not copied

    code, out, err = replay(["--dlq", "contact"], environ, tmp_path)

    assert code == 0, err
    assert "contact dead-letter queue → contact queue: moved 2 message(s)" in out
    assert "job job-1" in out and "1 other message(s)" in out
    assert messages(aws, aws["dlq_url"]) == []
    back = sorted(m["Body"] for m in messages(aws, aws["queue_url"]))
    assert back == sorted([json.dumps(body), "not a job"])  # byte for byte as they were


def test_all_with_nothing_waiting_moves_nothing_and_says_so(aws, environ, tmp_path):
    code, out, _ = replay(["--all"], environ, tmp_path)
    assert code == 0
    assert "contact dead-letter queue → contact queue: nothing waiting" in out and "Nothing to re-drive." in out


def test_one_failed_job_is_queued_again_as_json(aws, environ, tmp_path):
    body = add_job(aws, "job-2", "failed")
    code, out, err = replay(["--job", "job-2", "--json"], environ, tmp_path)
    assert code == 0, err
    report = json.loads(out)
    assert report["moved"] == 1 and report["complete"] is True
    [job] = report["jobs"]
    assert job["sent"] is True and job["status_before"] == "failed" and job["queue"] == "contact"
    [message] = messages(aws, aws["queue_url"])
    assert json.loads(message["Body"]) == body
    assert store(aws).get_job("job-2").status == "queued"


def test_a_succeeded_job_needs_force_and_an_unknown_one_is_reported(aws, environ, tmp_path):
    add_job(aws, "job-3", "succeeded")
    code, out, _ = replay(["--job", "job-3", "--job", "missing"], environ, tmp_path)
    assert code == 1
    assert "job job-3 (contact.upsert Accounts/acc-job-3): not sent: the job is succeeded" in out
    assert "job missing (unknown kind): not sent: no such job" in out
    assert messages(aws, aws["queue_url"]) == []
    code, out, _ = replay(["--job", "job-3", "--force"], environ, tmp_path)
    assert code == 0 and "was succeeded, queued again on the contact queue" in out
    assert len(messages(aws, aws["queue_url"])) == 1


def test_a_job_still_live_is_refused_and_a_stuck_one_gets_a_new_attempt(aws, environ, tmp_path):
    add_job(aws, "job-4", "in_progress")  # touched long ago: stuck, never confirmed
    add_job(aws, "job-5", "queued")
    store(aws).update_job("job-5", status="queued")  # touched now: its message is in the queue
    code, out, _ = replay(["--job", "job-4", "--job", "job-5", "--force"], environ, tmp_path)
    assert code == 1
    assert "job job-4 (contact.upsert Accounts/acc-job-4): was in_progress, queued again on the contact queue " \
           "(attempt 2)" in out
    assert "job job-5 (contact.upsert Accounts/acc-job-5): not sent: attempt 1 is live" in out
    assert len(messages(aws, aws["queue_url"])) == 1
    assert store(aws).get_job("job-4").attempt == 2 and store(aws).get_job("job-5").attempt == 1


def test_refusals_exit_2(aws, environ, tmp_path):
    code, _, err = replay([], environ, tmp_path)
    assert code == 2 and "--all, --dlq NAME or --job ID" in err
    code, _, err = replay(["--dlq", "nonsense"], environ, tmp_path)
    assert code == 2 and "no dead-letter queue called 'nonsense'" in err and "known: contact" in err
    code, _, err = replay(["--all"], {}, tmp_path)
    assert code == 2 and "No running local stack found" in err


def test_a_deployed_stack_is_found_through_its_outputs(aws, tmp_path):
    body = add_job(aws, "job-4", "queued")
    dead_letter(aws, body)

    class CloudFormation:
        def describe_stacks(self, StackName):  # noqa: N803 - boto3's spelling
            assert StackName == "prod-connector"
            outputs = {"SyncTableName": SYNC_TABLE_NAME, "ContactSyncQueueUrl": aws["queue_url"],
                       "ContactSyncDLQUrl": aws["dlq_url"]}
            return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}

    code, out, err = replay(["--stack", "prod-connector", "--dlq", "ContactSyncDLQ"], {}, tmp_path,
                            cloudformation=CloudFormation)
    assert code == 0, err
    assert out.startswith("sugar-xero replay: stack prod-connector")
    assert "moved 1 message(s)" in out and "job job-4" in out


def test_the_cli_passes_replay_through(aws, environ, tmp_path, monkeypatch, capsys):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no state file of a running local stack here
    assert main(["replay", "--all", "--state-file", str(tmp_path / "none.json")]) == 0
    assert "Nothing to re-drive." in capsys.readouterr().out
