"""Registry: specs of the served models, their architectures, aliases and errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from torch import nn

from models import registry
from models.errors import UnknownModel
from models.lenet import FASHION_MNIST_CLASSES, Normalize
from models.registry import ModelSpec, get_spec, hash_prefix_from_name, list_models, register_model


def meta_build(spec: ModelSpec) -> nn.Module:
    with torch.device("meta"):
        return spec.build()


def test_the_served_models_are_registered() -> None:
    assert list_models() == ["alexnet", "lenet", "lenet-classic", "vgg16"]


def test_unknown_model_lists_the_registered_names() -> None:
    with pytest.raises(UnknownModel, match="'vgg19'.*alexnet, lenet, lenet-classic, vgg16"):
        get_spec("vgg19")


def test_duplicate_and_malformed_registrations_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="'lenet' is already registered"):
        register_model(lambda: get_spec("lenet"))
    with pytest.raises(ValueError, match="must return a ModelSpec"):
        register_model(lambda: "lenet")
    with pytest.raises(ValueError, match="3 labels for 10 classes"):
        register_model(lambda: dataclasses.replace(get_spec("lenet"), name="x", labels=("a", "b", "c")))

    @register_model
    def lenet2() -> ModelSpec:
        return dataclasses.replace(get_spec("lenet"), name="lenet2")

    assert "lenet2" in list_models() and get_spec("lenet2").name == "lenet2"


@pytest.mark.parametrize("name", list_models())
def test_spec_is_consistent(name: str) -> None:
    spec = get_spec(name)
    model = meta_build(spec)
    assert isinstance(model, nn.Sequential)
    first_name, first = next(iter(model.named_children()))
    assert first_name == "normalize" and isinstance(first, Normalize)
    assert not [n for n, m in model.named_modules() if isinstance(m, nn.ReLU) and m.inplace]
    assert not [k for k in model.state_dict() if k.startswith("normalize")]  # buffers not persistent
    paths = {n for n, _ in model.named_modules() if n}
    assert set(spec.aliases.values()) <= paths
    assert not set(spec.aliases) & paths  # an alias never shadows a module path
    for layer in (spec.default_gradcam_layer, *spec.default_dfi_layers):
        assert layer in paths, layer
    # Grad-CAM's layer: the last conv, or the ReLU right after it (the authors' relu5_3)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    gradcam = model.get_submodule(spec.default_gradcam_layer)
    assert spec.default_gradcam_layer == convs[-1] or isinstance(gradcam, nn.ReLU), spec.default_gradcam_layer
    pre = spec.preprocessing
    assert spec.input_shape == (pre.channels, pre.input_size, pre.input_size)
    if name in ("lenet", "lenet-classic"):  # cheap to build for real (meta buffers hold no values)
        normalize = spec.build().normalize
        assert tuple(normalize.mean.flatten().tolist()) == pytest.approx(pre.mean)
        assert tuple(normalize.std.flatten().tolist()) == pytest.approx(pre.std)
    assert len(spec.labels) == spec.num_classes == len(set(spec.labels))


@pytest.mark.parametrize(
    ("name", "torchvision_build"),
    [("vgg16", torchvision.models.vgg16), ("alexnet", torchvision.models.alexnet)],
)
def test_imagenet_models_take_torchvision_state_dicts_unchanged(name: str, torchvision_build) -> None:
    with torch.device("meta"):
        reference = torchvision_build().state_dict()
        served = get_spec(name).build().state_dict()
    assert list(served) == list(reference)
    assert {k: v.shape for k, v in served.items()} == {k: v.shape for k, v in reference.items()}


def test_served_alexnet_is_torchvision_alexnet_after_normalization() -> None:
    """Same weights, same logits once the input is normalized: normalization is inside, first."""
    torch.manual_seed(0)
    reference = torchvision.models.alexnet().eval()
    served = get_spec("alexnet").build().eval()
    served.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(served(x), reference((x - mean) / std))


def test_imagenet_metadata_comes_from_torchvision() -> None:
    for name, weights in (
        ("vgg16", torchvision.models.VGG16_Weights.IMAGENET1K_V1),
        ("alexnet", torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
    ):
        spec = get_spec(name)
        assert spec.labels == tuple(weights.meta["categories"])
        assert spec.labels[0] == "tench" and spec.labels[281] == "tabby"
        assert spec.weights.url == weights.url
        assert weights.url.endswith("/" + spec.weights.canonical_name)
        transforms = weights.transforms()
        assert spec.preprocessing.resize_shorter == transforms.resize_size[0] == 256
        assert spec.preprocessing.crop == transforms.crop_size[0] == 224
        assert spec.preprocessing.mean == tuple(transforms.mean)
    assert get_spec("vgg16").weights.canonical_name == "vgg16-397923af.pth"
    assert get_spec("alexnet").weights.canonical_name == "alexnet-owt-7be5be79.pth"
    assert get_spec("alexnet").weights.sha256_prefix == "7be5be79"


def test_lenet_spec() -> None:
    spec = get_spec("lenet")
    assert spec.labels == FASHION_MNIST_CLASSES
    assert spec.input_shape == (1, 28, 28)
    assert (spec.preprocessing.resize_shorter, spec.preprocessing.crop) == (0, 0)
    assert spec.training_dataset == "fashion-mnist"
    assert spec.default_gradcam_layer == "relu2" and spec.default_dfi_layers == ("relu1", "relu2")
    assert spec.weights.bundled_metadata is not None
    assert spec.weights.bundled_metadata.name == "lenet5_fashion_mnist.json"
    assert "interp-train" in spec.weights.how_to_make


# The lecture slide (Dive into Deep Learning, LeNet): each layer's type and output shape for one
# (1, 1, 28, 28) input, in order, written out here as the slide prints them.
SLIDE_LENET = [
    ("Conv2d", (6, 28, 28)),
    ("Sigmoid", (6, 28, 28)),
    ("AvgPool2d", (6, 14, 14)),
    ("Conv2d", (16, 10, 10)),
    ("Sigmoid", (16, 10, 10)),
    ("AvgPool2d", (16, 5, 5)),
    ("Flatten", (400,)),
    ("Linear", (120,)),
    ("Sigmoid", (120,)),
    ("Linear", (84,)),
    ("Sigmoid", (84,)),
    ("Linear", (10,)),
]


def test_lenet_classic_is_the_slide_network() -> None:
    spec = get_spec("lenet-classic")
    model = spec.build().eval()
    children = list(model.named_children())
    assert children[0][0] == "normalize"  # the served-model contract: pixels in [0, 1] in
    x = torch.rand(1, 1, 28, 28)
    observed = []
    with torch.no_grad():
        for _name, layer in children:
            x = layer(x)
            if not isinstance(layer, Normalize):
                observed.append((type(layer).__name__, tuple(x.shape[1:])))
    assert observed == SLIDE_LENET
    names = [name for name, _ in children[1:]]
    assert names == ["conv1", "sig1", "pool1", "conv2", "sig2", "pool2", "flatten", "fc1", "sig3", "fc2", "sig4", "fc3"]
    # Where the layers correspond, the names are lenet's.
    lenet_names = {name for name, _ in get_spec("lenet").build().named_children()}
    assert {n for n in names if not n.startswith("sig")} <= lenet_names
    conv1, conv2 = model.conv1, model.conv2
    assert (conv1.kernel_size, conv1.padding, conv2.kernel_size, conv2.padding) == ((5, 5), (2, 2), (5, 5), (0, 0))
    assert (model.pool1.kernel_size, model.pool1.stride) == (2, 2)
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.ReLU | nn.MaxPool2d)]


def test_lenet_classic_spec() -> None:
    spec = get_spec("lenet-classic")
    lenet = get_spec("lenet")
    assert (spec.labels, spec.input_shape, spec.preprocessing) == (lenet.labels, lenet.input_shape, lenet.preprocessing)
    assert spec.training_dataset == "fashion-mnist"
    assert spec.default_gradcam_layer == "conv2" and spec.default_dfi_layers == ("sig1", "sig2")
    assert spec.weights.bundled_metadata is not None
    assert spec.weights.bundled_metadata.name == "lenet5_classic_fashion_mnist.json"
    assert "interp-train --arch classic" in spec.weights.how_to_make


VGG_ALIASES = {
    "conv1_1": "features.0",
    "relu1_2": "features.3",
    "pool1": "features.4",
    "conv3_1": "features.10",
    "relu3_1": "features.11",
    "relu4_1": "features.18",
    "relu5_1": "features.25",
    "conv5_3": "features.28",
    "relu5_3": "features.29",
    "pool5": "features.30",
    "fc6": "classifier.0",
    "relu7": "classifier.4",
    "fc8": "classifier.6",
}
ALEXNET_ALIASES = {
    "conv1": "features.0",
    "relu1": "features.1",
    "pool1": "features.2",
    "conv2": "features.3",
    "pool2": "features.5",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "relu5": "features.11",
    "pool5": "features.12",
    "fc6": "classifier.1",
    "relu6": "classifier.2",
    "fc8": "classifier.6",
}


def test_aliases() -> None:
    vgg, alexnet = get_spec("vgg16").aliases, get_spec("alexnet").aliases
    assert VGG_ALIASES.items() <= vgg.items()
    assert ALEXNET_ALIASES.items() <= alexnet.items()
    assert len([a for a in vgg if a.startswith("conv")]) == 13 and len([a for a in vgg if a.startswith("pool")]) == 5
    assert len([a for a in alexnet if a.startswith("conv")]) == 5
    # Aliases point at modules of the type they name.
    for spec in (get_spec("vgg16"), get_spec("alexnet")):
        model = meta_build(spec)
        for alias, path in spec.aliases.items():
            kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d, "fc": nn.Linear}[
                alias.rstrip("0123456789_")
            ]
            assert isinstance(model.get_submodule(path), kind), (spec.name, alias)
    vgg_dfi = get_spec("vgg16").default_dfi_layers
    assert vgg_dfi == (vgg["relu3_1"], vgg["relu4_1"], vgg["relu5_1"])
    assert get_spec("vgg16").default_gradcam_layer == vgg["relu5_3"]
    assert get_spec("alexnet").default_gradcam_layer == alexnet["relu5"]


@pytest.mark.parametrize(
    ("file_name", "prefix"),
    [
        ("vgg16-397923af.pth", "397923af"),
        ("alexnet-owt-7be5be79.pth", "7be5be79"),
        ("lenet5_fashion_mnist-1a2b3c4d.pt", "1a2b3c4d"),
        ("resnet50-0676ba61.pth", "0676ba61"),
        ("my_model.pt", ""),
        ("model-final.pt", ""),
    ],
)
def test_hash_prefix_from_name_follows_torch_hub(file_name: str, prefix: str) -> None:
    assert hash_prefix_from_name(file_name) == prefix
    match = torch.hub.HASH_REGEX.search(file_name)
    assert (match.group(1) if match else "") == prefix
