"""The examples of README.md and of every page under docs/ run against the real in-process server,
so they cannot drift.

Every fenced block in README.md or docs/**/*.md whose language is python, console, shell, bash or
sh is either run here or preceded by an explicit ``<!-- no-test: reason -->`` comment (e.g.
docker, make):

- ``python`` blocks run as a script in a scratch directory holding the images the README names
  (``cat.jpg``: scikit-image's cat photo; ``sneaker.png``: the first Fashion-MNIST test sneaker),
  with the examples' address ``localhost:50051`` replaced by the test server's;
- ``console``/``shell`` blocks are transcripts: each ``$ interp ...`` line runs the installed
  ``interp`` console script (``INTERP_SERVER`` set to the test server), must exit 0, and its
  output must have the page's shape: line for line the same words, where a word holding a
  digit (a number, a hash, a request id) matches any word holding a digit, and a ``...`` line
  stands for any number of lines.

A page whose transcripts start a service (``$ interp-server ...``, ``$ interp-web ...``) is a walk
(docs/own-models.md: train a model, write its card, serve it, use it): its blocks run in order in
one test, in a scratch directory of its own. ``interp-server`` starts as a process there on a free
port (added to the page's flags) and the walk's later ``interp`` lines and python blocks use it
once no model is LOADING; ``interp-web`` starts against it, and every explorer address the page
names (``http://127.0.0.1:8080/...``) must answer 200.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# The pages whose examples run: the README and every page of the docs site.
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
INTERP = Path(sys.executable).parent / "interp"
README_TARGET = "localhost:50051"
CODE_LANGUAGES = {"python", "console", "shell", "bash", "sh"}
TRANSCRIPT_LANGUAGES = {"console", "shell"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
NO_TEST = re.compile(r"^<!--\s*no-test:\s*(\S.*?)\s*-->$")
SERVICES = {"interp-server", "interp-web"}  # started in the background by a walk's transcript
EXPLORER_ADDRESS = re.compile(r"http://127\.0\.0\.1:8080(/[^\s)`>\]]*)")


@dataclass(frozen=True)
class Block:
    page: Path
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    no_test: str | None  # the reason given by a <!-- no-test: ... --> comment right before it

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = NO_TEST.match(before[-1].strip()) if before else None
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(page, match.group(1).lower(), match.group(2), line, marker.group(1) if marker else None))
    return blocks


@dataclass(frozen=True)
class Command:
    block: Block
    argv: list[str]
    expected: list[str]

    @property
    def name(self) -> str:
        return f"{self.block.name} $ {shlex.join(self.argv)}"


def transcript_commands(block: Block) -> list[Command]:
    """``$ interp ...`` lines and the output lines under each, up to the next ``$`` or blank line."""
    commands: list[Command] = []
    argv: list[str] | None = None
    expected: list[str] = []
    for raw in [*block.code.splitlines(), ""]:
        if raw.startswith("$ ") or not raw.strip():
            if argv is not None:
                commands.append(Command(block, argv, expected))
            argv, expected = (shlex.split(raw[2:]), []) if raw.startswith("$ ") else (None, [])
        elif argv is not None:
            expected.append(raw)
    return commands


def runnable(block: Block) -> bool:
    return block.language in CODE_LANGUAGES and block.no_test is None


def is_walk(page: Path) -> bool:
    """Whether the page's transcripts start a service: its blocks then run in order (test_walk_runs)."""
    return any(
        command.argv[0] in SERVICES
        for block in page_blocks(page)
        if runnable(block) and block.language in TRANSCRIPT_LANGUAGES
        for command in transcript_commands(block)
    )


WALKS = [page for page in PAGES if is_walk(page)]
BLOCKS = [block for page in PAGES for block in page_blocks(page)]
PYTHON_BLOCKS = [b for b in BLOCKS if b.language == "python" and b.no_test is None and b.page not in WALKS]
COMMANDS = [
    command
    for block in BLOCKS
    if block.language in TRANSCRIPT_LANGUAGES and block.no_test is None and block.page not in WALKS
    for command in transcript_commands(block)
]


def test_every_code_block_is_run_or_says_why_not() -> None:
    unrunnable = []
    for block in BLOCKS:
        if block.language not in CODE_LANGUAGES or block.no_test is not None:
            continue
        if block.language == "python":
            continue
        commands = transcript_commands(block) if block.language in TRANSCRIPT_LANGUAGES else []
        allowed = {"interp", *SERVICES} if block.page in WALKS else {"interp"}
        if not commands or any(c.argv[0] not in allowed for c in commands):
            unrunnable.append(f"{block.name} ({block.language})")
    assert unrunnable == [], (
        "README/docs blocks the tests cannot run: make them `$ interp ...` transcripts or python, or put "
        "<!-- no-test: reason --> on the line before the block"
    )
    assert PYTHON_BLOCKS and COMMANDS  # the harness found the examples it is meant to run
    assert ROOT / "docs" / "own-models.md" in WALKS


def test_every_page_with_examples_is_read() -> None:
    """The README and the docs pages that hold examples are all among the pages read (a moved
    docs folder or a glob that matches nothing would otherwise run no example at all)."""
    pages = {block.page for block in BLOCKS if block.language in CODE_LANGUAGES}
    assert README in pages
    assert {"cli.md", "sdk.md"} <= {page.name for page in pages}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, cat_rgb, sneaker_png: bytes) -> Path:
    """A scratch directory with the image files the examples name."""
    directory = tmp_path_factory.mktemp("examples")
    if not cv2.imwrite(str(directory / "cat.jpg"), cv2.cvtColor(cat_rgb, cv2.COLOR_RGB2BGR)):
        raise RuntimeError("could not write cat.jpg")
    (directory / "sneaker.png").write_bytes(sneaker_png)
    # clip.mp4: 120 frames of the sneaker, brightening, for the live-view examples (interp watch, c.watch)
    sneaker = cv2.resize(cv2.imdecode(np.frombuffer(sneaker_png, np.uint8), cv2.IMREAD_COLOR), (56, 56))
    writer = cv2.VideoWriter(str(directory / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 24.0, (56, 56))
    for i in range(120):
        writer.write(cv2.convertScaleAbs(sneaker, alpha=0.5 + i / 240))
    writer.release()
    return directory


def run_python(block: Block, target: str, workdir: Path) -> None:
    assert README_TARGET in block.code or "InterpClient(" not in block.code, "examples connect to localhost:50051"
    code = block.code.replace(README_TARGET, target)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{block.name} failed:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.name for b in PYTHON_BLOCKS])
def test_python_example_runs(block: Block, target: str, workdir: Path) -> None:
    run_python(block, target, workdir)


def _words(line: str) -> list[str]:
    return line.split()


def _same_shape(expected: str, actual: str) -> bool:
    want, got = _words(expected), _words(actual)
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        numeric = any(ch.isdigit() for ch in w) and any(ch.isdigit() for ch in g)
        if w != g and not numeric:
            return False
    return True


def _matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (with ``...`` lines as gaps of any length) matches all of ``actual``."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and _same_shape(head, actual[0]) and _matches(rest, actual[1:])


def run_command(command: Command, target: str, workdir: Path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    env = {**os.environ, "INTERP_SERVER": target, "COLUMNS": "200"}
    done = subprocess.run(
        [str(INTERP), *command.argv[1:]], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command.name} exited {done.returncode}:\n{done.stderr[-3000:]}"
    actual = [line for line in done.stdout.splitlines() if line.strip()]
    assert _matches(command.expected, actual), (
        f"{command.name}: the output no longer has the page's shape.\nexpected:\n"
        + "\n".join(command.expected)
        + "\nactual:\n"
        + "\n".join(actual)
    )


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_cli_transcript_runs(command: Command, target: str, workdir: Path) -> None:
    run_command(command, target, workdir)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def service(argv: list[str], workdir: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """``argv`` as a process in ``workdir`` until the block ends; ``ready()`` polled until true."""
    log = workdir / f"{Path(argv[0]).name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert process.poll() is None, f"{shlex.join(argv)} exited {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{shlex.join(argv)} not ready in 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serving(target: str) -> bool:
    """The server answers ListModels and no model is still LOADING."""
    from client import InterpClient

    try:
        with InterpClient(target, timeout=5) as client:
            return all(model.status != "LOADING" for model in client.list_models())
    except Exception:  # not listening yet, or not answering yet
        return False


def answers(url: str) -> bool:
    from tests.e2e.web_harness import request

    try:
        return request(url).status == 200
    except OSError:
        return False


@pytest.mark.parametrize("page", WALKS, ids=[str(page.relative_to(ROOT)) for page in WALKS])
def test_walk_runs(page: Path, workdir: Path, tmp_path: Path) -> None:
    from tests.e2e.web_harness import request

    directory = tmp_path / "walk"
    shutil.copytree(workdir, directory)
    target, site = README_TARGET, ""
    with ExitStack() as services:
        for block in filter(runnable, page_blocks(page)):
            if block.language == "python":
                run_python(block, target, directory)
                continue
            for command in transcript_commands(block):
                script = str(INTERP.parent / command.argv[0])
                if command.argv[0] == "interp-server":
                    target = f"127.0.0.1:{free_port()}"
                    argv = [script, *command.argv[1:], "--port", target.rsplit(":", 1)[1]]
                    services.enter_context(service(argv, directory, partial(serving, target)))
                elif command.argv[0] == "interp-web":
                    site = f"http://127.0.0.1:{free_port()}"
                    argv = [script, *command.argv[1:], "--server", target, "--port", site.rsplit(":", 1)[1]]
                    services.enter_context(service(argv, directory, partial(answers, site + "/api/models")))
                else:
                    run_command(command, target, directory)
        addresses = EXPLORER_ADDRESS.findall(page.read_text())
        assert not addresses or site, f"{page.name} names explorer addresses but starts no interp-web"
        statuses = {path: request(site + path).status for path in addresses}
        assert all(status == 200 for status in statuses.values()), statuses


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (["A  1.0  x"], ["A 2.5 x"], True),
        (["A  1.0  x"], ["A 2.5 y"], False),
        (["A", "...", "C"], ["A", "B", "B", "C"], True),
        (["A", "C"], ["A", "B", "C"], False),
        (["A"], ["A", "B"], False),
        (["x 7 Sneaker"], ["x 5 Sandal"], False),
    ],
)
def test_shape_matcher(expected: list[str], actual: list[str], ok: bool) -> None:
    assert _matches(expected, actual) is ok
