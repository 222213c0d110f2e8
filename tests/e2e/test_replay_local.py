"""Issue 7's "done when": `sugar-xero demo` injects a failure through the Xero emulator's fault
controls, `sugar-xero status` shows it (the contact dead-letter queue, exit 1), and
`sugar-xero replay` clears it, with one Xero contact at the end and no second write of it.

The stack runs with SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT=1 (the local-only knob of
sugar_xero/local/aws_resources.py), so the failing job is dead-lettered after one delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.demo import FAULT_PATH

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
START_SECONDS = 60
COMMAND_SECONDS = 90


def _environment(**extra: str) -> dict[str, str]:
    skip = {"XERO_API_BASE_URL", "XERO_IDENTITY_URL", "SUGAR_BASE_URL", "PUBLIC_BASE_URL", "AWS_ENDPOINT_URL",
            "SYNC_TABLE", "CONTACT_QUEUE_URL", "CONTACT_DLQ_URL", "XERO_TENANT_ID"}
    return {**{k: v for k, v in os.environ.items() if k not in skip}, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay-stack")
    state_file = folder / ".sugar-xero-local.json"  # where the commands run in ``folder`` look
    process = subprocess.Popen(
        [sys.executable, "-m", "sugar_xero.cli", "local", "--port", "0", "--xero-port", "0", "--sugar-port", "0",
         "--state-file", str(state_file)],
        cwd=folder, env=_environment(SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT="1"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
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
            pytest.fail(f"`sugar-xero local` printed no `ready` in {START_SECONDS} s:\n" + "\n".join(lines[-60:]))
        state = json.loads(state_file.read_text())
        yield {"state_file": state_file, "folder": folder, "lines": lines, **state["urls"]}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def cli(stack, *argv: str) -> subprocess.CompletedProcess:
    # Run from the stack's folder: the commands find its state file by themselves, as a user's would.
    return subprocess.run([sys.executable, "-m", "sugar_xero.cli", *argv], cwd=stack["folder"],
                          env=_environment(), capture_output=True, text=True, timeout=COMMAND_SECONDS)


def contact_writes(stack) -> list[dict]:
    log = requests.get(f"{stack['xero']}/_emulator/requests", timeout=10).json()["requests"]
    return [r for r in log if r["method"] == "POST" and r["path"].startswith(FAULT_PATH)]


def contacts_numbered(stack, number: str) -> list[dict]:
    state = requests.get(f"{stack['xero']}/_emulator/state", timeout=10).json()
    return [c for tenant in state["tenants"].values() for c in tenant.get("contacts", [])
            if c.get("ContactNumber") == number]


def test_status_shows_the_demo_failure_and_replay_clears_it(stack):
    demo = cli(stack, "demo", "--wait", "60")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Injecting one failure" in demo.stdout
    assert "it is in the contact dead-letter queue" in demo.stdout and "the fault is lifted now" in demo.stdout
    assert "See it:   sugar-xero status" in demo.stdout and "Clear it: sugar-xero replay --all" in demo.stdout
    job_id = demo.stdout.split("Injecting one failure", 1)[1].split("job ", 1)[1].split(":", 1)[0]
    account_id = demo.stdout.split("while Accounts/", 1)[1].split(" ", 1)[0]
    faults = requests.get(f"{stack['xero']}/_emulator/faults", timeout=10).json()
    assert faults["pending_next"] == [] and faults["rate"] == 0  # lifted
    injected = [w for w in contact_writes(stack) if w.get("fault") == "503"]
    assert len(injected) == 5  # one delivery (maxReceiveCount 1) x the Xero client's 5 attempts

    status = cli(stack, "status", "--json")
    assert status.returncode == 1, status.stdout + status.stderr
    report = json.loads(status.stdout)
    [contact] = [q for q in report["queues"] if q["name"] == "contact"]
    assert contact["dlq"]["visible"] + contact["dlq"]["in_flight"] == 1
    assert any("contact dead-letter queue" in p and "sugar-xero replay" in p for p in report["problems"])
    job = requests.get(f"{stack['gateway']}/jobs/{job_id}", params={"token": TOKEN}, timeout=10).json()
    # the job says what happened, and status lists it among the latest failures
    assert job["status"] == "failed" and job["error"].startswith("dead-lettered after 1 attempt: ")
    assert "503" in job["error"]
    assert job_id in [failure["job_id"] for failure in report["recent_failures"]]
    writes_before = [w for w in contact_writes(stack) if w["status"] == 200]
    assert len(contacts_numbered(stack, account_id)) == 1

    replay = cli(stack, "replay", "--all", "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    moved = json.loads(replay.stdout)
    assert moved["moved"] == 1
    [contact_dlq] = [q for q in moved["dead_letter_queues"] if q["name"] == "contact"]
    assert contact_dlq["job_ids"] == [job_id]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = requests.get(f"{stack['gateway']}/jobs/{job_id}", params={"token": TOKEN}, timeout=10).json()
        if job["status"] != "queued" and job["status"] != "in_progress":
            break
        time.sleep(0.25)
    assert job["status"] == "succeeded", job

    healthy = cli(stack, "status")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "Healthy." in healthy.stdout

    # Nothing duplicated: one Xero contact for the Account, now with the phone saved while Xero
    # was down, and exactly one more successful contact write (the replayed job's).
    [landed] = contacts_numbered(stack, account_id)
    assert "+00 0000 0503" in [p.get("PhoneNumber") for p in landed.get("Phones", [])]
    assert len([w for w in contact_writes(stack) if w["status"] == 200]) == len(writes_before) + 1
