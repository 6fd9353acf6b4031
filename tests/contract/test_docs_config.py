"""Every server flag is documented: docs/configuration.md (or the page that explains it) names
each flag of ``server.config.OPTIONS`` or its environment variable."""

from __future__ import annotations

from pathlib import Path

from server.config import OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_server_flag_is_documented() -> None:
    text = "\n".join(page.read_text() for page in sorted(DOCS.rglob("*.md")))
    assert "--max-images-per-call" in text
    undocumented = [flag for flag, env, *_ in OPTIONS if flag not in text and env not in text]
    assert undocumented == [], "add each to the table in docs/configuration.md"
