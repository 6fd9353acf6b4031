"""What every result shares: the model stamp, a short ``repr``, ``save`` for PNGs, ``from_proto``.

``save(dest)`` and the CLI's ``-o`` read a destination the same way (:func:`is_folder`): a path
ending in ``/``, an existing directory or a path without an extension is a folder that receives
one ``<name>.png`` per image; any other path is a file that receives the main image under the
name given (its extension kept), the others beside it as ``<stem>_<name><suffix>``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import Message

from client.results._build import build

__all__ = ["Result", "beside", "eps_name", "file_part", "is_folder", "save_pngs"]

R = TypeVar("R", bound="Result")


class Result:
    """Base of every result class: ``from_proto`` builds it from its reply (see ``_build``)."""

    @classmethod
    def from_proto(cls: type[R], message: Message) -> R:
        return build(cls, message)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_part(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "image"


def eps_name(epsilon: float) -> str:
    return f"{epsilon:g}"


def is_folder(dest: str | os.PathLike[str]) -> bool:
    """Whether an output path names a folder: it ends in ``/``, is a directory, or has no extension."""
    text = os.fspath(dest)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def beside(output: str | Path, name: str, suffix: str, as_file: bool | None = None) -> Path:
    """Where an extra file of ``save()`` / ``-o`` goes: ``<folder>/<name><suffix>`` (the folder made),
    or ``<stem>_<name><suffix>`` beside a file (``<stem><suffix>`` when ``name`` is empty);
    ``as_file`` as in :func:`save_pngs`."""
    if not as_file if as_file is not None else is_folder(output):
        Path(output).mkdir(parents=True, exist_ok=True)
        return Path(output) / f"{name or 'map'}{suffix}"
    path = Path(output)
    return path.with_name(f"{path.stem}_{name}{suffix}" if name else f"{path.stem}{suffix}")


def save_pngs(images: Iterable[tuple[str, bytes]], dest: str | Path, *, as_file: bool | None = None) -> list[Path]:
    """Write named PNGs to a folder, or the first to a file path and the rest beside it.

    Args:
        images: (name, png bytes) pairs, the main image first; empty byte strings are skipped.
        dest: a folder (created if needed) -> ``dest/<name>.png`` each; or a file path -> the main
            image there, the others as ``<stem>_<name><suffix>`` next to it.
        as_file: whether ``dest`` is a file path; None: as :func:`is_folder` reads it.

    Returns:
        The paths written, in order.
    """
    items = [(file_part(name), data) for name, data in images if data]
    if not items:
        return []
    if as_file is None:
        as_file = not is_folder(dest)
    dest = Path(dest)
    if as_file:
        dest.parent.mkdir(parents=True, exist_ok=True)
        suffix = dest.suffix or ".png"
        paths = [dest] + [dest.with_name(f"{dest.stem}_{name}{suffix}") for name, _ in items[1:]]
    else:
        dest.mkdir(parents=True, exist_ok=True)
        paths = [dest / f"{name}.png" for name, _ in items]
    for path, (_, data) in zip(paths, items, strict=True):
        path.write_bytes(data)
    return paths


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, tuple) and len(value) > 6:
        return f"({', '.join(_short(v) for v in value[:3])}, ... {len(value)} items)"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


class _ShortRepr(Result):
    """A ``repr`` that fits on a screen: PNG bytes as their size, arrays as shape and dtype."""

    def __repr__(self) -> str:
        parts = [f"{f.name}={_short(getattr(self, f.name))}" for f in fields(self)]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(parts)})"


class _SavesImages(_ShortRepr):
    """Mixin: ``save(dest)`` writes the PNGs that ``_pngs()`` names (main image first)."""

    def _pngs(self) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    def save(self, dest: str | Path, *, as_file: bool | None = None) -> list[Path]:
        """Write this result's PNGs; see :func:`save_pngs` for the naming. Returns the paths written."""
        return save_pngs(self._pngs(), dest, as_file=as_file)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class _Stamped:
    """Which model produced a result (shared by every computed result)."""

    model: str
    pretrained: bool
    weights_sha256: str
    request_id: str
    elapsed_ms: float
    model_source: str = ""  # "builtin", or a --model's kind: "torchvision", "torchscript", "export"
