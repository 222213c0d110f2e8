"""The local runtime's containers: one invocation at a time per (function, lane); the API lane
and each queue poller's lane run side by side, as Lambda's containers do."""

from __future__ import annotations

import sys
import threading
import time
import types

from sugar_xero.local.runtime import LocalRuntime
from sugar_xero.local.template import FunctionSpec

MODULE = "tests_lanes_fake_handler"


def _runtime(monkeypatch) -> tuple[LocalRuntime, dict]:
    seen = {"running": 0, "peak": 0}
    lock = threading.Lock()

    def handler(event, context):
        with lock:
            seen["running"] += 1
            seen["peak"] = max(seen["peak"], seen["running"])
        time.sleep(0.2)
        with lock:
            seen["running"] -= 1
        return {"ok": True}

    monkeypatch.setitem(sys.modules, MODULE, types.SimpleNamespace(handler=handler))
    spec = FunctionSpec("Fn", MODULE, "handler", "fn", 128, 30)
    runtime = LocalRuntime({"Fn": spec}, "eu-west-1")
    runtime.function("Fn")
    return runtime, seen


def _run_together(calls) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


def test_one_lane_serves_one_invocation_at_a_time(monkeypatch):
    runtime, seen = _runtime(monkeypatch)
    _run_together([lambda: runtime.invoke("Fn", {}) for _ in range(3)])
    assert seen["peak"] == 1


def test_the_api_and_two_pollers_run_side_by_side(monkeypatch):
    runtime, seen = _runtime(monkeypatch)
    _run_together([lambda: runtime.invoke("Fn", {}),
                   lambda: runtime.invoke("Fn", {}, lane="queue-0"),
                   lambda: runtime.invoke("Fn", {}, lane="queue-1")])
    assert seen["peak"] == 3
