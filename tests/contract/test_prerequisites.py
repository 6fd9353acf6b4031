"""``tests.conftest.require``: a missing prerequisite skips on a developer machine, fails under CI=true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import MACHINE_SPECIFIC, require, skip_machine_specific


@pytest.mark.parametrize("ci", ["true", "True", "1"])
def test_missing_prerequisite_fails_under_ci(monkeypatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="missing prerequisite under CI=true: needs openssl"):
        require(None, "needs openssl")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_prerequisite_skips_elsewhere(monkeypatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="needs openssl"):
        require("", "needs openssl")


def test_present_prerequisite_does_nothing(monkeypatch) -> None:
    for ci in ("true", "false"):
        monkeypatch.setenv("CI", ci)
        require("/usr/bin/openssl", "needs openssl")
        require(True, "anything")


@pytest.mark.parametrize("ci", ["yes", "YES", " true "])
def test_every_truthy_ci_value_fails(monkeypatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception):
        require(False, "needs chromium")


# A skip outside require() and skip_machine_specific() is a test that CI could lose silently.
_ESCAPES = re.compile(r"pytest\.skip\(|importorskip\(|skipif\(|environ\.get\(\s*[\"']CI[\"']|mark\.skip\b")


def test_no_test_skips_except_through_the_one_helper() -> None:
    tests = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted(tests.rglob("*.py")):
        if path.name == "conftest.py" and path.parent == tests or path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _ESCAPES.search(line) and MACHINE_SPECIFIC not in line:
                found.append(f"{path.relative_to(tests.parent)}:{number}: {line.strip()}")
    assert not found, "skips that bypass tests.conftest.require:\n" + "\n".join(found)


def test_machine_specific_skips_carry_the_prefix_ci_accepts() -> None:
    with pytest.raises(pytest.skip.Exception, match=f"^{MACHINE_SPECIFIC}: no LAN"):
        skip_machine_specific("no LAN")
