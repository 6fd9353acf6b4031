"""The Ray engine writes the same index as the local engine (a local Ray instance on loopback, 2 CPUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.dataset_registry import DatasetRegistry
from models.lenet import build_lenet
from models.registry import get_spec
from server.stores.index import IndexStore
from tests.conftest import require

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
LAYERS = ["relu1", "pool2", "relu4"]


def test_ray_engine_equals_local_engine(ray_local, tmp_path):
    require(bool(WEIGHTS), "no trained LeNet checkpoint in models/weights")
    dataset = DatasetRegistry().get("fashion-mnist-test")
    try:
        dataset.arrays()
    except FileNotFoundError as exc:
        require(False, f"Fashion-MNIST test split not installed: {exc}")
    model = build_lenet()
    model.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    spec = get_spec("lenet").preprocessing
    common = dict(
        model_name="lenet", weights_sha256="w", spec=spec, dataset=dataset, layers=LAYERS, k=9, batch_size=1000
    )
    local, _, _ = IndexStore(tmp_path / "local").build(model, **common)
    seen = []
    remote, _, _ = IndexStore(tmp_path / "ray").build(model, engine="ray", on_progress=seen.append, **common)
    assert seen and seen[-1].images_done == 10_000
    assert remote.meta["engine"] == "ray" and remote.meta["key"] == local.meta["key"]
    np.testing.assert_array_equal(remote.present, local.present)
    for layer in LAYERS:
        for got, want in zip(remote.top(layer), local.top(layer), strict=True):
            if got.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(remote.features(layer), local.features(layer), rtol=1e-5, atol=1e-5)
