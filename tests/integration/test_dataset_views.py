"""Dataset-level views through the real server: raw stub, SDK and CLI; bad input; concurrency; cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, ProgressEvent, errors
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from protos.interp_docs import FIELD_DOCS
from server.app import create_server
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
DATASET = "fashion-mnist-test"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for cls in ("dark", "light"):
        (root / cls).mkdir()
        for i in range(12):
            base = 30 if cls == "dark" else 200
            cv2.imwrite(
                str(root / cls / f"{i:02d}.png"), rng.integers(base - 20, base + 20, (36, 36, 3)).astype(np.uint8)
            )
    (root / "light" / "zz-broken.png").write_bytes(b"nope")
    return root


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory) -> tuple[Path, list[int]]:
    """The first 3 Sneakers and 3 Bags of the Fashion-MNIST test split as PNGs in class sub-folders,
    and their test-split ids in the folder's id order (sorted paths: Bag/ before Sneaker/)."""
    from models.datasets import load_dataset

    require_fashion_mnist()
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    root = tmp_path_factory.mktemp("fashion-folder")
    ids = []
    for name, index in (("Bag", 8), ("Sneaker", 7)):
        (root / name).mkdir()
        for i in np.flatnonzero(labels == index)[:3]:
            cv2.imwrite(str(root / name / f"{i:05d}.png"), images[i])
            ids.append(int(i))
    return root, ids


@pytest.fixture(scope="module")
def views_server(tmp_path_factory, folder, fashion_folder) -> Iterator[str]:
    require_fashion_mnist()
    index_dir = tmp_path_factory.mktemp("index")
    unreadable = tmp_path_factory.mktemp("unreadable")
    for i in range(3):
        (unreadable / f"{i}.png").write_bytes(b"not a png")
    datasets = {"mine": folder, "fm-pngs": fashion_folder[0], "unreadable": unreadable}
    config = test_config(models=("lenet",), index_dir=index_dir, datasets=datasets)
    srv, port = create_server(config)
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(grace=None)


@pytest.fixture(scope="module")
def client(views_server) -> Iterator[InterpClient]:
    with InterpClient(views_server, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def built(client):
    events: list[ProgressEvent] = []
    first = client.build_index("lenet", DATASET, layers=["relu2", "relu4"], k=9, batch_size=500, progress=events.append)
    return first, events


def test_list_datasets(client):
    found = {d.name: d for d in client.list_datasets()}
    test = found[DATASET]
    assert test.size == 10_000 and test.kind == "idx" and test.fits_models == ("lenet",)
    assert len(test.classes) == 10 and len(test.manifest_sha256) == 64
    both = found["fashion-mnist-all"]  # the training images then the test images
    assert both.size == 70_000 and both.fits_models == ("lenet",)
    assert both.manifest_sha256 not in (test.manifest_sha256, found["fashion-mnist-train"].manifest_sha256)
    assert found["mine"].classes == ("dark", "light") and found["mine"].size == 25 and found["mine"].fits_models == ()


def test_build_streams_progress_then_reuses(client, built):
    first, events = built
    assert not first.reused and first.images == 10_000 and first.skipped == 0
    assert first.layers == ("relu2", "relu4") and first.params == {"k": 9, "batch_size": 500}
    steps = [e.step for e in events if not e.queued]
    assert steps and steps[-1] == 10_000 and steps == sorted(steps) and events[-1].total_steps == 10_000
    assert first.images_per_s > 0 and first.model == "lenet" and first.weights_sha256
    again = client.build_index("lenet", DATASET, layers=["relu2", "relu4"], k=9, batch_size=500)
    assert again.reused and again.index_id == first.index_id
    # The batch size is not part of the index; the default echoed is the one the contract documents.
    default = client.build_index("lenet", DATASET, layers=["relu2", "relu4"], k=9)
    assert default.reused and default.params == {"k": 9, "batch_size": 2048}
    assert "default 2048 for 28-px inputs" in FIELD_DOCS["interp.v1.BuildIndexParams.batch_size"]


def test_top_activations_sdk(client, built):
    r = client.top_activations("lenet", dataset=DATASET, layer="relu2", channels=[0, 3], k=4, entry_pngs=True)
    assert r.spatial and r.rf_size == 14 and [c.channel for c in r.channels] == [0, 3]
    assert r.grid_png.startswith(PNG)
    for ch in r.channels:
        values = [e.value for e in ch.entries]
        assert len(values) == 4 and values == sorted(values, reverse=True)
        for e in ch.entries:
            assert e.crop.shape == (14, 14, 1) and e.crop_png.startswith(PNG) and e.image_png.startswith(PNG)
            y0, x0, y1, x1 = e.box
            assert (y1 - y0, x1 - x0) == (14, 14) and y0 == 2 * e.y - 2 and x0 == 2 * e.x - 2
            assert e.padded == (y0 < 0 or x0 < 0 or y1 > 28 or x1 > 28)
            assert 0 <= e.label < 10 and e.label_name
    linear = client.top_activations("lenet", dataset=DATASET, layer="relu4", channels=[5], k=9)
    assert not linear.spatial and linear.channels[0].entries[0].crop.shape == (28, 28, 1)
    assert linear.channels[0].entries[0].crop_png == b"" and linear.grid_png.startswith(PNG)  # PNGs opt-in


def _guided_backprop_oracle(module, x, layer: str, channel: int, y: int, x_: int):
    """Guided backprop written out: every ReLU's backward keeps only positive gradients (on a deep copy)."""
    import copy

    import torch

    net = copy.deepcopy(module).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
            m.register_full_backward_hook(lambda _m, grad_in, _grad_out: (grad_in[0].clamp(min=0),))
    store = {}
    handle = net.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    inp = x.clone().requires_grad_(True)
    try:
        net(inp)
    finally:
        handle.remove()
    out = store["out"]
    unit = out[0, channel, y, x_] if out.dim() == 4 else out[0, channel]
    unit.backward()
    return inp.grad[0]


def test_top_activations_projections_equal_guided_backprop_inside_the_field(client, built, tmp_path):
    import torch

    from interp.dataset.crops import Box, crop_field
    from models.datasets import load_dataset
    from models.hub import ModelHub
    from models.weights import WeightsOptions

    module = ModelHub(["lenet"], WeightsOptions()).ready("lenet").module
    images = load_dataset("fashion-mnist", "test", download=False)[0]
    plain = client.top_activations("lenet", dataset=DATASET, layer="relu2", channels=[1], k=2)
    assert all(e.projection is None for e in plain.channels[0].entries)  # opt-in
    for layer, channels in (("relu2", [0, 3]), ("relu4", [5])):
        r = client.top_activations("lenet", dataset=DATASET, layer=layer, channels=channels, k=3, projections=True)
        for ch in r.channels:
            for e in ch.entries:
                x = torch.from_numpy(images[e.image_id]).float().div(255).view(1, 1, 28, 28)
                full = _guided_backprop_oracle(module, x, layer, ch.channel, e.y, e.x)
                crop = crop_field(full, Box(*e.box))[0]
                assert e.projection.shape == e.crop.shape
                np.testing.assert_allclose(e.projection, crop.permute(1, 2, 0).numpy(), rtol=1e-4, atol=1e-6)
                # the unit's projection lies inside its receptive field: the crop holds all of it
                assert float(crop.abs().sum()) == pytest.approx(float(full.abs().sum()), rel=1e-6)
                assert float(full.abs().sum()) > 0
    saved = r.save(tmp_path / "top")  # the SDK writes the projections as the CLI's -o does
    projections = sorted(p.name for p in saved if p.suffix == ".npy")
    assert projections == [f"channel_0005_{rank:02d}_projection.npy" for rank in range(3)]
    np.testing.assert_array_equal(np.load(tmp_path / "top" / projections[0]), r.channels[0].entries[0].projection)


def test_nearest_neighbors_sdk_finds_the_image_itself(client, built):
    from models.datasets import load_dataset

    images, labels = load_dataset("fashion-mnist", "test", download=False)
    r = client.nearest_neighbors(images[7], model="lenet", dataset=DATASET, layer="relu4", k=5, metric="l2")
    assert r.neighbors[0].image_id == 7 and r.neighbors[0].distance < 1e-4
    assert [n.distance for n in r.neighbors] == sorted(n.distance for n in r.neighbors)
    assert r.metric == "l2" and len(r.neighbors) == 5 and r.grid_png.startswith(PNG)
    assert r.neighbors[0].image.shape == (28, 28, 1)
    cosine = client.nearest_neighbors(images[7], model="lenet", dataset=DATASET, layer="relu4")
    assert cosine.metric == "cosine" and len(cosine.neighbors) == 10
    assert r.input_png.startswith(PNG) and all(n.png.startswith(PNG) for n in r.neighbors)
    bare = client.nearest_neighbors(
        images[7], model="lenet", dataset=DATASET, layer="relu4", k=5, metric="l2", include_pngs=False,
        include_input=False,
    )  # fmt: skip
    assert bare.grid_png == b"" and bare.input is None and all(n.png == b"" for n in bare.neighbors)
    assert [(n.image_id, n.distance) for n in bare.neighbors] == [(n.image_id, n.distance) for n in r.neighbors]
    np.testing.assert_array_equal(bare.neighbors[1].image, r.neighbors[1].image)


def test_raw_stub(views_server, built):
    with grpc.insecure_channel(views_server) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        reply = stub.TopActivations(
            pb.TopActivationsRequest(model="lenet", dataset=DATASET, layer="relu2", channels=[1], k=2)
        )
        assert reply.stamp.model == "lenet" and len(reply.channels[0].entries) == 2


@pytest.mark.parametrize(
    ("call", "code", "needle"),
    [
        ({"dataset": "nope", "layer": "relu2"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown dataset"),
        ({"dataset": DATASET, "layer": "relu9"}, grpc.StatusCode.INVALID_ARGUMENT, "no layer"),
        ({"dataset": DATASET, "layer": "relu2", "channels": [16]}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ({"dataset": DATASET, "layer": "relu2", "k": 0}, grpc.StatusCode.INVALID_ARGUMENT, "max_index_k"),
        ({"dataset": DATASET, "layer": "relu2", "k": 100000}, grpc.StatusCode.INVALID_ARGUMENT, "max_index_k"),
        ({"dataset": DATASET, "layer": "relu2", "k": 10}, grpc.StatusCode.FAILED_PRECONDITION, "build one first"),
        ({"dataset": DATASET, "layer": "conv1"}, grpc.StatusCode.FAILED_PRECONDITION, "build one first"),
    ],
)
def test_bad_queries_are_clear_statuses(views_server, built, call, code, needle):
    with grpc.insecure_channel(views_server) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.TopActivations(pb.TopActivationsRequest(model="lenet", **call))
        assert info.value.code() == code and needle in info.value.details()
        assert stub.ListDatasets(pb.ListDatasetsRequest()).datasets  # still serving


def test_bad_builds_and_neighbour_queries(client, built):
    with pytest.raises(errors.InvalidArgument, match="unknown dataset"):
        client.build_index("lenet", "/etc/passwd")
    with pytest.raises(errors.InvalidArgument, match="max_index_k"):
        client.build_index("lenet", DATASET, k=0)
    with pytest.raises(errors.InvalidArgument, match="metric"):
        client.nearest_neighbors(
            np.zeros((28, 28), np.uint8), model="lenet", dataset=DATASET, layer="relu4", metric="x"
        )


def test_a_folder_with_no_readable_image_names_the_dataset_and_the_files_skipped(client):
    expected = r"dataset 'unreadable': no image could be indexed; 3 of its 3 files"
    with pytest.raises(errors.InvalidArgument, match=expected):
        client.build_index("lenet", "unreadable", layers=["relu1"], k=2)


def test_concurrent_builds_of_one_key_build_once_and_skip_unreadable_files(client):
    results = []

    def build() -> None:
        results.append(client.build_index("lenet", "mine", layers=["relu1", "fc3"], k=3))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].index_id == results[1].index_id
    assert max(r.skipped for r in results) == 1 and results[0].images == 24
    top = client.top_activations("lenet", dataset="mine", layer="fc3", channels=[0], k=3)
    assert len(top.channels[0].entries) == 3


def test_a_cancelled_build_serves_nothing(client):
    with client.iter_build_index("lenet", DATASET, layers=["conv1"], k=2, batch_size=8) as stream:
        for item in stream:
            if isinstance(item, ProgressEvent) and item.step > 0:
                break  # leaving the block cancels the call
    with pytest.raises(errors.FailedPrecondition, match="build one first"):
        client.top_activations("lenet", dataset=DATASET, layer="conv1", k=2)


def test_cli_index_top_neighbors(views_server, built, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "client.cli", "--server", views_server, *args],
            capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
        )  # fmt: skip

    done = run("datasets")
    assert done.returncode == 0 and DATASET in done.stdout and "mine" in done.stdout
    done = run("index", "lenet", DATASET, "--layer", "relu2,relu4", "--k", "9", "--batch-size", "500")
    assert done.returncode == 0, done.stderr
    assert "reused" in done.stdout
    for layers in ("relu4,relu2", "relu4"):  # the same layers in another order, or fewer: no second index
        done = run("index", "lenet", DATASET, "--layer", layers, "--k", "9", "--batch-size", "500")
        assert done.returncode == 0 and "reused" in done.stdout, done.stdout + done.stderr
    done = run("top", "lenet", DATASET, "--layer", "relu2", "--channel", "0,1", "--k", "3", "-o", str(tmp_path / "top"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "top" / "grid.png").read_bytes().startswith(PNG) and "RANK" in done.stdout
    # the trained LeNet's relu4 unit 2 never fires on the test set: its "top" images are ties
    done = run("top", "lenet", DATASET, "--layer", "relu4", "--channel", "1,2", "--k", "3", "-o", str(tmp_path / "t4"))
    assert done.returncode == 0, done.stderr
    assert "note: channel 2: never fires on this dataset" in done.stdout and "channel 1:" not in done.stdout
    image = tmp_path / "q.png"
    from models.datasets import load_dataset

    cv2.imwrite(str(image), load_dataset("fashion-mnist", "test", download=False)[0][3])
    done = run(
        "--json",
        "neighbors",
        "lenet",
        str(image),
        "--dataset",
        DATASET,
        "--layer",
        "relu4",
        "--k",
        "3",
        "-o",
        str(tmp_path / "nn"),
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["neighbors"][0]["image_id"] == 3 and (tmp_path / "nn" / "grid.png").exists()


# -- AttackDataset reads the same registry ------------------------------------------------------


def test_attack_dataset_on_a_folder_equals_the_same_images_of_the_idx_split(client, fashion_folder):
    _, ids = fashion_folder
    folder = client.attack_dataset("lenet", dataset="fm-pngs", method="fgsm", epsilons=[0.02, 0.1], limit=10)
    assert folder.images == 6 and folder.skipped == 0 and folder.true_labels
    idx = client.attack_dataset(
        "lenet", dataset=DATASET, method="fgsm", epsilons=[0.02, 0.1], limit=max(ids) + 1
    )
    # the folder's class names map to lenet's class indices: same images, same labels, same minimal eps
    assert np.array_equal(folder.curves[0].minimal, idx.curves[0].minimal[ids])


def test_attack_dataset_folder_with_foreign_classes(client):
    with pytest.raises(errors.InvalidArgument) as info:
        client.attack_dataset("lenet", dataset="mine", method="fgsm", epsilons=[0.1], limit=4)
    assert "does not fit lenet" in str(info.value) and "dark, light" in str(info.value)
    assert info.value.field_violations[0].field == "dataset"
    # against the predictions any readable image fits (RGB converted like a request image); the broken file is counted
    r = client.attack_dataset("lenet", dataset="mine", method="fgsm", epsilons=[0.0], limit=30, true_labels=False)
    assert r.images == 24 and r.skipped == 1 and r.clean_accuracy == 1.0 and r.curves[0].accuracy[0] == 1.0
