"""End-to-end values: what the RPCs return equals the in-process ``interp`` call, number for number.

The shape-and-range checks of test_sdk.py would pass with a server that computed on the wrong
tensor, ignored a parameter or mixed up a seed. Here every computing method (Saliency with all
six methods, Attack fgsm/bim/pgd, VisualizeFilter, DeepDream, InterpolateFeatures) is called
through the SDK on the shared in-process server, and the same ``interp`` function is called in
this process on an independently loaded copy of the served model (same weights options, so the
same weights sha256, asserted) with the input preprocessed by the server's own
``server.imaging.load_input`` and the parameters the RPC echoes. Arrays must agree within
1e-5 (absolute and relative). The randomized methods (smoothgrad noise, PGD start, feature-vis
init and jitter, DeepDream jitter) draw from private generators seeded from the params, so the
same seed must give the same numbers.

lenet (trained, committed weights) covers every method; alexnet (seeded random weights) covers
the RGB path with Saliency (also read raw, as (C, H, W) proto tensors) and VisualizeFilter at
small sizes. A last test runs seeded methods as overlapping requests: the numbers must not move.
On this machine every comparison is bit-identical when both sides compute on the same number of
torch threads; LeNet's convolutions take another kernel on one thread than on two
(:class:`models.lenet.Conv2d`), which moves LeNet's numbers by float rounding only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from client import InterpClient
from client.images import image_message
from interp.attacks.linf import AttackParams, attack
from interp.attribution.saliency import METHODS, SaliencyParams, saliency
from interp.synthesis import deepdream as dd
from interp.synthesis import feature_interpolation as dfi
from interp.synthesis import feature_vis as fv
from interp.synthesis import feature_vis_params as fvp
from models.hub import ModelHub
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from protos.codec import from_tensor
from protos.methods import by_rpc
from server.app import weights_options
from server.imaging import load_input
from tests.support.servers import test_config

TOL = 1e-5  # absolute and relative


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(target: str) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def local_hub() -> ModelHub:
    """The served models loaded again in this process, with the test server's weights options."""
    config = test_config()
    return ModelHub(["lenet", "alexnet"], weights_options(config), device=config.device)


@pytest.fixture(scope="module")
def lenet(local_hub: ModelHub) -> LoadedModel:
    return local_hub.ready("lenet")


@pytest.fixture(scope="module")
def alexnet(local_hub: ModelHub) -> LoadedModel:
    return local_hub.ready("alexnet")


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


@pytest.fixture(scope="module")
def fashion_pngs(fashion_test_images: tuple[np.ndarray, np.ndarray]) -> dict[str, bytes]:
    """Real Fashion-MNIST test images as PNG bytes: a sneaker, an ankle boot, two of each for sets."""
    images, labels = fashion_test_images
    sneakers = np.flatnonzero(labels == 7)
    boots = np.flatnonzero(labels == 9)
    return {
        "sneaker": _png(images[sneakers[0]]),
        "boot": _png(images[boots[0]]),
        "sneaker2": _png(images[sneakers[1]]),
        "boot2": _png(images[boots[1]]),
    }


# -- helpers ----------------------------------------------------------------------------------------


def local_input(model: LoadedModel, png: bytes) -> torch.Tensor:
    """The (1, C, H, W) tensor the server computes on, made by the server's own preprocessing."""
    limits = test_config().limits
    return load_input(image_message(png), model.spec.preprocessing, limits.max_image_pixels)


def hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (N, C, H, W) tensor -> channels last, as the SDK returns images."""
    array = image.detach().cpu().numpy()
    return np.moveaxis(array, -3, -1)


def close(rpc: Any, local: Any, what: str) -> None:
    """Equal within TOL relative, and within TOL absolute on the scale of ``local`` (never looser
    than TOL: a map of gradients around 1e-4 is compared at 1e-9, not at 1e-5)."""
    want = np.asarray(local, dtype=np.float64)
    scale = min(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(np.asarray(rpc), want, rtol=TOL, atol=TOL * scale, err_msg=what)


def same_model(result: Any, model: LoadedModel) -> None:
    """The RPC's stamp names the model and the very weights loaded in process."""
    assert result.model == model.spec.name
    assert result.pretrained == model.pretrained
    assert len(model.weights.sha256) == 64
    assert result.weights_sha256 == model.weights.sha256


def same_input(result: Any, x: torch.Tensor) -> None:
    """The preprocessed input the RPC echoes is exactly the tensor computed on here."""
    assert result.input is not None
    np.testing.assert_array_equal(result.input, hwc(x[0]))


def echoed(result: Any, requested: Mapping[str, Any]) -> dict[str, Any]:
    """The echoed parameters; every value the client set comes back unchanged."""
    params = dict(result.params)
    for name, value in requested.items():
        if name in params:
            assert params[name] == value, f"{name}: sent {value!r}, echoed {params[name]!r}"
    return params


# -- Saliency: every method -------------------------------------------------------------------------

SALIENCY_PARAMS: dict[str, dict[str, Any]] = {
    "gradient": {},
    "gradient_x_input": {},
    "smoothgrad": {"samples": 6, "noise_level": 0.2, "seed": 7, "batch_size": 4},
    "integrated_gradients": {"steps": 12, "batch_size": 5},
    "guided_backprop": {},
    "grad_cam": {"layer": "conv1"},
}


def test_the_saliency_cases_cover_every_method() -> None:
    assert set(SALIENCY_PARAMS) == set(METHODS)
    for method, params in SALIENCY_PARAMS.items():
        assert set(params) <= set(by_rpc("Saliency").applies[method]), method


def check_saliency(
    client: InterpClient, model: LoadedModel, png: bytes, method: str, params: dict[str, Any], target: int | None
) -> None:
    r = client.saliency(png, model=model.spec.name, method=method, target=target, **params)
    same_model(r, model)
    x = local_input(model, png)
    same_input(r, x)
    sent = echoed(r, params)
    # The echo holds the fields this method reads (and the rendering ones), nothing else, each
    # the value sent or the documented default; grad_cam's layer resolved to a module path.
    assert set(sent) == set(by_rpc("Saliency").applies[method])  # the rendering fields included
    expected = {name: value for name, value in dataclasses.asdict(SaliencyParams(**params)).items() if name in sent}
    if method == "grad_cam":
        expected["layer"] = model.resolve_layer(params.get("layer") or model.spec.default_gradcam_layer)
    assert sent == expected
    local = saliency(
        model.require_ready(),
        x,
        None if target is None else torch.tensor([target]),
        method=method,
        params=SaliencyParams(**sent),
    )
    assert r.method == method
    assert r.target is not None
    assert r.target.index == int(local.target[0])
    assert r.target.label == model.spec.labels[r.target.index]
    close(r.target.probability, float(local.probabilities[0, r.target.index]), f"{method}: target probability")
    assert r.map is not None and r.attribution is not None
    assert r.map.shape == tuple(model.spec.input_shape[1:])
    close(r.map, local.map[0].numpy(), f"{method}: map")
    close(r.attribution, local.attribution[0].numpy(), f"{method}: attribution")


@pytest.mark.parametrize("method", METHODS)
def test_saliency_lenet_matches_in_process(client, lenet, fashion_pngs, method: str) -> None:
    check_saliency(client, lenet, fashion_pngs["sneaker"], method, SALIENCY_PARAMS[method], target=None)


def test_saliency_lenet_targeted_and_default_params(client, lenet, fashion_pngs) -> None:
    # Defaults resolved by the server (smoothgrad: 50 samples, noise 0.15, seed 0) and a class
    # that is not the prediction.
    check_saliency(client, lenet, fashion_pngs["boot"], "smoothgrad", {}, target=3)
    check_saliency(client, lenet, fashion_pngs["boot"], "grad_cam", {}, target=3)


def test_saliency_alexnet_rgb_matches_in_process(client, alexnet, cat_png) -> None:
    check_saliency(client, alexnet, cat_png, "gradient", {}, target=None)


def test_raw_saliency_alexnet_is_channels_first_and_matches_in_process(stub, alexnet, cat_png) -> None:
    # The raw reply, without the SDK's channels-last conversion: (C, H, W) tensors and the
    # `resolved` message. An RGB attribution catches a channel or axis mix-up.
    request = pb.SaliencyRequest(
        model="alexnet", image=image_message(cat_png), method="gradient_x_input", target=pb.Target(label="TIGER CAT")
    )
    reply = stub.Saliency(request, timeout=120)
    assert reply.stamp.weights_sha256 == alexnet.weights.sha256 and reply.stamp.model == "alexnet"
    x = local_input(alexnet, cat_png)
    np.testing.assert_array_equal(from_tensor(reply.input.tensor), x[0].numpy())
    resolved = {field.name: value for field, value in reply.resolved.ListFields()}
    assert set(resolved) == {"clip_percentile", "colormap"}  # gradient_x_input reads no parameter
    assert reply.target.index == alexnet.spec.labels.index("tiger cat")  # labels are case-insensitive
    local = saliency(
        alexnet.require_ready(),
        x,
        torch.tensor([reply.target.index]),
        method="gradient_x_input",
        params=SaliencyParams(**resolved),
    )
    attribution = from_tensor(reply.attribution)
    assert attribution.shape == (3, 224, 224)
    close(attribution, local.attribution[0].numpy(), "raw attribution (C, H, W)")
    close(from_tensor(reply.map), local.map[0].numpy(), "raw map")
    close(reply.target.probability, float(local.probabilities[0, reply.target.index]), "target probability")


# -- Attack -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "goal"),
    [
        ("fgsm", {}, None),
        ("bim", {"steps": 4, "step_size": 0.01}, None),
        ("pgd", {"steps": 3, "seed": 11}, None),
        ("pgd", {"steps": 3, "seed": 5, "random_start": True}, 2),
    ],
    ids=["fgsm", "bim", "pgd", "pgd-targeted"],
)
def test_attack_lenet_matches_in_process(client, lenet, fashion_pngs, method, params, goal) -> None:
    check_attack(client, lenet, fashion_pngs["sneaker"], method, params, goal)


def check_attack(
    client: InterpClient, lenet: LoadedModel, png: bytes, method: str, params: dict[str, Any], goal: int | None
) -> None:
    epsilons = [0.03, 0.1]
    r = client.attack(png, model="lenet", method=method, epsilon=epsilons, target=goal, **params)
    same_model(r, lenet)
    x = local_input(lenet, png)
    same_input(r, x)
    # step_size is echoed per epsilon (outcome.step_size), not in params; what the client set stays.
    sent = {**params, **echoed(r, params)}
    module = lenet.require_ready()
    with torch.no_grad():
        clean = torch.softmax(module(x), dim=1)[0]
    assert r.original is not None and r.original.index == int(clean.argmax())
    close(r.original.probability, float(clean.max()), "clean probability")
    assert r.targeted == (goal is not None)
    assert [o.epsilon for o in r.outcomes] == epsilons
    for outcome, epsilon in zip(r.outcomes, epsilons, strict=True):
        local = attack(
            module,
            x,
            method=method,
            epsilon=epsilon,
            target=None if goal is None else torch.tensor([goal]),
            params=AttackParams(**sent),
        )
        what = f"{method} eps={epsilon}"
        assert outcome.adversarial is not None
        close(outcome.adversarial, hwc(local.adversarial[0]), f"{what}: adversarial")
        close(outcome.step_size, local.params.step_size, f"{what}: step size")
        close(outcome.linf, float(local.linf[0]), f"{what}: linf")
        close(outcome.l2, float(local.l2[0]), f"{what}: l2")
        assert outcome.success == bool(local.success[0])
        predicted = int(local.predictions[0])
        assert outcome.prediction is not None and outcome.prediction.index == predicted
        close(outcome.prediction.probability, float(local.probabilities[0, predicted]), f"{what}: probability")
    if method != "fgsm":
        assert sent["steps"] == params["steps"] and "random_start" in sent
    if method == "pgd":
        assert sent["random_start"] is True and sent["seed"] == params["seed"]


# -- VisualizeFilter --------------------------------------------------------------------------------


def check_visualize(
    client: InterpClient, model: LoadedModel, layer: str, channels: list[int], params: dict[str, Any]
) -> None:
    r = client.visualize_filter(model.spec.name, layer, channels, **params)
    same_model(r, model)
    in_channels, side = model.spec.input_shape[0], model.spec.input_shape[1]
    sent = echoed(r, params)
    path = model.resolve_layer(layer)
    dense = len(next(info.output_shape for info in model.layers if info.name == path)) == 1
    resolved = fvp.resolve(fvp.FeatureVisParams(**params), in_channels=in_channels, input_size=side, dense=dense)
    assert sent == dataclasses.asdict(resolved)  # the echo is the complete resolution of the request
    local = fv.visualize_filter(
        model.require_ready(),
        model.resolve_layer(layer),
        channels,
        in_channels=in_channels,
        input_size=side,
        params=fvp.FeatureVisParams(**sent),
    )
    assert r.layer == model.resolve_layer(layer) and list(r.channels) == channels
    assert r.images is not None
    size = int(sent["image_size"])
    assert r.images.shape == (len(channels), size, size, in_channels)
    close(r.images, hwc(local.images), f"{model.spec.name} {layer}: images")
    close(r.activations, local.activations.numpy(), f"{model.spec.name} {layer}: activations")


def test_visualize_filter_lenet_matches_in_process(client, lenet) -> None:
    # LeNet defaults: pixel parameterization, 2 restarts, transforms (pad and jitter).
    check_visualize(client, lenet, "relu2", [0, 6, 15], {"steps": 6, "seed": 3})


def test_visualize_filter_alexnet_rgb_matches_in_process(client, alexnet) -> None:
    # RGB defaults: Fourier parameterization with the colour decorrelation, one restart.
    check_visualize(client, alexnet, "conv2", [0, 5], {"steps": 2, "image_size": 32, "seed": 4})


# -- DeepDream --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "params"),
    [
        ("relu2", {"iterations": 3, "seed": 9}),
        ({"relu1": 0.5, "relu2": 1.0}, {"octaves": 2, "iterations": 2, "jitter": 3, "step_size": 0.03, "seed": 1}),
    ],
    ids=["one-layer-defaults", "weighted-layers"],
)
def test_dream_lenet_matches_in_process(client, lenet, fashion_pngs, layers, params) -> None:
    check_dream(client, lenet, fashion_pngs["boot"], layers, params)


def check_dream(
    client: InterpClient, lenet: LoadedModel, png: bytes, layers: str | dict[str, float], params: dict[str, Any]
) -> None:
    r = client.dream(png, model="lenet", layers=layers, **params)
    same_model(r, lenet)
    x = local_input(lenet, png)
    same_input(r, x)
    sent = echoed(r, params)
    resolved = dd.resolve(dd.DeepDreamParams(**params), in_channels=1, input_size=28)
    assert sent == dataclasses.asdict(resolved)
    weights = {layers: 1.0} if isinstance(layers, str) else dict(layers)
    local = dd.deepdream(lenet.require_ready(), x, weights, params=dd.DeepDreamParams(**sent))
    assert r.image is not None
    close(r.image, hwc(local.image[0]), "dream image")
    assert [g.layer for g in r.gains] == list(weights)
    for gain in r.gains:
        close(gain.norm_before, local.norms_before[gain.layer], f"{gain.layer}: norm before")
        close(gain.norm_after, local.norms_after[gain.layer], f"{gain.layer}: norm after")


# -- InterpolateFeatures ----------------------------------------------------------------------------

DFI_PARAMS = {"iterations": 4, "warm_iterations": 2, "tv_weight": 0.02}


def check_interpolation(r: Any, model: LoadedModel, source: torch.Tensor, direction: torch.Tensor, sent: dict) -> None:
    module = model.require_ready()
    layers = list(model.spec.default_dfi_layers)
    assert list(r.layers) == layers
    local = dfi.interpolate_features(
        module,
        source,
        layers,
        direction=direction,
        alphas=list(r.alphas),
        params=dfi.InterpolateFeaturesParams(**sent),
    )
    assert [a.alpha for a in r.results] == [a.alpha for a in local]
    for got, want in zip(r.results, local, strict=True):
        what = f"alpha {want.alpha}"
        assert got.image is not None
        close(got.image, hwc(want.images[0]), f"{what}: image")
        close(got.feature_error, float(want.feature_error[0]), f"{what}: feature error")
        with torch.no_grad():
            probs = torch.softmax(module(want.images[:1]), dim=1)[0]
        assert got.prediction is not None and got.prediction.index == int(probs.argmax())
        close(got.prediction.probability, float(probs.max()), f"{what}: probability")


def test_interpolate_lenet_towards_a_target_image_matches_in_process(client, lenet, fashion_pngs) -> None:
    alphas = [0.5, 1.0]  # at alpha 0 with this tv_weight L-BFGS does not move off the source: nothing to compare
    r = client.interpolate(
        fashion_pngs["sneaker"], model="lenet", target=fashion_pngs["boot"], alphas=alphas, **DFI_PARAMS
    )
    same_model(r, lenet)
    source = local_input(lenet, fashion_pngs["sneaker"])
    same_input(r, source)
    sent = echoed(r, DFI_PARAMS)
    resolved = dataclasses.asdict(dfi.resolve(dfi.InterpolateFeaturesParams(**DFI_PARAMS), num_alphas=2))
    # seed and set_size only say how class-name sets are drawn: not echoed for a target image
    assert sent == {k: v for k, v in resolved.items() if k not in ("seed", "set_size")}
    assert list(r.alphas) == alphas
    module, layers = lenet.require_ready(), list(lenet.spec.default_dfi_layers)
    with torch.no_grad():
        target = local_input(lenet, fashion_pngs["boot"])
        direction = dfi.features(module, target, layers) - dfi.features(module, source, layers)
    check_interpolation(r, lenet, source, direction, sent)


def test_interpolate_lenet_with_image_sets_matches_in_process(client, lenet, fashion_pngs) -> None:
    positive, negative = (
        [fashion_pngs["boot"], fashion_pngs["boot2"]],
        [fashion_pngs["sneaker"], fashion_pngs["sneaker2"]],
    )
    params = {**DFI_PARAMS, "normalize_attribute": True}
    r = client.interpolate(
        fashion_pngs["sneaker2"], model="lenet", positive=positive, negative=negative, alphas=[0.5], **params
    )
    same_model(r, lenet)
    source = local_input(lenet, fashion_pngs["sneaker2"])
    same_input(r, source)
    sent = echoed(r, params)
    module, layers = lenet.require_ready(), list(lenet.spec.default_dfi_layers)
    direction = dfi.attribute_vector(
        module,
        torch.cat([local_input(lenet, png) for png in positive]),
        torch.cat([local_input(lenet, png) for png in negative]),
        layers,
    )
    check_interpolation(r, lenet, source, direction, sent)


# -- concurrency ------------------------------------------------------------------------------------


def test_seeded_methods_give_the_same_numbers_when_requests_overlap(client, lenet, fashion_pngs) -> None:
    # The randomized methods draw from private generators: requests running at the same time
    # (two heavy slots on the test server, the rest queued), with this process computing its
    # own in-process references meanwhile, must not disturb each other's numbers.
    sneaker, boot = fashion_pngs["sneaker"], fashion_pngs["boot"]
    smoothgrad = {"samples": 8, "noise_level": 0.25, "seed": 21, "batch_size": 3}
    jobs = [
        lambda: check_saliency(client, lenet, sneaker, "smoothgrad", smoothgrad, target=None),
        lambda: check_attack(client, lenet, boot, "pgd", {"steps": 4, "seed": 22}, None),
        lambda: check_visualize(client, lenet, "conv1", [1, 4], {"steps": 5, "seed": 23}),
        lambda: check_dream(client, lenet, sneaker, "relu1", {"octaves": 2, "iterations": 3, "seed": 24}),
        lambda: check_saliency(client, lenet, boot, "smoothgrad", {**smoothgrad, "seed": 25}, target=9),
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        for future in futures:
            future.result()  # re-raises a job's assertion
