"""Offline robustness results on disk (``interp-robustness``), where AttackDataset finds them.

Beside the index directory (``<index-dir>/../robustness``), one folder per request key: the
weights SHA-256, the dataset's manifest hash, the model's preprocessing, the methods, epsilons,
resolved parameters, limit and ``true_labels`` — everything an AttackDataset answer depends on.
A folder holds ``result.binpb`` (the AttackDatasetResult, without its stamp), ``curve.png``,
``minimal.npz`` (per method, the per-image minimal eps, with the image ids) and ``meta.json``;
it is written to a temporary folder and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from interp.attacks.robustness import AttackDatasetParams
from models.registry import Preprocessing

FORMAT_VERSION = 1


def results_dir(index_dir: Path) -> Path:
    """The robustness results directory beside an index directory."""
    return Path(index_dir).parent / "robustness"


def robustness_key(
    weights_sha256: str,
    manifest: str,
    spec: Preprocessing,
    methods: list[str],
    epsilons: list[float],
    params: AttackDatasetParams,
    limit: int,
    true_labels: bool,
) -> str:
    body = {
        "v": FORMAT_VERSION, "w": weights_sha256, "d": manifest, "p": dataclasses.asdict(spec), "methods": methods,
        "eps": [float(e) for e in epsilons], "params": dataclasses.asdict(params), "limit": int(limit),
        "true_labels": bool(true_labels),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class ResultsStore:
    """Robustness results under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key[:32]

    def find(self, key: str) -> bytes | None:
        """The stored AttackDatasetResult (serialized) of ``key``, or None."""
        folder = self.folder(key)
        try:
            if json.loads((folder / "meta.json").read_text()).get("key") != key:
                return None
            return (folder / "result.binpb").read_bytes()
        except (OSError, ValueError):
            return None

    def stored(self, weights_sha256: str, dataset: str = "") -> list[tuple[dict[str, Any], bytes]]:
        """(meta, serialized AttackDatasetResult) of every whole result of these weights (on ``dataset``)."""
        found = []
        for meta_path in sorted(self.root.glob("*/meta.json")) if self.root.is_dir() else ():
            if meta_path.parent.name.startswith("."):
                continue  # a result being written
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("weights_sha256") != weights_sha256 or (dataset and meta.get("dataset") != dataset):
                    continue
                found.append((meta, (meta_path.parent / "result.binpb").read_bytes()))
            except (OSError, ValueError):
                continue
        return found

    def write(self, key: str, result: bytes, png: bytes, minimal: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.folder(key)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            (tmp / "result.binpb").write_bytes(result)
            (tmp / "curve.png").write_bytes(png)
            np.savez(tmp / "minimal.npz", **minimal)  # type: ignore[arg-type]
            (tmp / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, "key": key, **meta}, indent=1))
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder
