"""The model atlas on disk: per unit, its feature visualization and its top-9 dataset entries.

``interp-atlas MODEL DATASET`` (:mod:`server.atlas_command`) fills it; VisualizeFilter answers
from it (``from_atlas``) when a request is one of its channel batches with the same resolved
parameters. It lives beside the index directory (``<index-dir>/../atlas``) in one folder per
(weights SHA-256, layer, resolved visualization parameters, channels per batch, dataset index
base, k), named ``<head>-<key>``: ``head`` hashes the weights and the layer only, so the server
finds a layer's folders by name and compares the parameters in their ``meta.json``.

Each unit is one ``<unit>.npz`` (the image, its activation, the channels of the batch it was
optimized in, and its top-k values, image ids, y and x), written to a temporary file and renamed
into place: a killed job leaves only whole units, and the next run computes the missing ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interp.synthesis.feature_vis_params import FeatureVisParams

FORMAT_VERSION = 1
ATLAS_K = 9


def atlas_dir(index_dir: Path) -> Path:
    """The atlas directory beside an index directory."""
    return Path(index_dir).parent / "atlas"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def params_json(params: FeatureVisParams) -> dict[str, Any]:
    return dataclasses.asdict(params)


def channel_batches(units: list[int], batch: int) -> list[list[int]]:
    """The atlas's channel batches: consecutive runs of ``batch`` units (a unit's image depends on its batch)."""
    return [units[i : i + batch] for i in range(0, len(units), batch)]


@dataclass(frozen=True)
class AtlasUnit:
    """One stored unit."""

    unit: int
    image: np.ndarray  # (C, S, S) float32 in [0, 1]
    activation: float
    batch: list[int]
    top_values: np.ndarray
    top_ids: np.ndarray
    top_ys: np.ndarray
    top_xs: np.ndarray


@dataclass(frozen=True)
class AtlasKey:
    """What one atlas folder holds: every parameter its units depend on."""

    weights_sha256: str
    layer: str
    params: dict[str, Any]
    batch: int
    index_base: str
    k: int = ATLAS_K

    @property
    def head(self) -> str:
        return _digest({"v": FORMAT_VERSION, "w": self.weights_sha256, "layer": self.layer})[:16]

    @property
    def key(self) -> str:
        return _digest({"v": FORMAT_VERSION, **dataclasses.asdict(self)})

    @property
    def folder(self) -> str:
        return f"{self.head}-{self.key[:16]}"


class AtlasStore:
    """Atlas folders under one directory: write units atomically, list the stored ones, look one up."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, key: AtlasKey) -> Path:
        return self.root / key.folder

    def open(self, key: AtlasKey, meta: dict[str, Any]) -> Path:
        """Create the folder of ``key`` (with its meta.json) when missing; returns it."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").is_file():
            body = {"format": FORMAT_VERSION, "key": key.key, **dataclasses.asdict(key), **meta}
            _atomic_write(folder / "meta.json", json.dumps(body, indent=1).encode())
        return folder

    def stored_units(self, key: AtlasKey) -> set[int]:
        folder = self.folder(key)
        if not folder.is_dir():
            return set()
        return {int(p.stem) for p in folder.glob("*.npz") if p.stem.isdigit()}

    def write(self, key: AtlasKey, unit: AtlasUnit) -> None:
        arrays = {
            "image": unit.image.astype(np.float32),
            "activation": np.float64(unit.activation),
            "batch": np.asarray(unit.batch, dtype=np.int64),
            "top_values": unit.top_values,
            "top_ids": unit.top_ids,
            "top_ys": unit.top_ys,
            "top_xs": unit.top_xs,
        }
        tmp = self.folder(key) / f".tmp-{uuid.uuid4().hex}.npz"
        try:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, self.folder(key) / f"{unit.unit}.npz")
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, key: AtlasKey, unit: int) -> AtlasUnit:
        return _read(self.folder(key) / f"{unit}.npz", unit)

    def lookup(
        self, weights_sha256: str, layer: str, params: FeatureVisParams, channels: list[int]
    ) -> list[AtlasUnit] | None:
        """The stored units answering a VisualizeFilter of ``channels`` with these resolved params:
        only when ``channels`` is exactly one stored batch (its images are what the request computes)."""
        head = AtlasKey(weights_sha256, layer, {}, 0, "").head
        wanted = params_json(params)
        if not channels or not self.root.is_dir():
            return None
        for folder in sorted(self.root.glob(f"{head}-*")):
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                continue
            if meta.get("weights_sha256") != weights_sha256 or meta.get("layer") != layer:
                continue
            if meta.get("params") != wanted:
                continue
            paths = [folder / f"{c}.npz" for c in channels]
            if not all(p.is_file() for p in paths):
                continue
            units = [_read(p, c) for p, c in zip(paths, channels, strict=True)]
            if all(u.batch == channels for u in units):
                return units
        return None


@dataclass(frozen=True)
class AtlasFolder:
    """One stored atlas of a layer, as ListPrecomputed lists it."""

    layer: str
    params: dict[str, Any]
    batch: int
    dataset: str
    units: int
    batches: list[list[int]]  # the stored batches (read only when asked for)


def list_folders(root: Path, weights_sha256: str, layer: str = "") -> list[AtlasFolder]:
    """The atlas folders of these weights (of ``layer`` only, with its stored batches, when given)."""
    root = Path(root)
    if not root.is_dir():
        return []
    pattern = f"{AtlasKey(weights_sha256, layer, {}, 0, '').head}-*" if layer else "*-*"
    found = []
    for folder in sorted(root.glob(pattern)):
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("weights_sha256") != weights_sha256 or (layer and meta.get("layer") != layer):
            continue
        paths = [p for p in folder.glob("*.npz") if p.stem.isdigit()]
        batches: set[tuple[int, ...]] = set()
        for path in paths if layer else ():
            with np.load(path) as data:
                batches.add(tuple(int(c) for c in data["batch"]))
        stored = [list(b) for b in sorted(batches)]
        found.append(AtlasFolder(meta["layer"], meta.get("params", {}), int(meta.get("batch", 0)),
                                 str(meta.get("dataset", "")), len(paths), stored))  # fmt: skip
    return sorted(found, key=lambda f: (f.layer, json.dumps(f.params, sort_keys=True)))


def _read(path: Path, unit: int) -> AtlasUnit:
    with np.load(path) as data:
        return AtlasUnit(
            unit=unit,
            image=data["image"],
            activation=float(data["activation"]),
            batch=[int(c) for c in data["batch"]],
            top_values=data["top_values"],
            top_ids=data["top_ids"],
            top_ys=data["top_ys"],
            top_xs=data["top_xs"],
        )


def _atomic_write(path: Path, body: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_bytes(body)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
