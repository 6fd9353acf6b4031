"""The tiering rule of tests/conftest.py holds: every test folder is in one tier, `make test-fast`
runs exactly the fast one, and no fast-tier test builds the project's server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import FULL_TIER, TESTS, tier_of

ROOT = TESTS.parent
FOLDERS = sorted(p.name for p in TESTS.iterdir() if (p / "__init__.py").is_file())
# A fast-tier file may not start a server of this project: not in process, not as a process.
_STARTS_A_SERVER = re.compile(r"create_server\(|tests\.support\.servers|Popen\(")


def fast_tests() -> list[str]:
    line = re.search(r"^FAST_TESTS := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert line, "the Makefile declares no FAST_TESTS"
    return line.group(1).split()


def test_make_test_fast_runs_every_folder_but_the_full_tier_and_the_helpers() -> None:
    assert set(FULL_TIER) <= set(FOLDERS)
    expected = [f"tests/{name}" for name in FOLDERS if name not in (*FULL_TIER, "support")]
    assert sorted(fast_tests()) == expected


def test_every_test_file_lies_in_a_tier_folder() -> None:
    loose = [p.name for p in TESTS.glob("test_*.py")]
    assert not loose, f"test files directly under tests/ belong to no package folder: {loose}"
    helpers = [p.name for p in (TESTS / "support").glob("test_*.py")]
    assert not helpers, f"tests/support holds helpers, not tests: {helpers}"


@pytest.mark.parametrize("folder", [name for name in FOLDERS if name not in (*FULL_TIER, "support")])
def test_no_fast_tier_file_starts_a_server(folder: str) -> None:
    found = []
    for path in sorted((TESTS / folder).rglob("*.py")):
        assert tier_of(path) == "fast"
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _STARTS_A_SERVER.search(line) and path != Path(__file__).resolve():
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, (
        "fast-tier tests that start a server (move them to tests/integration or tests/e2e):\n" + "\n".join(found)
    )


def test_the_tier_of_a_path() -> None:
    assert tier_of(TESTS / "integration" / "test_server.py") == "full"
    assert tier_of(TESTS / "e2e" / "test_sigterm.py") == "full"
    assert tier_of(TESTS / "interp" / "test_pca.py") == "fast"
    assert tier_of(TESTS / "conftest.py") == "fast"


def test_slow_tests_lie_in_the_full_tier() -> None:
    slow = [
        str(path.relative_to(ROOT))
        for path in sorted(TESTS.rglob("test_*.py"))
        if "mark.slow" in path.read_text() and tier_of(path) == "fast" and path != Path(__file__).resolve()
    ]
    assert not slow, f"tests marked slow in the fast tier (move them to tests/integration): {slow}"
