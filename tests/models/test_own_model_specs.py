"""Models from configuration without a server: sources, cards, the traced catalogue, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from models.card import OwnModelError, card_for, parse_source
from models.catalogue import LayerInfo, layer_catalogue
from models.hub import ModelHub
from models.loaded import READY, UNAVAILABLE
from models.own import load_own_model
from models.registry import get_spec
from models.traced import traced_catalogue
from models.weights import WeightsOptions


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("r18")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=4).state_dict(), root / "r18.pt")
    card = {"input_shape": [3, 64, 64], "labels": ["a", "b", "c", "d"], "pretrained": False}
    (root / "card.json").write_text(json.dumps(card))
    return root / "r18.pt", root / "card.json"


@pytest.fixture(scope="module")
def resnet(resnet_files):
    weights, card = resnet_files
    model = load_own_model("r18", f"torchvision:resnet18:{weights}", card, WeightsOptions())
    assert model.status == READY, model.reason
    return model


@pytest.mark.parametrize("name", ["lenet", "lenet-classic"])
def test_traced_catalogue_equals_the_sequential_one(name: str) -> None:
    spec = get_spec(name)
    module = spec.build().eval()
    expected = layer_catalogue(module, spec.input_shape, spec.aliases)
    traced, output = traced_catalogue(module, spec.input_shape, spec.aliases)
    assert output.shape == (1, spec.num_classes)
    assert traced == expected


def test_sources_parse_and_refuse() -> None:
    assert parse_source("torchvision:resnet18") == ("torchvision", "resnet18", "")
    assert parse_source("torchvision:resnet18:/w/r.pt") == ("torchvision", "resnet18", "/w/r.pt")
    assert parse_source("export:/m/a:b.pt2") == ("export", "/m/a:b.pt2", "")
    for bad in ["resnet18", "onnx:/m.onnx", "torchscript:", "torchvision"]:
        with pytest.raises(OwnModelError, match="expected torchvision:ARCH"):
            parse_source(bad)


def test_cards_default_per_kind_and_refuse_bad_values(tmp_path) -> None:
    imagenet = card_for("torchvision", None)
    assert imagenet.input_shape == (3, 224, 224) and len(imagenet.labels or ()) == 1000 and imagenet.crop == 224
    assert card_for("export", None).input_shape is None
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    (tmp_path / "ok.json").write_text(json.dumps({"input_shape": [1, 32, 32], "labels_file": "labels.txt"}))
    ok = card_for("torchvision", tmp_path / "ok.json")
    assert ok.labels == ("cat", "dog") and ok.input_shape == (1, 32, 32) and ok.resize_shorter == 0
    bad = {
        "typo.json": ({"input_shap": [1, 2, 3]}, "unknown keys \\['input_shap'\\]"),
        "shape.json": ({"input_shape": [3, 32]}, "three positive integers"),
        "pretrained.json": ({"pretrained": "yes"}, "true or false"),
        "labels.json": ({"labels_file": "missing.txt"}, "missing.txt"),
    }
    for file, (data, message) in bad.items():
        (tmp_path / file).write_text(json.dumps(data))
        with pytest.raises(OwnModelError, match=message):
            card_for("torchvision", tmp_path / file)
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(OwnModelError, match="cannot be read as JSON"):
        card_for("torchscript", tmp_path / "notjson.json")
    with pytest.raises(OwnModelError, match="cannot be read"):
        card_for("torchscript", tmp_path / "absent.json")


def test_resnet_catalogue_aliases_and_card(resnet) -> None:
    layers = {layer.name: layer for layer in resnet.layers}
    assert resnet.resolve_layer("layer3.1.conv2") == "net.layer3.1.conv2"
    assert resnet.resolve_layer("layer4") == "net.layer4" and resnet.spec.default_gradcam_layer.startswith("net.")
    assert resnet.spec.source == "torchvision" and resnet.pretrained is False  # as the card states
    assert layers["net.fc"].output_shape == (4,) and layers["net.fc"].rf_size is None
    # A residual block takes the longest path: conv-conv (27), not the identity (19).
    assert layers["net.layer1.0.conv1"].rf_size == 19 and layers["net.layer1.0"].rf_size == 27
    assert layers["net.layer4"].rf_size == 435 and layers["net.layer4"].rf_jump == 32
    assert all(layer.rf_known for layer in layers.values())


def _footprint(chain: list[nn.Module], size: int, unit: int) -> tuple[int, int]:
    """Rows of input pixels with a nonzero gradient for ``unit`` of the chain's geometry twin."""
    twin: list[nn.Module] = []
    for layer in chain:
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, layer.dilation, bias=False)
            nn.init.ones_(conv.weight)
            twin.append(conv)
        elif isinstance(layer, nn.MaxPool2d):  # every input of a window reaches the output
            twin.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode))
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(nn.Sequential(*twin).double()(x)[0, 0, unit, unit], x)
    rows = torch.nonzero(grad[0, 0].sum(1) > 0).flatten()
    return int(rows.min()), int(rows.max())


def test_receptive_field_of_layer1_0_conv1_is_its_gradient_footprint(resnet) -> None:
    info: LayerInfo = {layer.name: layer for layer in resnet.layers}["net.layer1.0.conv1"]
    net = resnet.module.net
    chain = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1[0].conv1]
    size = 64
    for unit in (0, 7, info.output_shape[1] - 1):
        centre = info.rf_start + unit * info.rf_jump
        low, high = centre - (info.rf_size - 1) / 2, centre + (info.rf_size - 1) / 2
        assert _footprint(chain, size, unit) == (max(0, int(low)), min(size - 1, int(high))), unit


def test_refusals_name_the_model(resnet_files, tmp_path) -> None:
    weights, card = resnet_files
    options = WeightsOptions()
    cases = {
        "torchvision:resnet18:NOPE_V9": "has no published weights 'NOPE_V9' (choices: IMAGENET1K_V1, DEFAULT",
        "torchvision:resnet18": "resnet18 IMAGENET1K_V1 weights (resnet18-f37072fd.pth) are not in --weights-dir",
        "torchvision:efficientnet_b9:x.pt": "close names: efficientnet_b7",
        "export:" + str(weights): "is not a torch.export program",
    }
    for source, message in cases.items():
        model = load_own_model("mine", source, card, options)
        assert model.status == UNAVAILABLE and model.reason.startswith("model mine ("), model.reason
        assert message in model.reason, (source, model.reason)
        assert model.layers == []


def test_hub_serves_own_models_after_the_builtin_ones(resnet_files) -> None:
    weights, card = resnet_files
    own = {"r18": (f"torchvision:resnet18:{weights}", card), "broken": ("torchscript:/nowhere.pt", None)}
    hub = ModelHub(["lenet"], WeightsOptions(), own=own)
    assert hub.names() == ["lenet", "r18", "broken"]
    assert hub.get("r18").status == READY and hub.get("broken").status == UNAVAILABLE
    assert hub.get("lenet").spec.source == "builtin"
    with pytest.raises(ValueError, match="--model lenet: the name of a built-in model"):
        ModelHub(["lenet"], WeightsOptions(), own={"lenet": (f"torchvision:resnet18:{weights}", card)})


def test_published_weights_download_in_the_background(tmp_path) -> None:
    """A --model with torchvision's published weights not on this machine is LOADING while they
    download (here from a mirror that serves a file with the wrong checksum), then UNAVAILABLE."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save({"not": torch.zeros(1)}, mirror / "resnet18-f37072fd.pth")
    options = WeightsOptions(download=True, url_base=mirror.as_uri() + "/", hub_dir=tmp_path / "hub")
    hub = ModelHub(["lenet"], options, own={"r18": ("torchvision:resnet18", None)})
    assert hub.get("lenet").status == READY and hub.get("r18").status in ("LOADING", UNAVAILABLE)
    assert hub.get("r18").spec.source == "torchvision"
    assert hub.wait(120)
    model = hub.get("r18")
    assert model.status == UNAVAILABLE and model.reason.startswith("model r18 (torchvision:resnet18)"), model.reason
    assert "sha256" in model.reason and not (tmp_path / "hub" / "resnet18-f37072fd.pth").exists()


class _Upsampling(nn.Module):
    """conv -> functional upsampling (no arithmetic) -> conv, and a residual sum at the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 5, padding=2)
        self.conv3 = nn.Conv2d(2, 2, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x) + self.conv2(self.conv1(x)))  # residual: the longest path (3 + 4 = 7)
        up = nn.functional.interpolate(y, scale_factor=2.0)  # between modules, a size no module made
        return self.conv3(up).flatten(1)


def test_traced_fields_take_the_longest_path_and_are_unknown_after_unknown_functions() -> None:
    layers, output = traced_catalogue(_Upsampling(), (1, 8, 8), {})
    by_name = {layer.name: layer for layer in layers}
    assert output.shape == (1, 2 * 16 * 16)
    assert by_name["conv1"].rf_size == 3 and by_name["conv2"].rf_size == 7
    assert by_name["act"].rf_size == 7 and by_name["act"].rf_known  # the sum takes the larger field
    assert by_name["conv3"].rf_size is None and not by_name["conv3"].rf_known
    assert by_name["conv3"].output_shape == (2, 16, 16)
