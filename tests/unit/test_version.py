"""One version: the package's, pyproject's (read from it), the OpenAPI document's and the
README changelog's newest entry agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sugar_xero import __version__
from sugar_xero.openapi import build_spec

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_packages_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sugar_xero.__version__"}


def test_the_openapi_document_and_the_changelog_carry_the_same_version():
    assert build_spec()["info"]["version"] == __version__
    changelog = (REPO / "README.md").read_text().split("## Changelog", 1)[1]
    newest = re.search(r"^- (\d+\.\d+\.\d+) — ", changelog, re.MULTILINE)
    assert newest and newest.group(1) == __version__


def test_sugar_xero_openapi_prints_the_document(capsys):
    import json

    from sugar_xero.cli import main

    assert main(["openapi", "--server-url", "https://api.example.com/prod"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["info"]["version"] == __version__
    assert printed["servers"] == [{"url": "https://api.example.com/prod"}]
    assert "/crm/contacts" in printed["paths"]
