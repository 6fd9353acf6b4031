"""The repository stands alone: no file points at documents outside it, and the method reference
(docs/methods.md) names only scripts and modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {
    *(".git", ".venv", ".venv-bench", ".venv-docs", "node_modules", "site", "__pycache__"),
    ".import_linter_cache",
    *(".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache"),
}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".proto", ".pyi", ".cfg", ".txt", ".lock", ".json", ""}
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "ALGORITHMS" + r"\.md", "STYLE" + r"\.md", "/" + "work/"]))


def _text_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "Dockerfile"}):
            files.append(path)
    return files


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    files = _text_files()
    assert ROOT / "README.md" in files and ROOT / "models" / "lenet.py" in files
    offenders = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_methods_reference_names_files_that_exist() -> None:
    text = (ROOT / "docs" / "methods.md").read_text()
    named = set(re.findall(r"`((?:benchmarks|models|interp|server|client)/[\w/]+\.py)`", text))
    named |= {m.replace(".", "/") + ".py" for m in re.findall(r"python -m (benchmarks\.\w+)", text)}
    assert "benchmarks/eval_lenet_methods.py" in named and "benchmarks/eval_lenet_iterative.py" in named
    assert [name for name in sorted(named) if not (ROOT / name).is_file()] == []


def test_readme_points_at_the_methods_reference() -> None:
    assert "docs/methods.md" in (ROOT / "README.md").read_text()
