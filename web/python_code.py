""""Copy as Python": the SDK call that reproduces a view, with every parameter the service resolved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def python_call(
    server: str,
    method: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    image_note: str | None = None,
    token: bool = False,
) -> str:
    """A runnable snippet: connect to ``server`` and call ``c.<method>(*args, **kwargs)``.

    ``image_note``: the first argument is an image file the reader saves from the page (the
    snippet names it ``image.png`` and says which one). ``token``: the service needs one (read
    from the environment; the web process never shows its own).
    """
    parts = [repr(a) for a in args]
    parts += [f"{key}={value!r}" for key, value in (kwargs or {}).items() if value is not None]
    call = f"c.{method}({', '.join(parts)})"
    if len(call) > 100:
        inner = ",\n        ".join(parts)
        call = f"c.{method}(\n        {inner},\n    )"
    lines = []
    if token:
        lines.append("import os\n")
    lines.append("from client import InterpClient\n")
    if image_note:
        lines.append(f"# image.png: {image_note}")
    connect = f"InterpClient({server!r}, token=os.environ['INTERP_TOKEN'])" if token else f"InterpClient({server!r})"
    lines.append(f"with {connect} as c:")
    lines.append(f"    result = {call}")
    return "\n".join(lines) + "\n"
