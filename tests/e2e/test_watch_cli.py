"""`interp watch`: a short video made here from Fashion-MNIST images, streamed through Watch by the
console script against the real in-process server, written as a DVT video read back with OpenCV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from client.video import HEIGHT, WIDTH
from tests.conftest import require, require_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
INTERP = Path(sys.executable).parent / "interp"
FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from models.datasets import load_dataset

    require_fashion_mnist()
    images, _ = load_dataset("fashion-mnist", "test", download=False)
    path = tmp_path_factory.mktemp("video") / "fashion.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (56, 56))
    assert writer.isOpened()
    for i in range(FRAMES):
        gray = cv2.resize(images[i], (56, 56), interpolation=cv2.INTER_NEAREST)
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()
    return path


def _frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open with VideoCapture"
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_watch_writes_one_dvt_frame_per_processed_frame(target, clip, tmp_path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    out = tmp_path / "out.mp4"
    args = ["--server", target, "--json", "watch", "lenet", "--video", str(clip), "--layer", "relu2"]
    done = subprocess.run(
        [str(INTERP), *args, "--unit", "3", "-o", str(out), "--show"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["sent"] == FRAMES and document["errors"] == 0
    assert document["processed"] >= 1 and document["processed"] + document["skipped"] == FRAMES
    assert "--show: this OpenCV build has no GUI" in done.stderr  # opencv-python-headless here
    written = _frames(out)
    assert len(written) == document["processed"]
    assert written[0].shape == (HEIGHT, WIDTH, 3)
    grid = written[0][: HEIGHT // 2, WIDTH // 3 : 2 * WIDTH // 3]
    assert grid.std() > 10  # the channel grid is drawn
    yellow = (grid[:, :, 2] > 200) & (grid[:, :, 1] > 200) & (grid[:, :, 0] < 80)  # BGR
    rows, cols = np.nonzero(yellow)  # unit 3 framed: the last cell of the first row of 4 x 4
    assert yellow.sum() > 100 and cols.min() > grid.shape[1] // 2 and rows.max() < grid.shape[0] // 3


def test_every_frame_answers_each_frame_of_a_file(target, clip, tmp_path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    out = tmp_path / "all.webm"  # VP8: what browsers (and the explorer's /live page) play
    args = ["--server", target, "--json", "watch", "lenet", "--video", str(clip), "--layer", "conv1"]
    done = subprocess.run(
        [str(INTERP), *args, "--every-frame", "--top-k", "0", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["sent"], document["processed"], document["skipped"]) == (FRAMES, FRAMES, 0)
    assert len(_frames(out)) == FRAMES
    fourcc = int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FOURCC))
    assert fourcc.to_bytes(4, "little").decode() == "VP80"


def _watch(target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(INTERP), "--server", target, "watch", "lenet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_a_source_without_frames_or_a_refused_stream_leaves_no_video(target, clip, tmp_path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    text = tmp_path / "notes.png"  # OpenCV opens it (an image sequence) and reads no frame
    text.write_text("not a video\n")
    done = _watch(target, "--video", str(text), "--layer", "relu2", "-o", str(tmp_path / "a.mp4"))
    assert done.returncode == 1 and "cannot read a frame from" in done.stderr
    done = _watch(target, "--video", str(tmp_path / "missing.mp4"), "--layer", "relu2", "-o", str(tmp_path / "b.mp4"))
    assert done.returncode == 1 and "cannot open" in done.stderr
    done = _watch(target, "--video", str(clip), "--layer", "relu2", "--unit", "99", "-o", str(tmp_path / "c.mp4"))
    assert done.returncode == 13 and "unit must be in 0..15" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]  # no empty video of any of them


def test_a_fully_connected_layer_is_drawn_as_unit_cells_and_bars(target, clip, tmp_path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    out = tmp_path / "fc.mp4"
    done = _watch(target, "--video", str(clip), "--layer", "fc1", "--every-frame", "-o", str(out))
    assert done.returncode == 0, done.stderr
    frame = _frames(out)[0]
    grid = frame[: HEIGHT // 2, WIDTH // 3 : 2 * WIDTH // 3]
    bars = frame[: HEIGHT // 2, 2 * WIDTH // 3 :]
    assert grid.std() > 10  # 120 grey cells, scaled together (not each to its own empty range)
    yellow = (bars[:, :, 2] > 200) & (bars[:, :, 1] > 200) & (bars[:, :, 0] < 80)  # BGR
    assert yellow.any() and (bars.max(axis=2) > 100).mean() > 0.05  # the unit's bar among the others
