"""``interp watch``: a video or a camera through Watch, written as a Deep Visualization Toolbox video.

Each processed frame becomes one output frame: the input frame, the grid of the layer's channels,
the selected unit enlarged, the top-5 classes and the frames per second. Frames are sent as fast as
they are read; the server computes the newest and skips the others (counted); ``--every-frame``
sends each frame once the previous one is answered, so none is skipped (a file, offline). This is the one client
module that imports OpenCV (the ``video`` extra, opencv-python-headless); the SDK stays free of it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from client.sdk import InterpClient
from client.watch import WatchFrame

__all__ = ["channel_grid", "dvt_frame", "run", "unit_bars"]

PANEL = 256  # side of each of the three panels
TEXT_HEIGHT = 128  # the strip under them: classes, fps, counters
WIDTH, HEIGHT = 3 * PANEL, PANEL + TEXT_HEIGHT


def _frames(
    first: np.ndarray, capture: Any, limit: int | None, kept: dict[int, np.ndarray], count: list[int]
) -> Iterator[np.ndarray]:
    """RGB frames: ``first`` (BGR, already read) then the rest of ``capture``; each is also kept by
    its sequence number until answered."""
    bgr: np.ndarray | None = first
    while limit is None or count[0] < limit:
        if bgr is None:
            ok, bgr = capture.read()
            if not ok:
                return
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        bgr = None
        kept[count[0]] = rgb
        count[0] += 1
        yield rgb


GAP_BGR = (180, 130, 70)  # steel blue between the cells: never mistaken for a map's own grey
SELECTED_BGR = (0, 255, 255)  # yellow: the selected unit, as on the explorer's /live page


def channel_grid(maps: np.ndarray, side: int = PANEL, selected: int | None = None) -> np.ndarray:
    """(C, H, W) or (F,) maps -> a side x side BGR grid: square cells 2 px apart, each numbered
    when there is room, ``selected`` framed in yellow.

    Spatial maps are each scaled to their own range; the units of a fully connected layer (one
    value each, no range of their own) are scaled together, one grey cell per unit.
    """
    if maps.ndim == 1:
        low, high = float(maps.min()), float(maps.max())
        maps = ((maps - low) / (high - low) if high > low else np.zeros_like(maps))[:, None, None]
    else:
        flat = maps.reshape(maps.shape[0], -1)
        low_c, high_c = flat.min(axis=1)[:, None, None], flat.max(axis=1)[:, None, None]
        maps = (maps - low_c) / np.where(high_c > low_c, high_c - low_c, 1.0)
    scaled = (maps * 255.0).astype(np.uint8)
    channels = maps.shape[0]
    columns = math.ceil(math.sqrt(channels))
    gap = 2 if channels > 1 else 0
    cell = (side - gap * (columns - 1)) // columns
    if cell < 3:  # thousands of units (a fully connected layer): every one shown, no room for gaps
        return _dense_grid(scaled, columns, side, selected)
    grid = np.empty((side, side, 3), np.uint8)
    grid[:] = GAP_BGR if channels > 1 else 0
    for c in range(channels):
        r, q = divmod(c, columns)
        top, left = r * (cell + gap), q * (cell + gap)
        if top + cell > side:
            break
        tile = cv2.resize(scaled[c], (cell, cell), interpolation=cv2.INTER_NEAREST)
        grid[top : top + cell, left : left + cell] = tile[:, :, None]
        if channels > 1 and cell >= 20:
            cv2.putText(grid, str(c), (left + 2, top + 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 0, 0), 2)
            cv2.putText(grid, str(c), (left + 2, top + 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1)
        if c == selected:
            cv2.rectangle(grid, (left, top), (left + cell - 1, top + cell - 1), SELECTED_BGR, 2)
    return grid


def _dense_grid(scaled: np.ndarray, columns: int, side: int, selected: int | None) -> np.ndarray:
    """Too many cells for gaps: the maps side by side at their own size, scaled to the panel
    (nearest neighbour), the selected one framed."""
    channels, h, w = scaled.shape
    rows = math.ceil(channels / columns)
    native = np.zeros((rows * h, columns * w), np.uint8)
    for c in range(channels):
        r, q = divmod(c, columns)
        native[r * h : (r + 1) * h, q * w : (q + 1) * w] = scaled[c]
    grid = cv2.cvtColor(cv2.resize(native, (side, side), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    if selected is not None and 0 <= selected < channels:
        r, q = divmod(selected, columns)
        sy, sx = side / (rows * h), side / (columns * w)
        top, left = int(r * h * sy), int(q * w * sx)
        cv2.rectangle(grid, (left - 1, top - 1), (int((q + 1) * w * sx), int((r + 1) * h * sy)), SELECTED_BGR, 1)
    return grid


def unit_bars(values: np.ndarray, unit: int, side: int = PANEL) -> np.ndarray:
    """(F,) values of a fully connected layer -> a side x side BGR bar chart from the layer's
    minimum (or zero, when all are positive) to its maximum; ``unit``'s bar in yellow."""
    chart = np.zeros((side, side, 3), np.uint8)
    low, high = min(float(values.min()), 0.0), float(values.max())
    if high <= low:
        return chart
    edges = np.linspace(0, side, len(values) + 1).astype(int)
    heights = np.rint((values - low) / (high - low) * (side - 1)).astype(int)
    for i, height in enumerate(heights):
        right = max(edges[i + 1] - (1 if edges[i + 1] - edges[i] > 2 else 0), edges[i] + 1)
        chart[side - 1 - height :, edges[i] : right] = (0, 255, 255) if i == unit else (170, 170, 170)
    return chart


def _panel(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[:2] == (PANEL, PANEL):
        return image
    return cv2.resize(image, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)


def dvt_frame(frame_rgb: np.ndarray | None, answer: WatchFrame, fps: float, asked: str = "") -> np.ndarray:
    """The output frame (BGR, HEIGHT x WIDTH) for one answer; ``asked``: the layer's name as the
    user gave it (an alias such as relu2), shown beside the module path the answer names."""
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    if frame_rgb is not None:
        canvas[:PANEL, :PANEL] = _panel(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    lines = []
    maps = answer.maps if answer.error is None else None  # decoded on each read: once here
    if answer.error is not None:
        lines.append(f"frame {answer.sequence}: {answer.error}"[:90])
    elif maps is not None:
        layer = answer.layer if asked in ("", answer.layer) else f"{asked} ({answer.layer})"
        unit = answer.unit
        if unit < 0:  # none selected: the most active one
            unit = int(maps.reshape(maps.shape[0], -1).mean(axis=1).argmax())
        canvas[:PANEL, PANEL : 2 * PANEL] = channel_grid(maps, selected=unit)
        if maps.ndim == 1:  # a fully connected layer: every unit's value as a bar, this one in yellow
            canvas[:PANEL, 2 * PANEL :] = unit_bars(maps, unit)
            caption = f"{layer}  unit {unit} = {float(maps[unit]):.3g}"
        else:
            single = answer.unit_map if answer.unit_map is not None and answer.unit_map.ndim == 2 else maps[unit]
            canvas[:PANEL, 2 * PANEL :] = channel_grid(single[None])
            caption = f"{layer}  unit {unit}"
        lines.append(caption)
        lines.extend(f"{p:.1%}\t{label}" for _, label, p in answer.predictions[:5])
    for i, line in enumerate(lines[:6]):  # "probability<TAB>class": the class in a column of its own
        y = PANEL + 18 + 17 * i
        for x, part in zip((8, 72), line.split("\t"), strict=False):
            cv2.putText(canvas, part, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    status = f"{fps:5.1f} fps  frame {answer.sequence}  skipped {answer.skipped}  {answer.compute_ms:.1f} ms"
    cv2.putText(canvas, status, (2 * PANEL + 8, PANEL + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
    return canvas


CODECS = {".webm": "VP80", ".avi": "MJPG"}
"""Video codec by the output's extension: VP8 WebM plays in browsers (and on the explorer's /live
page); anything else is MPEG-4 Part 2, which video players read and browsers do not."""


def codec_for(output: str) -> str:
    return CODECS.get(os.path.splitext(output)[1].lower(), "mp4v")


def run(c: InterpClient, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Read the source, stream it through Watch, write (and optionally show) the DVT video."""
    source_name = args.video if args.video is not None else f"camera {args.camera}"
    capture = cv2.VideoCapture(args.video if args.video is not None else args.camera)
    if not capture.isOpened():
        raise OSError(f"cannot open {source_name} with OpenCV")
    ok, first = capture.read()  # OpenCV opens some files it cannot read (an image, a text file)
    if not ok:
        capture.release()
        raise OSError(f"cannot read a frame from {source_name} with OpenCV")
    source_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    codec = codec_for(args.output)
    writer = cv2.VideoWriter(args.output, cv2.VideoWriter.fourcc(*codec), source_fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        capture.release()
        raise OSError(f"cannot write {args.output} with OpenCV ({codec})")
    show = args.show
    kept: dict[int, np.ndarray] = {}
    read = [0]
    processed = skipped = errors = 0
    started = time.perf_counter()
    try:
        source = _frames(first, capture, args.max_frames, kept, read)
        settings = {"model": args.model, "layer": args.layer, "unit": args.unit, "top_k": args.top_k}
        answers = _one_at_a_time(c, source, settings) if args.every_frame else c.watch(source, **settings)
        for answer in answers:
            if answer.sequence < 0:  # a refused settings change: nothing to draw
                continue
            processed += 1
            skipped += answer.skipped
            errors += answer.error is not None
            fps = processed / max(time.perf_counter() - started, 1e-9)
            frame = kept.get(answer.sequence)
            for sequence in [s for s in kept if s <= answer.sequence]:
                del kept[sequence]  # only frames not yet answered stay
            picture = dvt_frame(frame, answer, fps, args.layer)
            writer.write(picture)
            if show:
                show = _show(picture)
    except BaseException:
        writer.release()
        if processed == 0:  # a refused stream (bad layer or unit) leaves no empty video behind
            Path(args.output).unlink(missing_ok=True)
        raise
    finally:
        writer.release()
        capture.release()
    elapsed = time.perf_counter() - started
    fps = processed / elapsed if elapsed > 0 else 0.0
    document = {
        "output": args.output,
        "sent": read[0],
        "processed": processed,
        "skipped": skipped,
        "errors": errors,
        "fps": round(fps, 2),
    }
    text = (
        f"{args.output}: {processed} frames processed of {read[0]} read "
        f"({skipped} skipped, {errors} errors), {fps:.1f} fps"
    )
    return text, document


def _one_at_a_time(c: InterpClient, frames: Iterator[np.ndarray], settings: dict[str, Any]) -> Iterator[WatchFrame]:
    """Every frame answered (``--every-frame``): each is sent once the previous one's answer came."""
    with c.watch_session(**settings) as session:
        answers = iter(session)
        for frame in frames:
            session.send(frame)
            yield next(answers)


def _show(picture: np.ndarray) -> bool:
    """Show one frame; False (and a note) when this OpenCV has no GUI (opencv-python-headless)."""
    try:
        cv2.imshow("interp watch", picture)
        cv2.waitKey(1)
        return True
    except cv2.error:
        print(
            "--show: this OpenCV build has no GUI (opencv-python-headless); install opencv-python to see the frames",
            file=sys.stderr,
        )
        return False
