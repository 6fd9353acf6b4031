"""The ``/live`` page's WebSocket: frames from the browser, a layer's maps back, one Watch stream per socket.

The browser sends a frame (JPEG or PNG bytes, one binary message) only once the answer to the
previous one arrived, so at most one frame is in flight end to end (latest frame wins: the
page drops camera frames itself). A text message ``{"unit": U}`` or ``{"layer": L}`` changes the
unit or layer through the open :class:`client.watch.WatchSession`, effective from the next frame.
Each answer is one JSON text message: the layer's channels tiled into one grid PNG (``cols`` x
``rows`` tiles, 1 pixel apart, the selected unit's framed), the selected unit's map, the top classes.

Security: the Guard passes WebSockets through to here, where the same checks apply: the Host
must be one this explorer answers, the Origin (always sent by browsers on a WebSocket handshake)
must be this origin, and the login cookie is needed when an access token is set.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from client.watch import WatchFrame, WatchSession
from web.errors import error_body
from web.explorer import Explorer
from web.pngs import data_url, encode_png, normalized
from web.security import Session, host_name

POLICY_VIOLATION = 1008
MAX_FRAME_BYTES = 4 << 20


def socket_refusal(websocket: WebSocket) -> str:
    """Why this handshake is refused ('' when it may go on): host, origin, login."""
    explorer: Explorer = websocket.app.state.explorer
    session: Session = websocket.app.state.session
    hosts = {h.lower() for h in explorer.settings.hosts()}
    host = websocket.headers.get("host", "")
    if "*" not in hosts and host_name(host) not in hosts:
        return f"this explorer does not answer {host_name(host)!r}"
    origin = websocket.headers.get("origin")
    if origin is None or urlsplit(origin).netloc != host:
        return f"cross-origin WebSocket refused (Origin {origin})"
    if not session.logged_in(websocket):
        return "log in to the explorer first"
    return ""


GAP_GREY = 0.35  # the 1-pixel lines between tiles; the selected unit's tile is framed in white


def tile(maps: np.ndarray, unit: int = -1) -> tuple[np.ndarray, dict[str, int]]:
    """(C, H, W) or (F,) maps as one grey grid image scaled by the layer's range, and its layout
    (``cols``, ``rows``, ``tile_width``, ``tile_height``, ``gap``, ``channels``: what a click maps back with)."""
    array = maps.reshape(-1, 1, 1) if maps.ndim == 1 else maps
    channels, height, width = array.shape
    cols = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / cols)
    gap = 1 if height > 1 else 0
    scaled = normalized(array)
    grid = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap), GAP_GREY, np.float32)
    for c in range(channels):
        top, left = divmod(c, cols)[0] * (height + gap), divmod(c, cols)[1] * (width + gap)
        if c == unit and gap:
            grid[max(top - 1, 0) : top + height + 1, max(left - 1, 0) : left + width + 1] = 1.0
        grid[top : top + height, left : left + width] = scaled[c]
    layout = {"cols": cols, "rows": rows, "tile_width": width, "tile_height": height, "gap": gap, "channels": channels}
    return grid, layout


def answer_json(frame: WatchFrame) -> dict[str, Any]:
    """One answer as the page's message."""
    out: dict[str, Any] = {"type": "frame", "sequence": frame.sequence, "skipped": frame.skipped,
                           "layer": frame.layer, "unit": frame.unit, "compute_ms": round(frame.compute_ms, 2),
                           "predictions": [{"index": i, "label": label, "probability": p}
                                           for i, label, p in frame.predictions]}  # fmt: skip
    if frame.error is not None:
        out["error"] = error_body(frame.error)
    if frame.maps is not None:
        grid, layout = tile(frame.maps, frame.unit)
        out.update(grid=data_url(encode_png(grid)), **layout)
    if frame.unit_map is not None:
        out["unit_map"] = data_url(encode_png(normalized(frame.unit_map)))
    return out


def _change(session: WatchSession, text: str) -> None:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not set(body) <= {"unit", "layer"}:
        raise ValueError('a text message is {"unit": U} or {"layer": L}')
    unit, layer = body.get("unit"), body.get("layer")
    if unit is not None and (not isinstance(unit, int) or isinstance(unit, bool)):
        raise ValueError("unit must be an integer (-1: none)")
    if layer is not None and not isinstance(layer, str):
        raise ValueError("layer must be a layer's name")
    session.change(unit=unit, layer=layer)


async def live_socket(websocket: WebSocket) -> None:
    """``/api/live?model=M&layer=L[&unit=U]``: the Watch stream of one page."""
    refusal = socket_refusal(websocket)
    if refusal:
        await websocket.close(code=POLICY_VIOLATION, reason=refusal)
        return
    params = websocket.query_params
    model, layer = params.get("model", ""), params.get("layer", "")
    unit_text = params.get("unit", "-1")
    await websocket.accept()
    if not model or not layer or not unit_text.lstrip("-").isdigit():
        await websocket.send_json({"type": "error", "code": "INVALID_ARGUMENT", "field": "model",
                                   "message": "the page needs ?model=M&layer=L[&unit=U]"})  # fmt: skip
        await websocket.close()
        return
    explorer: Explorer = websocket.app.state.explorer
    session = explorer.client.watch_session(model=model, layer=layer, unit=int(unit_text), top_k=5, max_in_flight=1)
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def read_answers() -> None:  # a thread: PNG encoding stays off the event loop
        try:
            for frame in session:
                loop.call_soon_threadsafe(outbox.put_nowait, answer_json(frame))
        except Exception as exc:  # noqa: BLE001 - the stream's failure reaches the page as a message
            loop.call_soon_threadsafe(outbox.put_nowait, {"type": "error", **error_body(exc)})
        loop.call_soon_threadsafe(outbox.put_nowait, None)

    async def relay() -> None:
        try:
            while (message := await outbox.get()) is not None:
                await websocket.send_json(message)
            await websocket.close()
        except (RuntimeError, OSError, WebSocketDisconnect):  # the page went away first
            return

    reader = threading.Thread(target=read_answers, name="interp-web-live", daemon=True)
    reader.start()
    sender = asyncio.create_task(relay())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                if message.get("bytes") is not None:
                    if len(message["bytes"]) > MAX_FRAME_BYTES:
                        raise ValueError(f"a frame is at most {MAX_FRAME_BYTES} bytes")
                    await run_in_threadpool(session.send, message["bytes"])
                elif message.get("text") is not None:
                    await run_in_threadpool(_change, session, message["text"])
            except (ValueError, RuntimeError) as exc:
                outbox.put_nowait({"type": "error", "code": "INVALID_ARGUMENT", "message": str(exc), "field": "frame"})
    except WebSocketDisconnect:
        pass
    finally:
        session.cancel()
        await run_in_threadpool(reader.join, 10)
        sender.cancel()
