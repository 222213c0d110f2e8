"""Running PHP in tests: `php -l` on package files and evaluating them for what they define.

php-cli is required, never optional: `make test` installs it from Debian's packages where it is
missing; a test that cannot find it fails saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def php_binary() -> str:
    found = shutil.which("php")
    if not found:
        pytest.fail("php-cli is missing: `make test` installs it (apt-get install -y php-cli); "
                    "the package's PHP files cannot be checked without it")
    return found


def php_lint(path: Path) -> str:
    """`php -l` on one file: the error text, or '' when it parses."""
    result = subprocess.run([php_binary(), "-l", str(path)], capture_output=True, text=True, timeout=60)
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def php_eval(code: str, cwd: Path) -> Any:
    """Run ``code`` (PHP without the opening tag) in ``cwd`` and decode what it echoes as JSON."""
    script = cwd / "_test_eval.php"
    script.write_text("<?php\ndefine('sugarEntry', true);\n" + code)
    try:
        result = subprocess.run([php_binary(), str(script)], capture_output=True, text=True, timeout=60,
                                cwd=cwd)
    finally:
        script.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)
