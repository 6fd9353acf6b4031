"""Embedding and PlaceImages through the real server: SDK, raw stub, CLI, the HTML page in headless
chromium, the cache, determinism across servers, cancellation, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, ProgressEvent, errors
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.conftest import require, require_fashion_mnist
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
DATASET = "fashion-mnist-test"
# a small, quick map: 600 points, 30 + 60 iterations
MAP = {"dataset": DATASET, "layer": "relu4", "limit": 600, "perplexity": 20.0, "iterations": 60, "early_iterations": 30}


def _serve(index_dir: Path, **limits: object) -> tuple[object, str]:
    config = test_config(
        models=("lenet",),
        index_dir=index_dir,
        limits=Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=300.0, **limits),  # type: ignore[arg-type]
    )
    srv, port = create_server(config)
    srv.start()
    return srv, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    require_fashion_mnist()
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="module")
def target(index_dir) -> Iterator[str]:
    srv, address = _serve(index_dir, max_embedding_points=5000, max_perplexity=50.0)
    yield address
    srv.stop(grace=None)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def made(client):
    events: list[ProgressEvent] = []
    result = client.embedding("lenet", progress=events.append, every_step=True, **MAP)
    return result, events


@pytest.fixture(scope="module")
def test_images() -> tuple[np.ndarray, np.ndarray]:
    from models.datasets import load_dataset

    return load_dataset("fashion-mnist", "test", download=False)


def test_embedding_sdk(made, test_images):
    r, events = made
    images, labels = test_images
    assert r.coordinates.shape == (600, 2) and r.coordinates.dtype == np.float32
    assert list(r.image_ids) == list(range(600)) and np.array_equal(r.labels, labels[:600])
    assert r.classes[0] == "T-shirt/top" and len(r.classes) == 10 and r.method == "tsne" and r.layer == "relu4"
    assert r.params == {"perplexity": 20.0, "iterations": 60, "early_iterations": 30, "pca_dims": 50, "seed": 0}
    assert not r.reused and r.kl_divergence > 0 and r.threads >= 1 and r.index_id and r.model == "lenet"
    assert r.scatter_png.startswith(PNG) and r.atlas_png.startswith(PNG) and r.thumbnails_png.startswith(PNG)
    assert (r.thumbnail_count, r.thumbnail_size, r.thumbnail_columns) == (600, 28, 25)
    sprite = cv2.imdecode(np.frombuffer(r.thumbnails_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(sprite[28:56, 2 * 28 : 3 * 28], images[27])  # point 27: row 1, column 2
    stages = [e.stage for e in events if not e.queued]
    # no index held relu4: the index pass (images), then PCA, affinities, the iterations with the KL divergence
    assert stages[0] == "features" and {"pca", "affinities", "early exaggeration", "optimization"} <= set(stages)
    iterations = [e for e in events if e.stage in ("early exaggeration", "optimization")]
    assert [e.step for e in iterations] == list(range(10, 91, 10)) and iterations[-1].total_steps == 90
    assert all(np.isfinite(e.objective) and e.objective > 0 for e in iterations)


def test_second_call_is_cached_and_a_fresh_server_gives_identical_coordinates(made, client, index_dir):
    first, _ = made
    again = client.embedding("lenet", **MAP)
    assert again.reused and again.map_id == first.map_id and np.array_equal(again.coordinates, first.coordinates)
    srv, address = _serve(index_dir, max_embedding_points=5000, max_perplexity=50.0)  # empty map cache
    try:
        with InterpClient(address, timeout=300) as other:
            events: list[ProgressEvent] = []
            fresh = other.embedding("lenet", progress=events.append, every_step=True, **MAP)
    finally:
        srv.stop(grace=None)  # type: ignore[attr-defined]
    assert not fresh.reused and "features" not in {e.stage for e in events}  # the index was reused
    assert np.array_equal(fresh.coordinates, first.coordinates)


def test_place_images_lands_dataset_images_at_their_own_points(made, client, test_images):
    r, _ = made
    images, labels = test_images
    queries = [4, 120, 333]
    placed = client.place_images(list(images[queries]), model="lenet", **MAP)
    assert placed.map_id == r.map_id and len(placed.placed) == 3 and placed.scatter_png.startswith(PNG)
    points = r.coordinates.astype(np.float64)
    pairwise = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))[np.triu_indices(len(points), 1)]
    p1 = np.percentile(pairwise, 1)
    for q, p in zip(queries, placed.placed, strict=True):
        assert np.hypot(p.x - points[q, 0], p.y - points[q, 1]) <= p1
        assert p.neighbor_ids[0] == q and len(p.neighbor_ids) == 10
        assert p.label_name == r.classes[p.label] and p.input.shape == (28, 28, 1)
        assert p.neighbor_labels == tuple(int(labels[i]) for i in p.neighbor_ids)


def test_pca_through_the_raw_stub(target, made):
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        events = list(stub.Embedding(pb.EmbeddingRequest(model="lenet", dataset=DATASET, layer="relu4",
                                                         method="pca", limit=1000)))  # fmt: skip
    result = events[-1].result
    assert result.stamp.model == "lenet" and result.method == "pca" and len(result.image_ids) == 1000
    assert len(result.explained_variance) == 2 and result.explained_variance[0] >= result.explained_variance[1] > 0
    assert not result.resolved.ListFields()  # t-SNE parameters do not apply to PCA: not echoed
    assert events[0].WhichOneof("event") == "progress"


def test_cancelled_embedding_caches_nothing(client):
    request = {**MAP, "seed": 11, "iterations": 2000, "early_iterations": 0}
    with client.iter_embedding("lenet", **request) as stream:
        for item in stream:
            if isinstance(item, ProgressEvent) and item.stage == "optimization":
                break  # leaving the block cancels the call
    for _ in range(300):  # the server's worker stops at its next report (10 iterations)
        if client.server_info().running_heavy == 0:
            break
        time.sleep(0.1)
    assert client.server_info().running_heavy == 0
    with pytest.raises(errors.FailedPrecondition, match="Embedding"):
        client.place_images(np.zeros((28, 28), np.float32), model="lenet", **request)


@pytest.mark.parametrize(
    "change, status, text",
    [
        ({"dataset": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown dataset"),
        ({"layer": "conv9"}, grpc.StatusCode.INVALID_ARGUMENT, "conv9"),
        ({"method": "umap"}, grpc.StatusCode.INVALID_ARGUMENT, "valid methods: tsne, pca"),
        ({"params": pb.EmbeddingParams(perplexity=80)}, grpc.StatusCode.INVALID_ARGUMENT, "max_perplexity"),
        ({"params": pb.EmbeddingParams(perplexity=0.5)}, grpc.StatusCode.INVALID_ARGUMENT, "max_perplexity"),
        ({"limit": 90}, grpc.StatusCode.INVALID_ARGUMENT, "below N / 3"),
        ({"limit": 3, "params": pb.EmbeddingParams(perplexity=1)}, grpc.StatusCode.INVALID_ARGUMENT, "at least 4"),
        ({"limit": 6000}, grpc.StatusCode.INVALID_ARGUMENT, "max_embedding_points"),
        ({"limit": None}, grpc.StatusCode.INVALID_ARGUMENT, "set limit to at most 5,000"),
        ({"params": pb.EmbeddingParams(iterations=5000)}, grpc.StatusCode.INVALID_ARGUMENT, "max_steps"),
        # one channel: one mean-pooled feature per image (openTSNE's PCA start raised INTERNAL)
        ({"layer": "normalize"}, grpc.StatusCode.INVALID_ARGUMENT, "gives 1 feature per image"),
        ({"layer": "normalize", "method": "pca"}, grpc.StatusCode.INVALID_ARGUMENT, "a map needs at least 2"),
    ],
)
def test_bad_embedding_requests(target, change, status, text):
    fields = {"model": "lenet", "dataset": DATASET, "layer": "relu4", "limit": 600}
    fields.update(change)
    request = pb.EmbeddingRequest(**{k: v for k, v in fields.items() if v is not None})
    with grpc.insecure_channel(target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Embedding(request))
    assert caught.value.code() == status and text in caught.value.details()


def test_place_images_before_the_map_names_the_call(client, test_images):
    images, _ = test_images
    with pytest.raises(errors.FailedPrecondition, match=r"Embedding \(CLI: interp embed lenet fashion-mnist-test"):
        client.place_images(images[0], model="lenet", dataset=DATASET, layer="relu4", limit=700)
    with pytest.raises(errors.InvalidArgument, match="max_place_images"):
        client.place_images(list(images[:300]), model="lenet", **MAP)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_embed_and_place(target, made, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    flags = ["--layer", "relu4", "--limit", "600", "--perplexity", "20", "--iterations", "60",
             "--early-iterations", "30"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "--server", target, "embed", "lenet", DATASET, *flags,
         "-o", str(tmp_path / "map.png"), "--html", str(tmp_path / "map.html")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tsne map of relu4 on lenet" in done.stdout and "reused" in done.stdout and "Ankle boot" in done.stdout
    assert (tmp_path / "map.png").read_bytes().startswith(PNG)
    assert (tmp_path / "map_atlas.png").read_bytes().startswith(PNG)
    page = (tmp_path / "map.html").read_text()
    assert "http://" not in page and "https://" not in page and "data:image/png;base64," in page  # self-contained
    query = tmp_path / "q.png"
    from models.datasets import load_dataset

    cv2.imwrite(str(query), load_dataset("fashion-mnist", "test", download=False)[0][8])
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "--server", target, "place", "lenet", DATASET, *flags,
         "--image", str(query), "-o", str(tmp_path / "placed.png")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = next(line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["0"])
    assert "AMONG" in done.stdout and row[4] == "8"  # the image's own dataset point is its nearest
    assert (tmp_path / "placed.png").read_bytes().startswith(PNG)
    if os.environ.get("EMBEDDING_TEST_KEEP"):
        shutil.copytree(tmp_path, os.environ["EMBEDDING_TEST_KEEP"], dirs_exist_ok=True)


def test_the_html_page_renders_in_headless_chromium(made, tmp_path):
    """The page of the SDK's map, in a real browser: not blank, its own point count, a hover tooltip."""
    browser = _chromium()
    require(browser, "needs Debian's chromium for the HTML page test (apt-get install chromium)")
    page = made[0].write_html(tmp_path / "map.html")
    shot = tmp_path / "shot.png"
    page_uri = page.as_uri()
    rendered = _headless(str(browser), f"--screenshot={shot}", "--window-size=1100,900", page_uri)
    assert shot.exists(), rendered.stderr[-2000:]
    picture = cv2.imread(str(shot))
    assert picture.shape[:2] == (900, 1100)
    canvas = picture[40:820, 0:800]
    colours = {tuple(int(v) for v in c) for c in canvas.reshape(-1, 3)[::7]}
    assert picture.std() > 10 and len(colours) > 20  # not blank: coloured points on the canvas
    dom = _headless(str(browser), "--dump-dom", page_uri + "#point=8").stdout
    assert 'data-points="600"' in dom and 'data-drawn="600"' in dom  # the page's own count, written by its script
    assert 'data-point="8"' in dom and "image 8" in dom  # the hover tooltip of point 8: label and id
