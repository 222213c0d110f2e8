"""The running local stack's state file: where `demo`, `connect` and later `status`/`replay`
find its URLs. Kept apart from the stack itself so that reading it imports nothing heavy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE_NAME = ".sugar-xero-local.json"
PROJECT_DIR = Path(__file__).resolve().parents[2]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state_file(path: Path) -> dict[str, Any] | None:
    """The state of a running stack, or None (no file, unreadable, or its process is gone)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not process_alive(pid):
        return None
    return state


def find_state_file(start: Path | None = None) -> Path:
    """``.sugar-xero-local.json`` in the current folder or the nearest parent holding one, else
    in this project's folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STATE_FILE_NAME).exists():
            return folder / STATE_FILE_NAME
    return PROJECT_DIR / STATE_FILE_NAME
