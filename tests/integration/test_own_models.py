"""Models served from configuration (``--model NAME=SPEC``, ``--model-card``) through a real server.

- ``r18``: torchvision's ResNet-18 (10 classes, seeded random init) from a state_dict this test
  writes, served at 64 px by its card: answers equal torchvision's own forward, a forward hook
  and captum's LayerGradCam on the same module;
- ``lenet-ts`` / ``lenet-ep``: the trained LeNet as a TorchScript file and a ``torch.export``
  program: answers equal the built-in ``lenet``'s;
- bad specs: each UNAVAILABLE with its reason naming the model, while the others serve.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import LayerGradCam

from client import InterpClient
from client.errors import InterpError
from models.registry import get_spec
from server.app import create_server
from tests.support.servers import test_config

LABELS = [f"class {i}" for i in range(10)]
SIZE = 64


def _lenet() -> torch.nn.Module:
    from models.weights import WeightsOptions, resolve_weights

    spec = get_spec("lenet")
    state, _info = resolve_weights(spec, WeightsOptions())
    module = spec.build()
    module.load_state_dict(state)
    return module.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=10)
    torch.save(resnet.state_dict(), root / "r18.pt")
    torch.save(torchvision.models.resnet34(weights=None, num_classes=10).state_dict(), root / "r34.pt")
    (root / "r18.json").write_text(json.dumps({
        "input_shape": [3, SIZE, SIZE], "labels": LABELS, "default_gradcam_layer": "layer4", "pretrained": True,
    }))  # fmt: skip
    (root / "r18-wrong-classes.json").write_text(json.dumps({"input_shape": [3, SIZE, SIZE], "labels": ["a", "b"]}))
    labels = list(get_spec("lenet").labels)
    (root / "lenet.json").write_text(json.dumps({
        "input_shape": [1, 28, 28], "labels": labels, "training_dataset": "fashion-mnist",
        "default_dfi_layers": ["relu1", "relu2"],
    }))  # fmt: skip
    (root / "lenet-wrong-classes.json").write_text(json.dumps({"input_shape": [1, 28, 28], "labels": ["a", "b"]}))
    (root / "lenet-wrong-shape.json").write_text(json.dumps({"input_shape": [3, 32, 32]}))
    lenet = _lenet()
    x = torch.rand(2, 1, 28, 28)
    torch.jit.save(torch.jit.trace(lenet, x), str(root / "lenet.ts"))
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(lenet, (x,), dynamic_shapes=({0: batch},)), str(root / "lenet.pt2"))
    (root / "junk.pt").write_bytes(b"not a model at all")
    return {path.name: path for path in root.iterdir()}


SPECS = {
    "r18": ("torchvision:resnet18:{r18.pt}", "r18.json"),
    "lenet-ts": ("torchscript:{lenet.ts}", "lenet.json"),
    "lenet-ep": ("export:{lenet.pt2}", "lenet.json"),
    "bad-arch": ("torchvision:resnet81:{r18.pt}", "r18.json"),
    "bad-keys": ("torchvision:resnet18:{r34.pt}", "r18.json"),
    "bad-classes": ("torchvision:resnet18:{r18.pt}", "r18-wrong-classes.json"),
    "bad-classes-ts": ("torchscript:{lenet.ts}", "lenet-wrong-classes.json"),
    "bad-shape": ("torchscript:{lenet.ts}", "lenet-wrong-shape.json"),
    "bad-path": ("export:/nonexistent/model.pt2", "lenet.json"),
    "bad-file": ("torchscript:{junk.pt}", "lenet.json"),
}


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory, fashion_test_images) -> Path:
    """The first 24 Fashion-MNIST test images as PNGs in class sub-folders: a small folder dataset."""
    import cv2

    images, labels = fashion_test_images
    root = tmp_path_factory.mktemp("fm")
    for i in range(24):
        (root / str(labels[i])).mkdir(exist_ok=True)
        cv2.imwrite(str(root / str(labels[i]) / f"{i:03d}.png"), images[i])
    return root


@pytest.fixture(scope="module")
def client(files, fashion_folder, tmp_path_factory) -> Iterator[InterpClient]:
    named = {key.replace(".", "_"): str(path) for key, path in files.items()}
    specs = {name: source.replace(".", "_").format(**named) if "{" in source else source
             for name, (source, _card) in SPECS.items()}  # fmt: skip
    cards = {name: files[card] for name, (_source, card) in SPECS.items()}
    config = test_config(
        models=("lenet",), model_specs=specs, model_cards=cards, datasets={"fm": fashion_folder},
        index_dir=tmp_path_factory.mktemp("index"),
    )  # fmt: skip
    server, port = create_server(config)
    server.start()
    try:
        with InterpClient(f"127.0.0.1:{port}", timeout=300) as c:
            yield c
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def resnet(files) -> torch.nn.Module:
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    net.load_state_dict(torch.load(files["r18.pt"], weights_only=True))
    return net.eval()


def normalized(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) pixels in [0, 1] -> (1, 3, H, W) with ImageNet's mean and std (the card's default)."""
    x = torch.from_numpy(np.asarray(pixels, np.float32)).permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (80, 96, 3), dtype=np.uint8)


def test_list_models_reports_source_sha256_and_card(client, files) -> None:
    infos = {m.name: m for m in client.list_models()}
    r18 = infos["r18"]
    assert r18.status == "READY" and r18.source == "torchvision" and r18.pretrained is True
    assert r18.input_shape == (3, SIZE, SIZE) and r18.num_classes == 10
    import hashlib

    assert r18.weights.sha256 == hashlib.sha256(files["r18.pt"].read_bytes()).hexdigest()
    assert infos["lenet-ts"].source == "torchscript" and infos["lenet-ep"].source == "export"
    assert infos["lenet-ep"].weights.sha256 == hashlib.sha256(files["lenet.pt2"].read_bytes()).hexdigest()
    assert infos["lenet"].source == "builtin" and infos["lenet"].status == "READY"
    # class-name sets (deep feature interpolation) need a training set the server holds: the
    # in-repo LeNet's, or the one a card names (lenet.json: fashion-mnist); r18's card names none
    assert infos["lenet"].class_sets and infos["lenet-ts"].class_sets and infos["lenet-ep"].class_sets
    assert infos["r18"].class_sets is False


def test_bad_specs_are_unavailable_with_the_reason(client) -> None:
    infos = {m.name: m for m in client.list_models()}
    expected = {
        "bad-arch": ["resnet81", "close names", "resnet18"],
        "bad-keys": ["does not match the resnet18 architecture", "unexpected keys (96)", "layer1.2.conv1.weight"],
        "bad-classes": ["with 2 classes", "fc.weight: file (10, 512) vs model (2, 512)"],
        "bad-classes-ts": ["the card has 2 classes (labels) but the model outputs 10"],
        "bad-shape": ["input_shape (3, 32, 32)", "does not fit"],
        "bad-path": ["/nonexistent/model.pt2", "does not exist"],
        "bad-file": ["junk.pt", "not a TorchScript file"],
    }
    for name, words in expected.items():
        info = infos[name]
        assert info.status == "UNAVAILABLE", name
        assert info.reason.startswith(f"model {name} ("), info.reason
        for word in words:
            assert word.lower() in info.reason.lower(), (name, word, info.reason)
    with pytest.raises(InterpError, match="bad-arch"):
        client.classify(np.zeros((8, 8, 3), np.uint8), model="bad-arch")


def test_resnet_classify_equals_torchvision(client, resnet, photo) -> None:
    r = client.classify(photo, model="r18", top_k=10, include_input=True)
    assert r.input.shape == (SIZE, SIZE, 3)
    with torch.no_grad():
        logits = resnet(normalized(r.input))[0].numpy()
    np.testing.assert_allclose(r.logits, logits, rtol=1e-4, atol=1e-5)
    assert r.model_source == "torchvision" and r.pretrained is True
    assert r.predictions[0].index == int(np.argmax(logits)) and r.predictions[0].label == LABELS[r.predictions[0].index]


def test_resnet_activations_equal_a_forward_hook(client, resnet, photo) -> None:
    r = client.activations(photo, model="r18", layers=["layer2.0.conv1"], include_input=True)
    seen = []
    handle = resnet.layer2[0].conv1.register_forward_hook(lambda _m, _i, out: seen.append(out[0].numpy()))
    with torch.no_grad():
        resnet(normalized(r.input))
    handle.remove()
    got = r["layer2.0.conv1"]
    assert got.layer == "net.layer2.0.conv1"
    np.testing.assert_allclose(got.activation, seen[0], rtol=1e-4, atol=1e-5)


def test_resnet_grad_cam_equals_captum(client, resnet, photo) -> None:
    r = client.saliency(photo, model="r18", method="grad_cam", target=3, include_input=True)
    assert r.params.get("layer") in (None, "net.layer4", "layer4")
    expected = LayerGradCam(resnet, resnet.layer4).attribute(normalized(r.input), target=3, relu_attributions=True)
    np.testing.assert_allclose(r.attribution, expected[0].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_lenet_script_and_export_answer_as_the_builtin(client, fashion_test_images) -> None:
    images, _labels = fashion_test_images
    image = images[0]
    base = client.classify(image, model="lenet", top_k=10)
    assert base.model_source == "builtin"
    acts = client.activations(image, model="lenet", layers=["conv1", "relu2", "fc2"])
    sal = client.saliency(image, model="lenet", method="gradient", target=9)
    for name in ("lenet-ts", "lenet-ep"):
        r = client.classify(image, model=name, top_k=10)
        assert r.model_source == {"lenet-ts": "torchscript", "lenet-ep": "export"}[name]
        np.testing.assert_allclose(r.logits, base.logits, rtol=1e-4, atol=1e-5)
        assert [p.label for p in r.predictions] == [p.label for p in base.predictions]
        own = client.activations(image, model=name, layers=["conv1", "relu2", "fc2"])
        for layer in ("conv1", "relu2", "fc2"):
            np.testing.assert_allclose(own[layer].activation, acts[layer].activation, rtol=1e-4, atol=1e-5)
        s = client.saliency(image, model=name, method="gradient", target=9)
        np.testing.assert_allclose(s.map, sal.map, rtol=1e-4, atol=1e-7)


def test_describe_lists_aliases_and_unknown_receptive_fields(client) -> None:
    d = client.describe_model("r18")
    by_name = {layer.name: layer for layer in d.layers}
    conv = by_name["net.layer1.0.conv1"]
    assert conv.aliases == ("layer1.0.conv1",) and conv.receptive_field.size == 19 and conv.receptive_field.jump == 4
    assert by_name["net.layer4"].receptive_field.size == 435  # ResNet-18's published value
    ts = {layer.name: layer for layer in client.describe_model("lenet-ts").layers}
    assert ts["net.conv1"].type == "Conv2d" and ts["net.conv1"].receptive_field_unknown
    assert ts["net.fc3"].output_shape == (10,) and not ts["net.fc3"].receptive_field_unknown


@pytest.mark.parametrize("name", ["lenet-ts", "lenet-ep"])
def test_iterative_methods_answer_or_say_why(client, fashion_test_images, name) -> None:
    image = fashion_test_images[0][0]
    dream = client.dream(image, model=name, layers={"relu2": 1.0}, octaves=1, iterations=2)
    assert dream.image.shape == (28, 28, 1)
    attack = client.attack(image, model=name, method="pgd", epsilon=[0.2], steps=3, seed=1)
    assert len(attack.outcomes) == 1
    r = client.interpolate(image, model=name, positive="Sneaker", negative="Ankle boot", alphas=[0, 1],
                           iterations=2, warm_iterations=1, set_size=2)  # fmt: skip
    assert r.layers == ("net.relu1", "net.relu2") and len(r.results) == 2
    with pytest.raises(InterpError, match="compiled code"):
        client.kernels(name, "conv2")
    if name == "lenet-ts":
        assert client.visualize_filter(name, "relu2", [0], steps=3, seed=0).images.shape == (1, 28, 28, 1)
    else:  # exported with a static height and width: a jittered input is refused, saying why
        with pytest.raises(InterpError, match="takes 28x28 inputs only"):
            client.visualize_filter(name, "relu2", [0], steps=3, seed=0)


def test_resnet_iterative_methods(client, photo) -> None:
    vis = client.visualize_filter("r18", "layer3", [0], steps=3, seed=0)
    assert vis.images.shape == (1, SIZE, SIZE, 3)
    assert client.kernels("r18", "conv1").weights.shape == (64, 3, 7, 7)
    attack = client.attack(photo, model="r18", method="fgsm", epsilon=[0.05])
    assert len(attack.outcomes) == 1


def test_index_top_activations_neighbours_and_embedding_equal_the_builtin(client, fashion_test_images) -> None:
    ids: dict[str, list] = {}
    values: dict[str, np.ndarray] = {}
    for name in ("lenet", "lenet-ts", "lenet-ep"):
        built = client.build_index(name, "fm", layers=["relu2", "fc2"], k=3)
        assert built.images == 24, name
        top = client.top_activations(name, dataset="fm", layer="fc2", channels=[0, 5], k=3)
        spatial = client.top_activations(name, dataset="fm", layer="relu2", channels=[1], k=3)
        near = client.nearest_neighbors(fashion_test_images[0][30], model=name, dataset="fm", layer="fc2", k=4)
        pca = client.embedding(name, dataset="fm", layer="fc2", method="pca")
        entries = [e for ch in (*top.channels, *spatial.channels) for e in ch.entries]
        ids[name] = [
            [(e.image_id, e.y, e.x) for e in entries],
            [n.image_id for n in near.neighbors],
            pca.image_ids.tolist(),
        ]
        values[name] = np.concatenate([
            [e.value for e in entries], [n.distance for n in near.neighbors], np.abs(pca.coordinates).ravel()
        ])  # fmt: skip
    for name in ("lenet-ts", "lenet-ep"):
        assert ids[name] == ids["lenet"], name
        np.testing.assert_allclose(values[name], values["lenet"], rtol=1e-4, atol=1e-5)


def test_cli_lists_the_kind_and_unknown_fields(client) -> None:
    import argparse

    from client.cli_text import text_layers, text_models

    listing = text_models(client.list_models(), argparse.Namespace())
    row = next(line for line in listing.splitlines() if line.startswith("lenet-ep "))
    assert "READY" in row and "export file" in row
    layers = text_layers(client.describe_model("lenet-ts"), argparse.Namespace())
    conv = next(line for line in layers.splitlines() if line.startswith("net.conv1 "))
    assert "unknown" in conv
