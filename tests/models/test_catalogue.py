"""Layer catalogue: computed shapes vs real forward passes, receptive fields vs gradient footprints."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from models.catalogue import POINTWISE, LayerInfo, conv_output_size, layer_catalogue
from models.registry import get_spec, list_models


def forward_shapes(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every leaf module, recorded with forward hooks on a real pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, _module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        shapes[name] = tuple(out.shape[1:])

    handles = []
    for name, sub in module.named_modules():
        if name and not list(sub.children()):
            handles.append(sub.register_forward_hook(partial(record, name)))
    try:
        with torch.no_grad():
            module.eval()(torch.rand(2, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def meta_catalogue(name: str) -> dict[str, LayerInfo]:
    """The catalogue of a registered model at its input size, from a meta-device build."""
    spec = get_spec(name)
    with torch.device("meta"):
        return {layer.name: layer for layer in layer_catalogue(spec.build(), spec.input_shape, spec.aliases)}


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Each registered model built once (random weights) for this module's tests."""
    return {name: get_spec(name).build() for name in list_models()}


@pytest.mark.parametrize("name", list_models())
def test_output_shapes_match_a_forward_pass(name: str, built: dict[str, nn.Module]) -> None:
    spec = get_spec(name)
    layers = layer_catalogue(built[name], spec.input_shape, spec.aliases)
    observed = forward_shapes(built[name], spec.input_shape)
    assert [layer.name for layer in layers] == list(observed)  # every leaf, in forward order
    for layer in layers:
        assert layer.output_shape == observed[layer.name], layer.name
        assert layer.channels == layer.output_shape[0]
    assert layers[-1].output_shape == (spec.num_classes,)


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts_add_up(name: str, built: dict[str, nn.Module]) -> None:
    spec = get_spec(name)
    layers = layer_catalogue(built[name], spec.input_shape, spec.aliases)
    assert sum(layer.parameters for layer in layers) == sum(p.numel() for p in built[name].parameters())
    kernels = {layer.name for layer in layers if layer.has_kernels}
    assert kernels == {n for n, m in built[name].named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("name", ["vgg16", "alexnet"])
@pytest.mark.parametrize("size", [64, 97, 131])
def test_output_shapes_at_other_input_sizes(name: str, size: int, built: dict[str, nn.Module]) -> None:
    # Odd sizes exercise the floors; at 64 px the adaptive pools upsample (RF becomes None).
    features = nn.Sequential(built[name].normalize, built[name].features, built[name].avgpool)
    layers = layer_catalogue(features, (3, size, size), {})
    observed = forward_shapes(features, (3, size, size))
    assert {layer.name: layer.output_shape for layer in layers} == observed


def test_vgg16_conv3_1_in_the_catalogue() -> None:
    layers = meta_catalogue("vgg16")
    conv3_1 = layers["features.10"]
    assert conv3_1.aliases == ("conv3_1",)
    assert conv3_1.output_shape == (256, 56, 56)
    assert (conv3_1.rf_size, conv3_1.rf_jump, conv3_1.rf_start) == (24, 4, 1.5)
    assert conv3_1.parameters == 256 * 128 * 9 + 256
    assert conv3_1.has_kernels
    assert layers["normalize"].rf_size == 1 and layers["normalize"].output_shape == (3, 224, 224)
    assert layers["flatten"].output_shape == (25088,) and layers["flatten"].rf_size is None


# Published receptive field sizes (Araujo et al. 2019, Distill, "Computing Receptive Fields of CNNs",
# and the CS231n/Caffe tables): an oracle independent of our arithmetic.
PUBLISHED_RF = {
    ("vgg16", "conv5_3"): 196,
    ("vgg16", "pool5"): 212,
    ("alexnet", "conv1"): 11,
    ("alexnet", "pool5"): 195,
}


@pytest.mark.parametrize(("model", "alias"), sorted(PUBLISHED_RF))
def test_receptive_fields_match_published_values(model: str, alias: str) -> None:
    layers = meta_catalogue(model)
    assert layers[get_spec(model).aliases[alias]].rf_size == PUBLISHED_RF[(model, alias)]


def geometry_twin(module: nn.Module, upto: str) -> nn.Sequential:
    """A one-channel, float64, all-positive linear copy of ``module``'s leaves up to ``upto``.

    Same kernels, strides, paddings and dilations, but every conv kernel is ones, max-pools
    become average pools (same window) and pointwise modules vanish: the gradient of an output
    unit w.r.t. the input is then strictly positive exactly on the pixels it depends on, so its
    bounding box is the unit's receptive field clipped to the image. Nothing can cancel or be
    gated off as with real weights, ReLUs or max-pool's argmax.
    """
    twin = []
    for name, layer in module.named_modules():
        if not name or list(layer.children()):
            continue
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, layer.dilation, bias=False)
            nn.init.ones_(conv.weight)
            twin.append(conv)
        elif isinstance(layer, nn.MaxPool2d):
            if layer.dilation not in (1, (1, 1)):
                raise NotImplementedError("dilated max-pool")
            pool = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
            twin.append(pool)
        elif isinstance(layer, nn.AdaptiveAvgPool2d):
            twin.append(nn.AdaptiveAvgPool2d(layer.output_size))
        elif isinstance(layer, POINTWISE):
            twin.append(nn.Identity())
        else:
            raise NotImplementedError(type(layer).__name__)
        if name == upto:
            return nn.Sequential(*twin).double()
    raise KeyError(upto)


def footprint(twin: nn.Module, size: int, unit: tuple[int, int]) -> tuple[int, int, int, int]:
    """(row_min, row_max, col_min, col_max) of the input pixels with a nonzero gradient."""
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(twin(x)[0, 0, unit[0], unit[1]], x)
    rows = torch.nonzero(grad[0, 0].sum(1) > 0).flatten()
    cols = torch.nonzero(grad[0, 0].sum(0) > 0).flatten()
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def expected_box(layer: LayerInfo, size: int, unit: tuple[int, int]) -> tuple[int, int, int, int]:
    """The catalogue's receptive field of ``unit``, clipped to the image, as a bounding box."""
    box = []
    for k in unit:
        centre = layer.rf_start + k * layer.rf_jump
        low, high = centre - (layer.rf_size - 1) / 2, centre + (layer.rf_size - 1) / 2
        assert low == math.floor(low) and high == math.floor(high), "field edges fall on pixel centres"
        box += [max(0, int(low)), min(size - 1, int(high))]
    return box[0], box[1], box[2], box[3]


RF_LAYERS = {
    "vgg16": ["conv1_2", "pool1", "conv3_1", "pool3", "conv4_3", "conv5_3", "pool5"],
    "alexnet": ["conv1", "pool1", "conv2", "pool2", "conv5", "pool5"],
    "lenet": ["conv1", "pool1", "conv2", "pool2"],
}


@pytest.mark.parametrize(("name", "layer"), [(m, name) for m, names in RF_LAYERS.items() for name in names])
def test_receptive_field_matches_gradient_footprint(name: str, layer: str) -> None:
    spec = get_spec(name)
    with torch.device("meta"):
        arch = spec.build()
    path = spec.aliases.get(layer, layer)
    info = meta_catalogue(name)[path]
    size = spec.input_shape[1]
    twin = geometry_twin(arch, path)
    height = info.output_shape[1]
    # The first and last units' fields are clipped by the image border; the middle one's is not.
    for unit in [(0, 0), (height // 2, height // 3), (height - 1, height - 1)]:
        assert footprint(twin, size, unit) == expected_box(info, size, unit), unit


def test_receptive_field_of_the_real_lenet_is_inside_the_computed_one() -> None:
    """On the served LeNet itself (random weights), gradients never leave the computed field."""
    spec = get_spec("lenet")
    torch.manual_seed(0)
    model = spec.build().eval()
    info = {i.name: i for i in layer_catalogue(model, spec.input_shape, spec.aliases)}["relu2"]
    stem = model[: list(dict(model.named_children())).index("relu2") + 1]
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    out = stem(x)
    unit = (5, 4)
    channel = int(out[0, :, unit[0], unit[1]].argmax())  # a unit that is active, so gradients flow
    (grad,) = torch.autograd.grad(out[0, channel, unit[0], unit[1]], x)
    rows = torch.nonzero(grad[0, 0].abs().sum(1) > 0).flatten()
    cols = torch.nonzero(grad[0, 0].abs().sum(0) > 0).flatten()
    r0, r1, c0, c1 = expected_box(info, 28, unit)
    assert len(rows) > 0
    assert r0 <= rows.min() and rows.max() <= r1 and c0 <= cols.min() and cols.max() <= c1


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
    ceil_mode=st.booleans(),
    pool=st.booleans(),
)
def test_output_size_matches_pytorch(n, kernel, stride, padding, dilation, ceil_mode, pool) -> None:
    """conv_output_size against PyTorch's own conv and max-pool (ceil_mode included) on random geometry."""
    if pool:
        padding = min(padding, kernel // 2)  # PyTorch's constraint on pooling padding
        layer: nn.Module = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    else:
        ceil_mode = False
        layer = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        with pytest.raises(ValueError, match="too small"):
            conv_output_size(n, kernel, stride, padding, dilation, ceil_mode)
        return
    with torch.no_grad():
        actual = layer(torch.zeros(1, 1, n, n)).shape[-1]
    assert conv_output_size(n, kernel, stride, padding, dilation, ceil_mode) == actual
    seq = nn.Sequential(layer)
    (info,) = layer_catalogue(seq, (1, n, n), {})
    assert info.output_shape == (1, actual, actual)


def test_more_layer_types_match_a_forward_pass() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding="same", dilation=2),
        nn.BatchNorm2d(8),
        nn.LeakyReLU(),
        nn.Conv2d(8, 8, 4, padding="valid"),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.Sequential(nn.Dropout2d(), nn.Conv2d(8, 4, (3, 3), stride=(2, 2), dilation=(2, 2))),
        nn.AdaptiveAvgPool2d((5, None)),
        nn.Flatten(),
        nn.Linear(4 * 5 * 6, 7),
        nn.GELU(),
    )
    layers = layer_catalogue(model, (3, 31, 31), {"first": "0", "deep": "5.1"})
    assert {layer.name: layer.output_shape for layer in layers} == forward_shapes(model, (3, 31, 31))
    named = {layer.name: layer for layer in layers}
    assert named["0"].aliases == ("first",) and named["5.1"].aliases == ("deep",)
    # "same" with dilation 2: field 1 + 2*2 = 5, start 0 (the padding centres it).
    assert (named["0"].rf_size, named["0"].rf_start) == (5, 0.0)


def test_unsupported_structures_are_named() -> None:
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Custom"):
        layer_catalogue(nn.Sequential(nn.Conv2d(1, 1, 3), Custom()), (1, 8, 8), {})
    with pytest.raises(TypeError, match="nn.Sequential"):
        layer_catalogue(nn.Conv2d(1, 1, 3), (1, 8, 8), {})
    with pytest.raises(ValueError, match="expects 2 input channels"):
        layer_catalogue(nn.Sequential(nn.Conv2d(2, 1, 3)), (1, 8, 8), {})
    with pytest.raises(ValueError, match="Linear expects 10"):
        layer_catalogue(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (1, 3, 3), {})
