"""``tests.conftest.require``: a missing prerequisite skips on a developer machine, fails under CI=true."""

from __future__ import annotations

import pytest

from tests.conftest import require


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
