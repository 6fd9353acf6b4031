"""Every benchmark command the docs quote exists and takes the flags quoted.

docs/performance.md and docs/quality.md give, for each table, the command that prints it
(``python -m benchmarks.NAME --flag value``); a renamed script or flag would leave a figure that
no quoted command prints. The flags are read from the script's ``add_argument`` calls.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A quoted command: inside backticks, `python -m benchmarks.NAME` and what follows up to the backtick.
COMMAND = re.compile(r"`(?:\S*python )?-m (benchmarks\.\w+)([^`]*)`")
FLAG = re.compile(r"(?<!\S)(--[a-z][a-z0-9-]*)")


def script_flags(module: str) -> set[str]:
    """The option strings of every ``add_argument`` call in the module's source, and in the
    functions of benchmarks/_common.py it calls (``parse_bench_args``: --models, --threads)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    common = ast.parse((ROOT / "benchmarks" / "_common.py").read_text())
    shared = [f for f in common.body if isinstance(f, ast.FunctionDef) and f.name in called]
    flags = set()
    for node in [n for t in (tree, *shared) for n in ast.walk(t)]:
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return flags


def quoted_commands() -> list[tuple[str, str, str]]:
    """(where, module, arguments) for every quoted benchmark command."""
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                found.append((f"{page.relative_to(ROOT)}:{number}", match.group(1), match.group(2)))
    return found


def test_quoted_benchmark_commands_exist_and_take_their_flags() -> None:
    commands = quoted_commands()
    assert len(commands) >= 20, "the performance and quality pages quote their commands"
    problems = []
    for where, module, arguments in commands:
        if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            problems.append(f"{where}: no script {module}")
            continue
        unknown = set(FLAG.findall(arguments)) - script_flags(module)
        if unknown:
            problems.append(f"{where}: {module} takes no {sorted(unknown)}")
    assert problems == []


def test_the_check_reads_flags_and_finds_unknown_ones() -> None:
    flags = script_flags("benchmarks.bench_iterative")
    assert {"--models", "--rounds", "--threads"} <= flags
    assert "--no-such-flag" not in flags
    assert FLAG.findall(" --models lenet --threads 2 x--y") == ["--models", "--threads"]
