"""Dataset views held against oracles written in the test: TopActivations crops cut from the
dataset's own pixels, receptive boxes from an impulse probe, unit values and neighbour features
from an independent forward of the served LeNet weights. Both index engines (local in the server,
Ray through ``interp-index --engine ray``), over the Fashion-MNIST test split (idx) and an image
folder with unreadable files.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from client import InterpClient
from models.lenet import build_lenet
from server.app import create_server
from tests.conftest import FASHION_MNIST_DIR, require, require_fashion_mnist
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
SPATIAL = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
LAYERS = [*SPATIAL, "relu3"]
K = 4
FOLDER = "fm-broken"
CHANNELS = [0, 2, 5]


def _served_lenet() -> nn.Sequential:
    weights = sorted((ROOT / "models" / "weights").glob("lenet5_fashion_mnist-*.pt"))
    require(weights, "no trained LeNet checkpoint in models/weights")
    model = build_lenet()
    model.load_state_dict(torch.load(weights[-1], map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def _fashion_test_images() -> np.ndarray:
    """(10000, 28, 28) uint8, read from the idx file here (not through the repository's reader)."""
    with gzip.open(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)


def _layer_outputs(model: nn.Sequential, pixels: np.ndarray, layers: list[str]) -> dict[str, torch.Tensor]:
    """Each named layer's output for (N, 28, 28) uint8 pixels (scaled to [0, 1]), by plain forward hooks."""
    got: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: got.__setitem__(name, out.detach().clone()))
        for name in layers
    ]
    try:
        with torch.no_grad():
            model(torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1))
    finally:
        for h in handles:
            h.remove()
    return got


def _field_probe(model: nn.Sequential, layer: str, y: int, x: int) -> tuple[int, int, int, int]:
    """The in-image bounding box (y0, x0, y1, x1) of the pixels unit (y, x) of ``layer`` depends on:
    a copy of the layers up to ``layer`` with every kernel all ones, pools averaging, everything else
    the identity, and the gradient of the unit with respect to an all-ones input."""
    probe = []
    for name, m in model.named_children():
        if isinstance(m, nn.Conv2d):
            c = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, m.dilation, bias=False)  # type: ignore[arg-type]
            nn.init.ones_(c.weight)
            probe.append(c)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            probe.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding))  # type: ignore[arg-type]
        if name == layer:
            break
    x_in = torch.ones(1, 1, 28, 28, requires_grad=True)
    nn.Sequential(*probe)(x_in)[0, 0, y, x].backward()
    assert x_in.grad is not None
    rows, cols = np.nonzero(x_in.grad[0, 0].numpy())
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _cut(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``pixels`` (H, W) uint8 cut at ``box``, zero outside the image, as (h, w, 1) floats in [0, 1]."""
    y0, x0, y1, x1 = box
    pad = 40
    wide = np.zeros((pixels.shape[0] + 2 * pad, pixels.shape[1] + 2 * pad), np.float32)
    wide[pad:-pad, pad:-pad] = pixels / 255.0
    return wide[y0 + pad : y1 + pad, x0 + pad : x1 + pad, None]


@pytest.fixture(scope="module")
def lenet() -> nn.Sequential:
    return _served_lenet()


@pytest.fixture(scope="module")
def fashion() -> np.ndarray:
    require_fashion_mnist()
    return _fashion_test_images()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fashion) -> tuple[Path, dict[int, np.ndarray | None]]:
    """40 Fashion-MNIST test images as grey PNGs in two class folders, with unreadable files between
    them (garbage, a truncated PNG, an empty file); per folder id (sorted path) its pixels or None."""
    root = tmp_path_factory.mktemp("fm-broken")
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (root / cls).mkdir()
        for j, i in enumerate(rng.choice(10_000, 20, replace=False)):
            cv2.imwrite(str(root / cls / f"{j:02d}.png"), fashion[i])
    (root / "a" / "03x.png").write_bytes(b"not an image at all")
    (root / "a" / "11x.png").write_bytes((root / "a" / "11.png").read_bytes()[:60])
    (root / "b" / "00x.png").write_bytes(b"")
    (root / "b" / "19x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    pixels = {i: cv2.imread(str(root / p), cv2.IMREAD_GRAYSCALE) for i, p in enumerate(files)}
    assert sum(v is None for v in pixels.values()) == 4
    return root, pixels


def _ray_index(index_dir: Path, dataset: str, folder_root: Path) -> None:
    """Build the index with ``interp-index --engine ray`` (a local Ray instance) into ``index_dir``."""
    try:
        import ray  # noqa: F401
    except ImportError:
        require(False, "ray is not installed (pip install 'cnn-interp[ray]')")
    script = Path(sys.executable).parent / "interp-index"
    require(script.exists(), f"the interp-index console script is not installed next to {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    args = [str(script), "lenet", dataset, "--engine", "ray", "--layers", ",".join(LAYERS), "--k", str(K),
            "--index-dir", str(index_dir), "--dataset", f"{FOLDER}={folder_root}"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "engine ray" in done.stdout


@pytest.fixture(scope="module", params=["local", "ray"])
def served(request, tmp_path_factory, folder, fashion) -> Iterator[tuple[str, InterpClient]]:
    """A server over both datasets whose indexes the given engine built."""
    engine = request.param
    index_dir = tmp_path_factory.mktemp(f"index-{engine}")
    if engine == "ray":
        for dataset in ("fashion-mnist-test", FOLDER):
            _ray_index(index_dir, dataset, folder[0])
    config = test_config(models=("lenet",), index_dir=index_dir, datasets={FOLDER: folder[0]})
    srv, port = create_server(config)
    srv.start()
    try:
        with InterpClient(f"127.0.0.1:{port}", timeout=300) as c:
            for dataset in ("fashion-mnist-test", FOLDER):
                built = c.build_index("lenet", dataset, layers=LAYERS, k=K)
                assert built.reused == (engine == "ray")  # the server serves the Ray-built index
                assert built.skipped == (4 if dataset == FOLDER else 0)
            yield engine, c
    finally:
        srv.stop(grace=None)


@pytest.mark.parametrize("dataset", ["fashion-mnist-test", FOLDER])
def test_top_activation_crops_are_the_input_cut_at_the_box(served, dataset, lenet, fashion, folder):
    _, client = served
    pixels = (lambda i: fashion[i]) if dataset != FOLDER else (lambda i: folder[1][i])
    padded = 0
    for layer in SPATIAL:
        r = client.top_activations("lenet", dataset=dataset, layer=layer, channels=CHANNELS, k=K)
        assert r.spatial and len(r.channels) == len(CHANNELS)
        ids = sorted({e.image_id for ch in r.channels for e in ch.entries})
        assert all(pixels(i) is not None for i in ids)  # an unreadable file is never a top image
        outputs = _layer_outputs(lenet, np.stack([pixels(i) for i in ids]), [layer])[layer]
        row = {i: n for n, i in enumerate(ids)}
        for ch in r.channels:
            assert len(ch.entries) == K
            for e in ch.entries:
                img = pixels(e.image_id)
                assert e.box == _box_of(lenet, layer, e.y, e.x, r.rf_size), (layer, e.y, e.x, e.box)
                np.testing.assert_allclose(e.crop, _cut(img, e.box), atol=1e-6, err_msg=f"{layer} {e}")
                inside = 0 <= e.box[0] and 0 <= e.box[1] and e.box[2] <= 28 and e.box[3] <= 28
                assert e.padded == (not inside)
                padded += e.padded
                unit = float(outputs[row[e.image_id], ch.channel, e.y, e.x])
                assert e.value == pytest.approx(unit, rel=1e-4, abs=1e-4)
    assert padded, "no box left the image: the zero padding went untested"


def _box_of(lenet: nn.Sequential, layer: str, y: int, x: int, rf_size: int) -> tuple[int, int, int, int]:
    """The unit's full box: the probe's in-image box grown to ``rf_size`` past whichever borders cut it."""
    y0, x0, y1, x1 = _field_probe(lenet, layer, y, x)
    cy0, cx0, cy1, cx1 = _field_probe(lenet, layer, 3, 3)  # an interior unit: the whole field
    assert (cy1 - cy0, cx1 - cx0) == (rf_size, rf_size)
    if y0 == 0:
        y0 = y1 - rf_size
    if x0 == 0:
        x0 = x1 - rf_size
    return y0, x0, y0 + rf_size, x0 + rf_size


def test_neighbours_skip_unreadable_files_and_equal_brute_force(served, lenet, folder):
    _, client = served
    pixels = folder[1]
    readable = [i for i, p in pixels.items() if p is not None]
    stack = np.stack([pixels[i] for i in readable])
    query = pixels[readable[7]]
    for layer, metric in (("relu1", "l2"), ("pool2", "cosine"), ("conv2", "l2"), ("relu3", "cosine")):
        out = _layer_outputs(lenet, np.concatenate([stack, query[None]]), [layer])[layer].double()
        feats = out.mean(dim=(2, 3)) if out.dim() == 4 else out  # per image: conv maps mean-pooled
        f, q = feats[:-1].numpy(), feats[-1].numpy()
        if metric == "l2":
            d = np.sqrt(((f - q) ** 2).sum(1))
        else:
            d = 1 - (f @ q) / (np.linalg.norm(f, axis=1) * np.linalg.norm(q))
        order = np.lexsort((np.asarray(readable), d))
        r = client.nearest_neighbors(query, model="lenet", dataset=FOLDER, layer=layer, k=len(pixels), metric=metric)
        got = [n.image_id for n in r.neighbors]
        assert len(got) == len(readable) and set(got) == set(readable), (layer, got)  # every readable one, no other
        np.testing.assert_allclose([n.distance for n in r.neighbors], d[order], rtol=1e-4, atol=1e-4)
        near = d[order]
        for a, b in zip(got, [readable[i] for i in order], strict=True):  # ids agree except within float ties
            if a != b:
                assert abs(d[readable.index(a)] - d[readable.index(b)]) < 1e-4
        assert near[0] < 1e-4 and got[0] == readable[7]
