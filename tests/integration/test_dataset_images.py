"""DatasetImages through the real server: by position, a page of one class, as the model's input
(a folder of 36-px RGB images comes back as LeNet's 28-px grayscale), its caps and its errors;
the CLI's `dataset-images` in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, errors
from client.cli import main as cli_main
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

DATASET = "fashion-mnist-test"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[str]:
    require_fashion_mnist()
    folder = tmp_path_factory.mktemp("folder")
    for cls, value in (("dark", 30), ("light", 200)):
        (folder / cls).mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / cls / f"{i}.png"), np.full((36, 36, 3), value, np.uint8))
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=300.0, max_images_per_call=40)
    config = test_config(models=("lenet",), index_dir=tmp_path_factory.mktemp("index"),
                         datasets={"mine": folder}, limits=limits)  # fmt: skip
    server, port = create_server(config)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture(scope="module")
def client(target: str) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=120) as c:
        yield c


def test_positions_are_the_test_split_images_with_their_labels(client):
    from models.datasets import load_dataset

    images, labels = load_dataset("fashion-mnist", "test", download=False)
    result = client.dataset_images("lenet", dataset=DATASET, positions=[5, 0, 5])
    assert result.dataset == DATASET and result.total == 3 and result.model == "lenet"
    assert [i.position for i in result.images] == [5, 0, 5]
    assert [i.label for i in result.images] == [int(labels[5]), int(labels[0]), int(labels[5])]
    assert result.images[1].label_name == "Ankle boot" == result.classes[9]
    for item in result.images:  # exactly the dataset's pixels, as the model's input
        assert item.image.shape == (28, 28, 1) and item.png.startswith(PNG)
        np.testing.assert_allclose(item.image[..., 0], images[item.position] / 255.0, atol=1e-6)


def test_a_page_of_one_class(client):
    from models.datasets import load_dataset

    _, labels = load_dataset("fashion-mnist", "test", download=False)
    sneakers = np.flatnonzero(labels == 7)
    page = client.dataset_images("lenet", dataset=DATASET, label=7, offset=10, limit=5)
    assert page.total == len(sneakers) == 1000
    assert [i.position for i in page.images] == sneakers[10:15].tolist()
    assert {i.label_name for i in page.images} == {"Sneaker"}
    default = client.dataset_images("lenet", dataset=DATASET)  # every image, the first 24
    assert default.total == 10_000 and [i.position for i in default.images] == list(range(24))
    past = client.dataset_images("lenet", dataset=DATASET, label=7, offset=1000)
    assert past.total == 1000 and past.images == ()
    named = client.dataset_images("lenet", dataset=DATASET, label="sneaker", offset=10, limit=5)  # by name
    assert [i.position for i in named.images] == sneakers[10:15].tolist()
    with pytest.raises(ValueError, match="'Sneakers' is not a class of fashion-mnist-test; its classes: T-shirt"):
        client.dataset_images("lenet", dataset=DATASET, label="Sneakers")
    with pytest.raises(errors.InvalidArgument, match="unknown dataset .nope."):  # the server's answer, not a guess
        client.dataset_images("lenet", dataset="nope", label="sneaker")


def test_a_folder_comes_back_as_the_models_input(client):
    page = client.dataset_images("lenet", dataset="mine", label=1)
    assert page.total == 3 and [i.position for i in page.images] == [3, 4, 5]
    assert {i.label_name for i in page.images} == {"light"}
    assert page.images[0].image.shape == (28, 28, 1)
    assert abs(float(page.images[0].image.mean()) - 200 / 255) < 0.02


@pytest.mark.parametrize(
    ("call", "needle", "field"),
    [
        ({"dataset": "nope"}, "unknown dataset", "dataset"),
        ({"dataset": ""}, "dataset is required", "dataset"),
        ({"dataset": DATASET, "positions": [0, 10_000]}, "out of range", "positions[1]"),
        ({"dataset": DATASET, "positions": [-1]}, "out of range", "positions[0]"),
        ({"dataset": DATASET, "label": 10}, "not a class", "label"),
        ({"dataset": DATASET, "positions": [1], "label": 2}, "not both", "positions"),
        ({"dataset": DATASET, "offset": -1}, "offset", "offset"),
        ({"dataset": DATASET, "limit": 41}, "max_images_per_call", "limit"),
        ({"dataset": DATASET, "limit": 0}, "max_images_per_call", "limit"),
        ({"dataset": DATASET, "positions": list(range(41))}, "max_images_per_call", "positions"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field(client, call, needle, field):
    with pytest.raises(errors.InvalidArgument, match=needle) as info:
        client.dataset_images("lenet", **call)
    assert info.value.field == field


def test_an_unknown_model_is_not_found(target):
    with grpc.insecure_channel(target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.DatasetImages(pb.DatasetImagesRequest(model="nope", dataset=DATASET, positions=[0]))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        reply = stub.DatasetImages(pb.DatasetImagesRequest(model="lenet", dataset=DATASET, positions=[1]))
        assert reply.stamp.model == "lenet" and reply.images[0].label_name == "Pullover"


def test_cli(target, tmp_path: Path, capsys):
    assert cli_main(["--server", target, "dataset-images", "lenet", DATASET, "--label", "7", "--limit", "2",
                     "-o", str(tmp_path)]) == 0  # fmt: skip
    assert "total" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_00.png", "image_01.png"]


def test_an_answer_above_the_message_budget_is_refused_before_reading(tmp_path):
    """24 LeNet images hold up to 24 x 784 x 5 bytes (float32 values and a PNG each): above a
    50,000-byte budget the call is RESOURCE_EXHAUSTED saying so, and 2 images still fit."""
    require_fashion_mnist()
    limits = Limits(max_message_bytes=50_000, default_deadline_s=60.0)
    server, port = create_server(test_config(models=("lenet",), index_dir=tmp_path, limits=limits))
    server.start()
    try:
        with InterpClient(f"127.0.0.1:{port}", timeout=60) as c:
            with pytest.raises(errors.ResourceExhausted, match="max_message_bytes=50,000"):
                c.dataset_images("lenet", dataset=DATASET, limit=24)
            assert len(c.dataset_images("lenet", dataset=DATASET, limit=2).images) == 2
    finally:
        server.stop(grace=None)
