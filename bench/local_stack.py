"""Start `sugar-xero local` as a subprocess on free loopback ports, for benchmarks that go
through the whole stack. Bounded: every wait has a deadline and the stack is always stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

STARTUP_SECONDS = 60


@contextmanager
def running_stack():
    """The running stack's URLs by name (gateway, xero, sugar, aws)."""
    with running_stack_state() as state_file:
        yield json.loads(state_file.read_text())["urls"]


@contextmanager
def running_stack_state():
    """The running stack's state file (URLs, queues, tables, the handlers' environment)."""
    folder = Path(tempfile.mkdtemp(prefix="sugar-xero-bench-"))
    state_file = folder / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sugar_xero.cli", "local", "--port", "0", "--xero-port", "0",
         "--sugar-port", "0", "--state-file", str(state_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()

    def watch() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(STARTUP_SECONDS):
            raise RuntimeError("the local stack did not become ready in time")
        yield state_file
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def xero_requests(xero_url: str) -> list[dict[str, Any]]:
    return requests.get(f"{xero_url}/_emulator/requests", timeout=30).json()["requests"]


def wait_for_jobs(api_url: str, job_ids: list[str], token: str, deadline_seconds: float) -> dict[str, str]:
    """Poll every job until none is queued or in progress, or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    pending, final = set(job_ids), {}
    session = requests.Session()
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            status = session.get(f"{api_url}/jobs/{job_id}", params={"token": token}, timeout=30).json()["status"]
            if status not in {"queued", "in_progress"}:
                final[job_id] = status
                pending.discard(job_id)
        if pending:
            time.sleep(0.5)
    final.update({job_id: "unfinished" for job_id in pending})
    return final
