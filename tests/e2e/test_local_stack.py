"""``sugar-xero local`` as a user runs it: a subprocess on free loopback ports, real HTTP, the
handlers behind the gateway and the poller, the Xero emulator and the Sugar double; then
``sugar-xero demo`` against it, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from tests.conftest import load_fixture

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
START_SECONDS = 45
JOB_SECONDS = 20
STOP_SECONDS = 15


class RunningStack:
    def __init__(self, process: subprocess.Popen, state_file: Path, lines: list[str]):
        self.process = process
        self.state_file = state_file
        self.lines = lines
        self.state = json.loads(state_file.read_text())
        self.api = self.state["urls"]["gateway"]
        self.xero = self.state["urls"]["xero"]
        self.sugar = self.state["urls"]["sugar"]
        self.moto = self.state["urls"]["moto"]

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def dynamodb(self):
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=self.state["region"]
        )
        return session.client("dynamodb", endpoint_url=self.moto)

    def job_items(self) -> int:
        table = self.state["tables"]["SyncTable"]
        pages = (
            self.dynamodb()
            .get_paginator("scan")
            .paginate(
                TableName=table,
                FilterExpression="begins_with(PK, :job)",
                ExpressionAttributeValues={":job": {"S": "JOB#"}},
                Select="COUNT",
            )
        )
        return sum(page["Count"] for page in pages)

    def queued_messages(self) -> int:
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=self.state["region"]
        )
        sqs = session.client("sqs", endpoint_url=self.moto)
        total = 0
        for queue in self.state["queues"].values():
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue["url"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            total += sum(int(v) for v in attributes.values())
        return total

    def xero_contacts(self) -> list[dict]:
        return requests.get(f"{self.xero}/_xero/state", timeout=10).json()["contacts"]

    def wait_for_job(self, job_id: str) -> dict:
        deadline = time.monotonic() + JOB_SECONDS
        job: dict = {}
        while time.monotonic() < deadline:
            answer = requests.get(f"{self.api}/jobs/{job_id}", params={"token": TOKEN}, timeout=10)
            assert answer.status_code == 200, answer.text
            job = answer.json()
            if job["status"] in {"succeeded", "failed", "ignored"}:
                return job
            time.sleep(0.1)
        pytest.fail(f"job {job_id} still {job.get('status')} after {JOB_SECONDS} s\n{self.output()}")


def _clean_environment(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "XERO_API_BASE_URL",
            "XERO_IDENTITY_URL",
            "SUGAR_BASE_URL",
            "PUBLIC_BASE_URL",
            "AWS_ENDPOINT_URL",
            "SYNC_TABLE",
            "CONTACT_QUEUE_URL",
            "XERO_TENANT_ID",
        }
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _process_group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(entry.name))
    return members


def _listening_ports() -> set[int]:
    """Ports with a socket in LISTEN state (``/proc/net/tcp``, state 0A)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _port_is_free(port: int) -> bool:
    """Nothing listens on it and it can be bound again (connections closing in TIME_WAIT do not
    count, as they do not for any server that sets SO_REUSEADDR)."""
    if port in _listening_ports():
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("local-stack")
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sugar_xero.cli",
            "local",
            "--port",
            "0",
            "--xero-port",
            "0",
            "--sugar-port",
            "0",
            "--state-file",
            str(state_file),
        ],
        cwd=tmp_path,
        env=_clean_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_SECONDS):
            pytest.fail(
                f"`sugar-xero local` printed no `ready` in {START_SECONDS} s:\n" + "\n".join(lines[-60:])
            )
        yield RunningStack(process, state_file, lines)
    finally:
        if process.poll() is None:  # a failed test must not leave the stack running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_prints_each_url_then_ready_and_writes_the_state_file(stack):
    text = stack.output()
    for url in (stack.api, stack.xero, stack.sugar, stack.moto):
        assert url.startswith("http://127.0.0.1:") and url in text
    assert stack.state["pid"] == stack.process.pid
    assert set(stack.state["queues"]) >= {"ContactSyncQueue", "ContactSyncDLQ"}
    assert requests.get(f"{stack.api}/health", timeout=10).json() == {"status": "ok"}


def test_an_account_callout_becomes_a_xero_contact_numbered_with_the_sugar_id(stack):
    hook = load_fixture("sugar/account_after_save.json")
    answer = requests.post(f"{stack.api}/crm/contacts", params={"token": TOKEN}, json=hook, timeout=10)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status_url"] == f"{stack.api}/jobs/{accepted['job_id']}"
    job = stack.wait_for_job(accepted["job_id"])
    assert job["status"] == "succeeded", job
    assert job["crm"] == {"module": "Accounts", "id": hook["data"]["id"]}
    contact_id = job["xero"]["contact_id"]
    [contact] = [c for c in stack.xero_contacts() if c["ContactID"] == contact_id]
    assert contact["ContactNumber"] == hook["data"]["id"]
    assert contact["Name"] == hook["data"]["name"]


def test_five_identical_callouts_at_once_make_one_job_and_one_contact(stack):
    hook = copy.deepcopy(load_fixture("sugar/account_after_save.json"))
    hook["data"].update(id="e2e-burst-0001", name="Burst Test Ltd")
    # The Account exists in the CRM: a write-back to a record that does not fails the job afterwards.
    requests.post(f"{stack.sugar}/_sugar/seed", timeout=10, json={"records": {"Accounts": [
        {"id": "e2e-burst-0001", "name": "Burst Test Ltd"}]}}).raise_for_status()
    body = json.dumps(hook)
    barrier = threading.Barrier(5)

    def send(_: int) -> requests.Response:
        barrier.wait(timeout=10)
        return requests.post(
            f"{stack.api}/crm/contacts",
            params={"token": TOKEN},
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=20,
        )

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(send, range(5)))
    assert [a.status_code for a in answers] == [202] * 5, [a.text for a in answers]
    job_ids = {a.json()["job_id"] for a in answers}
    assert len(job_ids) == 1
    assert sum(1 for a in answers if a.json()["duplicate"]) == 4
    job = stack.wait_for_job(job_ids.pop())
    assert job["status"] == "succeeded", job
    time.sleep(0.5)  # room for a (wrong) second delivery to land
    assert len([c for c in stack.xero_contacts() if c.get("ContactNumber") == "e2e-burst-0001"]) == 1


def test_a_callout_without_credentials_is_refused_and_leaves_no_trace(stack):
    hook = copy.deepcopy(load_fixture("sugar/account_after_save.json"))
    hook["data"].update(id="e2e-no-credentials", name="Nobody Ltd")
    jobs_before, contacts_before = stack.job_items(), len(stack.xero_contacts())
    answer = requests.post(f"{stack.api}/crm/contacts", json=hook, timeout=10)
    wrong = requests.post(
        f"{stack.api}/crm/contacts", params={"token": "not-the-token"}, json=hook, timeout=10
    )
    assert answer.status_code == 401 and wrong.status_code == 401
    assert "job_id" not in answer.text
    time.sleep(0.5)
    assert stack.job_items() == jobs_before
    assert stack.queued_messages() == 0
    assert len(stack.xero_contacts()) == contacts_before


def test_malformed_json_is_a_400_with_the_contract_error_body(stack):
    jobs_before = stack.job_items()
    answer = requests.post(
        f"{stack.api}/crm/contacts",
        params={"token": TOKEN},
        data=b'{"bean": "Account",',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "malformed_json" and body["message"] and isinstance(body["details"], list)
    assert stack.job_items() == jobs_before


def test_undeclared_routes_get_a_json_404(stack):
    answer = requests.get(f"{stack.api}/nowhere", timeout=10)
    assert answer.status_code == 404 and answer.json()["error"] == "no_such_route"


def test_demo_prints_the_contacts_it_made(stack):
    account = load_fixture("sugar/account_after_save.json")
    contact = load_fixture("sugar/contact_after_save_v8.json")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sugar_xero.cli",
            "demo",
            "--state-file",
            str(stack.state_file),
            "--wait",
            "20",
        ],
        cwd=REPO,
        env=_clean_environment(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"'{account['data']['name']}'" in result.stdout
    assert f"ContactNumber={account['data']['id']}" in result.stdout
    # The Contact has an Account: by default it becomes a contact person on the Account's contact.
    person = f"{contact['data']['first_name']} {contact['data']['last_name']}"
    assert f"contact person '{person}'" in result.stdout
    assert "succeeded" in result.stdout and "failed" not in result.stdout
    assert "Sugar records" in result.stdout and account["data"]["id"] in result.stdout


def test_sigint_stops_everything_and_frees_every_port(stack):
    ports = list(stack.state["ports"].values())
    pgid = os.getpgid(stack.process.pid)
    stack.process.send_signal(signal.SIGINT)
    try:
        code = stack.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_SECONDS} s after SIGINT\n{stack.output()}")
    assert code == 0, stack.output()
    deadline = time.monotonic() + 5
    while _process_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _process_group_members(pgid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(stack.process.pid, 0)
    assert all(_port_is_free(port) for port in ports), ports
    assert not stack.state_file.exists()
    assert "stopped" in stack.output()


def test_a_taken_port_is_a_clear_error_and_nothing_stays_running(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sugar_xero.cli",
                "local",
                "--port",
                str(port),
                "--xero-port",
                "0",
                "--sugar-port",
                "0",
                "--state-file",
                str(tmp_path / "state.json"),
            ],
            cwd=tmp_path,
            env=_clean_environment(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "port" in result.stderr
    assert "ready" not in result.stdout.split()
    assert not (tmp_path / "state.json").exists()
