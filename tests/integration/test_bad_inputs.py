"""A battery of bad (and odd but valid) inputs against the real server over loopback, raw stubs.

Every refusal must carry the right status code and a message that helps: it names the valid range
or choices and the request id. Odd but valid images (16-bit, alpha, palette, 1x1, extreme aspect
ratios) must succeed with the pixels one expects. After the battery the server is still healthy.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image as PILImage

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from protos.codec import to_tensor
from server import imaging
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
RNG = np.random.default_rng(0)
GRAY = (RNG.random((28, 28)) * 255).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares width x height (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + _chunk(b"IEND", b"")
    )


def pil_bytes(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    image = PILImage.fromarray(array)
    (image.convert(mode) if mode else image).save(buf, fmt)
    return buf.getvalue()


GOOD_PNG = png(GRAY)
GOOD_JPEG = cv2.imencode(".jpg", GRAY)[1].tobytes()


def corrupt_payload(data: bytes) -> bytes:
    """Keep the signature and header chunk intact (the header reads), scramble the pixel data."""
    start = data.index(b"IDAT") + 8  # past the chunk type and the zlib stream header
    out = bytearray(data)
    for i in range(start, len(out) - 12):  # up to the IEND chunk
        out[i] ^= 0x5A
    return bytes(out)


def raw(array: np.ndarray) -> pb.Image:
    return pb.Image(pixels=to_tensor(array))


def tensor_image(dtype: int, shape: list[int], data: bytes) -> pb.Image:
    return pb.Image(pixels=pb.Tensor(dtype=dtype, shape=shape, data=data))


# -- request builders -----------------------------------------------------------------------------------


def classify(image: pb.Image, model: str = "lenet", **kw) -> Callable:
    kw.setdefault("include_input", True)  # several tests read the preprocessed input back
    return lambda stub: stub.Classify(pb.ClassifyRequest(model=model, image=image, **kw), timeout=30)


def saliency(method: str = "gradient", **kw) -> Callable:
    request = pb.SaliencyRequest(model="lenet", image=pb.Image(encoded=GOOD_PNG), method=method, **kw)
    return lambda stub: stub.Saliency(request, timeout=30)


def attack(method: str = "fgsm", epsilons=(0.1,), **kw) -> Callable:
    request = pb.AttackRequest(
        model="lenet", image=pb.Image(encoded=GOOD_PNG), method=method, epsilons=list(epsilons), **kw
    )
    return lambda stub: stub.Attack(request, timeout=30)


def activations(layers, **kw) -> Callable:
    request = pb.ActivationsRequest(model="lenet", image=pb.Image(encoded=GOOD_PNG), layers=list(layers), **kw)
    return lambda stub: stub.Activations(request, timeout=30)


def visualize(layer: str = "conv1", channels=(0,), **params) -> Callable:
    request = pb.VisualizeFilterRequest(
        model="lenet", layer=layer, channels=list(channels), params=pb.VisualizeFilterParams(**params)
    )
    return lambda stub: list(stub.VisualizeFilter(request, timeout=30))


def dream(layers=(("conv2", None),), **params) -> Callable:
    weights = [
        pb.LayerWeight(layer=name, weight=w) if w is not None else pb.LayerWeight(layer=name) for name, w in layers
    ]
    request = pb.DeepDreamRequest(
        model="lenet", image=pb.Image(encoded=GOOD_PNG), layers=weights, params=pb.DeepDreamParams(**params)
    )
    return lambda stub: list(stub.DeepDream(request, timeout=30))


def interpolate(model: str = "lenet", **kw) -> Callable:
    kw.setdefault("params", pb.InterpolateFeaturesParams(iterations=2, warm_iterations=1, set_size=2))
    request = pb.InterpolateFeaturesRequest(model=model, source=pb.Image(encoded=GOOD_PNG), **kw)
    return lambda stub: list(stub.InterpolateFeatures(request, timeout=30))


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable
    code: grpc.StatusCode
    fragments: tuple[str, ...]  # each must appear in the status message


TARGET_IMAGE = pb.Image(encoded=GOOD_PNG)
TINY_IMAGE = pb.Image(encoded=png(np.array([[90]], np.uint8)))
CASES = [
    # -- images: missing, empty, corrupt, truncated, huge --------------------------------------------
    Case("no-image", classify(pb.Image()), INVALID, ("image is required", "Image.encoded", "Image.pixels")),
    Case("empty-bytes", lambda s: s.Classify(pb.ClassifyRequest(model="lenet"), timeout=30), INVALID, ("image",)),
    Case("garbage", classify(pb.Image(encoded=b"definitely not an image")), INVALID, ("cannot read", "PNG, JPEG")),
    Case("truncated-png", classify(pb.Image(encoded=GOOD_PNG[: len(GOOD_PNG) // 2])), INVALID, ("truncated",)),
    Case("truncated-jpeg", classify(pb.Image(encoded=GOOD_JPEG[: len(GOOD_JPEG) // 2])), INVALID, ("truncated",)),
    Case("png-signature-only", classify(pb.Image(encoded=GOOD_PNG[:12])), INVALID, ("cannot read",)),
    Case("corrupt-pixel-data", classify(pb.Image(encoded=corrupt_payload(GOOD_PNG))), INVALID, ("corrupt",)),
    Case("png-0x0", classify(pb.Image(encoded=png_header(0, 0))), INVALID, ("image",)),
    Case(
        "float-tiff-out-of-range",
        classify(pb.Image(encoded=cv2.imencode(".tiff", np.full((8, 8), 7.5, np.float32))[1].tobytes())),
        INVALID,
        ("[0, 1]",),
    ),
    # -- raw tensors: channels, dims, byte counts, dtypes, values -------------------------------------
    Case("raw-2-channels", classify(raw(np.zeros((28, 28, 2), np.uint8))), INVALID, ("C in 1, 3, 4", "(28, 28, 2)")),
    Case("raw-5-channels", classify(raw(np.zeros((28, 28, 5), np.uint8))), INVALID, ("C in 1, 3, 4", "(28, 28, 5)")),
    Case("raw-4d", classify(raw(np.zeros((1, 28, 28, 3), np.uint8))), INVALID, ("(H, W) or (H, W, C)",)),
    Case("raw-scalar", classify(tensor_image(pb.Tensor.UINT8, [], b"\0")), INVALID, ("(H, W) or (H, W, C)",)),
    Case(
        "raw-byte-count",
        classify(tensor_image(pb.Tensor.UINT8, [28, 28], b"\0" * 100)),
        INVALID,
        ("needs 784 bytes", "got 100"),
    ),
    Case(
        "raw-float-byte-count",
        classify(tensor_image(pb.Tensor.FLOAT32, [28, 28], b"\0" * 784)),
        INVALID,
        ("needs 3136 bytes",),
    ),
    Case(
        "raw-count-overflows-int64",
        classify(tensor_image(pb.Tensor.UINT8, [2**32, 2**32], b"")),
        INVALID,
        ("needs 18446744073709551616 bytes",),
    ),
    Case("raw-negative-dims", classify(tensor_image(pb.Tensor.UINT8, [-28, -28], b"\0" * 784)), INVALID, ("negative",)),
    Case("raw-40-dims", classify(tensor_image(pb.Tensor.UINT8, [1] * 40, b"\0")), INVALID, ("at most 32",)),
    Case("raw-empty-side", classify(tensor_image(pb.Tensor.UINT8, [0, 28], b"")), INVALID, ("empty side",)),
    Case("raw-nan", classify(raw(np.full((28, 28), np.nan, np.float32))), INVALID, ("NaN",)),
    Case("raw-float-above-1", classify(raw(np.full((28, 28), 2.0, np.float32))), INVALID, ("[0, 1]", "[2, 2]")),
    Case("raw-negative-float", classify(raw(np.full((28, 28), -0.5, np.float32))), INVALID, ("[0, 1]",)),
    Case("raw-int64", classify(raw(np.zeros((28, 28), np.int64))), INVALID, ("int64", "uint8, uint16 or float32")),
    Case("raw-dtype-unset", classify(tensor_image(0, [28, 28], b"\0" * 784)), INVALID, ("dtype",)),
    Case("raw-dtype-unknown", classify(tensor_image(99, [28, 28], b"\0" * 784)), INVALID, ("dtype code 99",)),
    # -- names -------------------------------------------------------------------------------------
    Case("unknown-model", classify(TARGET_IMAGE, model="resnet50"), NOT_FOUND, ("resnet50", "lenet", "vgg16")),
    Case("empty-model", classify(TARGET_IMAGE, model=""), INVALID, ("model is required", "served models", "lenet")),
    Case(
        "describe-unknown",
        lambda s: s.DescribeModel(pb.DescribeModelRequest(model="lenet5"), timeout=30),
        NOT_FOUND,
        ("lenet5", "alexnet"),
    ),
    Case("unknown-saliency-method", saliency("lime"), INVALID, ("'lime'", "smoothgrad", "grad_cam")),
    Case("empty-saliency-method", saliency(""), INVALID, ("valid methods", "gradient")),
    Case("unknown-attack-method", attack("cw"), INVALID, ("'cw'", "fgsm, bim, pgd")),
    Case("unknown-layer", saliency("grad_cam", params=pb.SaliencyParams(layer="conv9")), INVALID, ("conv9", "conv2")),
    Case("unknown-class-label", saliency(target=pb.Target(label="zebra")), INVALID, ("zebra", "Sneaker", "Bag")),
    Case("class-index-too-big", saliency(target=pb.Target(index=10)), INVALID, ("10", "0..9")),
    Case("class-index-negative", attack(target=pb.Target(index=-1)), INVALID, ("0..9",)),
    Case("unknown-colormap", saliency(params=pb.SaliencyParams(colormap="rainbowz")), INVALID, ("rainbowz", "jet")),
    Case(
        "kernels-of-a-linear",
        lambda s: s.Kernels(pb.KernelsRequest(model="lenet", layer="fc1"), timeout=30),
        INVALID,
        ("Conv2d", "conv1, conv2"),
    ),
    Case(
        "kernels-no-layer",
        lambda s: s.Kernels(pb.KernelsRequest(model="lenet"), timeout=30),
        INVALID,
        ("layer is required", "DescribeModel"),
    ),
    Case("unknown-objective", visualize(objective="max", steps=2), INVALID, ("channel", "neuron")),
    Case("unknown-parameterization", visualize(parameterization="cppn", steps=2), INVALID, ("fourier", "pixel")),
    Case(
        "class-sets-on-imagenet-model",
        interpolate(model="alexnet", sets=pb.AttributeSets(positive_class="tabby", negative_class="tiger")),
        INVALID,
        ("lenet", "pass images"),
    ),
    Case(
        "interpolate-unknown-class",
        interpolate(sets=pb.AttributeSets(positive_class="zebra", negative_class="Bag")),
        INVALID,
        ("zebra", "Ankle boot"),
    ),
    # -- missing fields ----------------------------------------------------------------------------
    Case(
        "activations-no-layers",
        lambda s: s.Activations(pb.ActivationsRequest(model="lenet", image=TARGET_IMAGE), timeout=30),
        INVALID,
        ("at least one layer",),
    ),
    Case("attack-no-epsilons", attack(epsilons=()), INVALID, ("at least one epsilon", "(0, 1]")),
    Case("visualize-no-layer", visualize(layer=""), INVALID, ("layer is required",)),
    Case("visualize-no-channels", visualize(channels=()), INVALID, ("at least one channel",)),
    Case("dream-no-layers", dream(layers=()), INVALID, ("at least one layer",)),
    Case("interpolate-no-direction", interpolate(), INVALID, ("attribute sets", "target image")),
    Case("interpolate-empty-target", interpolate(target=pb.Image()), INVALID, ("target is required",)),
    # -- NaN, negative, huge parameters ------------------------------------------------------------
    Case("top-k-zero", classify(TARGET_IMAGE, top_k=0), INVALID, ("top_k must be at least 1", "got 0")),
    Case("top-k-negative", classify(TARGET_IMAGE, top_k=-1), INVALID, ("top_k must be at least 1", "got -1")),
    Case(
        "activations-top-k-negative",
        lambda s: s.Activations(
            pb.ActivationsRequest(model="lenet", image=TARGET_IMAGE, layers=["conv1"], top_k=-3), timeout=30
        ),
        INVALID,
        (">= 0",),
    ),
    Case("samples-zero", saliency("smoothgrad", params=pb.SaliencyParams(samples=0)), INVALID, ("samples", "1..256")),
    Case("samples-huge", saliency("smoothgrad", params=pb.SaliencyParams(samples=10**9)), INVALID, ("1..256",)),
    Case(
        "noise-nan",
        saliency("smoothgrad", params=pb.SaliencyParams(noise_level=float("nan"))),
        INVALID,
        ("noise_level", "finite"),
    ),
    Case("noise-negative", saliency("smoothgrad", params=pb.SaliencyParams(noise_level=-1)), INVALID, ("[0, 1.0]",)),
    Case(
        "ig-steps-negative",
        saliency("integrated_gradients", params=pb.SaliencyParams(steps=-5)),
        INVALID,
        ("steps", "1..256"),
    ),
    Case("batch-size-zero", saliency("smoothgrad", params=pb.SaliencyParams(batch_size=0)), INVALID, ("batch_size",)),
    Case(
        "clip-percentile-inf",
        saliency(params=pb.SaliencyParams(clip_percentile=float("inf"))),
        INVALID,
        ("clip_percentile",),
    ),
    Case("clip-percentile-zero", saliency(params=pb.SaliencyParams(clip_percentile=0)), INVALID, ("(0, 100]",)),
    Case("epsilon-nan", attack(epsilons=(float("nan"),)), INVALID, ("epsilon", "(0, 1]")),
    Case("epsilon-negative", attack(epsilons=(-0.1,)), INVALID, ("(0, 1]",)),
    Case("epsilon-huge", attack(epsilons=(5.0,)), INVALID, ("(0, 1]",)),
    Case("epsilons-too-many", attack(epsilons=(0.1,) * 17), INVALID, ("1..16", "17")),
    Case("attack-steps-huge", attack("pgd", params=pb.AttackParams(steps=100_000)), INVALID, ("1..2048",)),
    Case("attack-steps-zero", attack("bim", params=pb.AttackParams(steps=0)), INVALID, ("1..2048",)),
    Case(
        "attack-step-size-nan",
        attack("pgd", params=pb.AttackParams(step_size=float("nan"))),
        INVALID,
        ("step_size", "finite"),
    ),
    Case("fgsm-random-start", attack(params=pb.AttackParams(random_start=True)), INVALID, ("pgd",)),
    Case("channel-out-of-range", visualize(channels=(6,)), INVALID, ("channel 6", "0..5")),
    Case("channel-negative", visualize(channels=(-1,)), INVALID, ("0..5",)),
    Case("channels-too-many", visualize("conv2", channels=list(range(16)) * 5), INVALID, ("1..64", "80")),
    Case("vis-steps-zero", visualize(steps=0), INVALID, ("steps",)),
    Case("vis-steps-over-cap", visualize(steps=3000), INVALID, ("steps", "1..2048")),
    Case("image-size-tiny", visualize(image_size=2), INVALID, ("image_size", "16")),
    Case("image-size-huge", visualize(image_size=100_000), INVALID, ("image_size", "512")),
    Case("learning-rate-nan", visualize(learning_rate=float("nan")), INVALID, ("learning_rate", "finite")),
    Case("learning-rate-negative", visualize(learning_rate=-1.0), INVALID, ("learning_rate",)),
    Case("preview-every-negative", visualize(steps=4, preview_every=-1), INVALID, ("preview_every",)),
    Case("seed-negative", visualize(steps=2, seed=-1), INVALID, ("seed",)),
    Case("octaves-zero", dream(octaves=0), INVALID, ("octaves",)),
    Case("octaves-over-cap", dream(octaves=9, octave_scale=1.01), INVALID, ("octaves", "1..8")),
    Case("octaves-too-many-for-28px", dream(octaves=6), INVALID, ("at most 4 octaves fit",)),
    Case("iterations-huge", dream(iterations=10**6), INVALID, ("iterations",)),
    Case("octave-scale-nan", dream(octave_scale=float("nan")), INVALID, ("octave_scale", "finite")),
    Case("octave-scale-small", dream(octave_scale=0.5), INVALID, ("octave_scale", "1.01")),
    Case("dream-step-negative", dream(step_size=-1.0), INVALID, ("step_size",)),
    Case("jitter-negative", dream(jitter=-1), INVALID, ("jitter",)),
    Case("layer-weight-nan", dream(layers=(("conv2", float("nan")),)), INVALID, ("weight", "finite")),
    Case("layer-weights-zero", dream(layers=(("conv2", 0.0),)), INVALID, ("non-zero",)),
    Case("alphas-nan", interpolate(target=TARGET_IMAGE, alphas=[float("nan")]), INVALID, ("alphas", "finite")),
    Case("alphas-huge", interpolate(target=TARGET_IMAGE, alphas=[1e9]), INVALID, ("alphas", "100")),
    Case("alphas-too-many", interpolate(target=TARGET_IMAGE, alphas=[0.5] * 17), INVALID, ("1..16",)),
    Case(
        "tv-weight-nan",
        interpolate(target=TARGET_IMAGE, params=pb.InterpolateFeaturesParams(iterations=2, tv_weight=float("nan"))),
        INVALID,
        ("tv_weight", "finite"),
    ),
    Case(
        "lbfgs-iterations-zero",
        interpolate(target=TARGET_IMAGE, params=pb.InterpolateFeaturesParams(iterations=0)),
        INVALID,
        ("iterations",),
    ),
    Case(
        "set-size-huge",
        interpolate(
            sets=pb.AttributeSets(positive_class="Bag", negative_class="Sneaker"),
            params=pb.InterpolateFeaturesParams(set_size=10**6),
        ),
        INVALID,
        ("set_size",),
    ),
    Case(
        "both-images-and-class",
        interpolate(sets=pb.AttributeSets(positive=[TARGET_IMAGE], positive_class="Bag", negative_class="Sneaker")),
        INVALID,
        ("not both",),
    ),
]


@contextmanager
def counting_forwards(srv) -> Iterator[list[int]]:
    """``[n]``: model forwards (of any served model) while inside: a hook on each model's first layer."""
    count = [0]

    def hook(*_args) -> None:
        count[0] += 1

    handles = [
        model.require_ready().get_submodule(model.layers[0].name).register_forward_pre_hook(hook)
        for model in srv.servicer.hub.all()
        if model.status == "READY"
    ]
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()


# Cases refused only after a forward pass; none now: colormap, clip_percentile, epsilons, fgsm's
# random_start and the alphas' range are judged with the request, before any model work.
REFUSED_AFTER_A_FORWARD: set[str] = set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_a_helpful_message(server, stub, case: Case) -> None:
    with counting_forwards(server[0]) as forwards, pytest.raises(grpc.RpcError) as info:
        case.call(stub)
    error = info.value
    assert error.code() == case.code, error.details()
    details = error.details()
    for fragment in case.fragments:
        assert fragment in details, f"{fragment!r} not in {details!r}"
    assert "request id" in details and "internal error" not in details
    if case.id in REFUSED_AFTER_A_FORWARD:
        assert forwards[0] <= 2  # one pass (two images for alphas), never an optimization loop
    else:
        assert forwards[0] == 0  # refused up front, before any model work


def test_battery_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_50000_square_png_header_is_refused_before_decoding(stub, monkeypatch) -> None:
    data = png_header(50_000, 50_000)
    assert len(data) < 200
    decoded: list[int] = []
    real = imaging.cv2.imdecode
    monkeypatch.setattr(imaging.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(grpc.RpcError) as info:
        classify(pb.Image(encoded=data))(stub)
    assert info.value.code() == INVALID
    assert "50000x50000" in info.value.details() and "40000000 pixels" in info.value.details()
    assert decoded == []  # refused from the header: the 2.5 Gpx were never decoded (nor allocated)
    classify(pb.Image(encoded=GOOD_PNG))(stub)
    assert decoded == [1]  # the probe does see a decode


# -- odd but valid images succeed, with the expected pixels ---------------------------------------------


def _input(reply) -> np.ndarray:
    t = reply.input.tensor
    return np.frombuffer(t.data, np.float32).reshape(tuple(t.shape))


def test_16_bit_png_matches_its_8_bit_twin(stub) -> None:
    deep = GRAY.astype(np.uint16) * 257  # exactly GRAY / 255 in [0, 1]
    a = classify(pb.Image(encoded=png(deep)))(stub)
    b = classify(pb.Image(encoded=GOOD_PNG))(stub)
    np.testing.assert_allclose(_input(a), _input(b), atol=1e-6)
    assert [p.index for p in a.predictions] == [p.index for p in b.predictions]


def test_16_bit_raw_tensor_is_scaled_by_65535(stub) -> None:
    reply = classify(raw(np.full((28, 28), 65535 // 5, np.uint16)))(stub)
    np.testing.assert_allclose(_input(reply), (65535 // 5) / 65535, atol=1e-6)


def test_alpha_is_composited_on_black(stub) -> None:
    rgba = np.dstack([np.full((28, 28, 3), 200, np.uint8), np.zeros((28, 28), np.uint8)])  # fully transparent
    reply = classify(pb.Image(encoded=png(rgba)))(stub)
    assert np.abs(_input(reply)).max() == 0.0
    half = np.dstack([np.full((28, 28, 3), 200, np.uint8), np.full((28, 28), 255, np.uint8)])
    np.testing.assert_allclose(_input(classify(pb.Image(encoded=png(half)))(stub)), 200 / 255, atol=1e-5)


def test_gray_alpha_png(stub) -> None:
    la = np.dstack([GRAY, np.full_like(GRAY, 255)])
    reply = classify(pb.Image(encoded=pil_bytes(la, "PNG", "LA")))(stub)
    np.testing.assert_allclose(_input(reply)[0], GRAY / 255, atol=1e-5)


def test_1x1_image_fills_the_input(stub) -> None:
    reply = classify(pb.Image(encoded=png(np.array([[51]], np.uint8))))(stub)
    assert _input(reply).shape == (1, 28, 28)
    np.testing.assert_allclose(_input(reply), 51 / 255, atol=1e-6)
    rgb = classify(raw(np.full((1, 1, 3), 0.25, np.float32)), model="alexnet", top_k=1)(stub)
    assert _input(rgb).shape == (3, 224, 224)
    np.testing.assert_allclose(_input(rgb), 0.25, atol=1e-6)


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "P"), ("GIF", None), ("BMP", None), ("WEBP", None), ("TIFF", None), ("PNG", "1")]
)
def test_other_formats_and_modes(stub, fmt: str, mode: str | None) -> None:
    reply = classify(pb.Image(encoded=pil_bytes(np.dstack([GRAY] * 3), fmt, mode)))(stub)
    assert len(reply.predictions) == 5


def test_extreme_aspect_ratio_is_cheap(stub, monkeypatch) -> None:
    """1 x 40 000 pixels: a 120-byte PNG that once made the server resize to 256 x 10 240 000 (31 GB)."""
    data = png(np.full((1, 40_000), 128, np.uint8))
    assert len(data) < 500
    resized: list[int] = []
    real = imaging._resize
    monkeypatch.setattr(imaging, "_resize", lambda a, w, h: resized.append(w * h) or real(a, w, h))
    reply = classify(pb.Image(encoded=data), model="alexnet", top_k=1)(stub)
    assert resized and max(resized) <= 256 * 1024  # trimmed first: never resized to 256 x 10 240 000
    np.testing.assert_allclose(_input(reply), 128 / 255, atol=1e-5)
    tall = classify(raw(np.full((3000, 1), 0.5, np.float32)), model="alexnet", top_k=1)(stub)
    np.testing.assert_allclose(_input(tall), 0.5, atol=1e-5)


def test_raw_float64_and_single_channel_tensors(stub) -> None:
    a = classify(raw(GRAY.astype(np.float64) / 255))(stub)
    b = classify(raw(GRAY[:, :, None]))(stub)
    np.testing.assert_allclose(_input(a), _input(b), atol=1e-6)


# -- oversize messages on a server with a small cap -----------------------------------------------------

SMALL_CAP = 16 * 1024
# every limit away from its default, to see each one reported and enforced as configured
SMALL_LIMITS = Limits(
    max_message_bytes=SMALL_CAP,
    max_image_pixels=1_000_000,
    max_image_side=256,
    max_steps=500,
    max_octaves=3,
    max_alphas=5,
    max_set_size=20,
    max_epsilons=4,
    max_samples=32,
    max_channels=8,
    max_layers=3,
    max_restarts=2,
    max_batch_pixels=8 * 2 * 28 * 28,
    max_pixel_steps=8 * 2 * 28 * 28 * 100,
    stream_stall_s=30.0,
    max_concurrent_heavy=1,
    max_queued_heavy=3,
    default_deadline_s=45.0,
    max_concurrent_rpcs=40,
    keepalive_time_s=30.0,
    keepalive_timeout_s=10.0,
    max_connection_idle_s=600.0,
    max_connection_age_s=1800.0,
    max_connection_age_grace_s=120.0,
    max_dataset_images=50,
    max_index_k=32,
    max_images_per_call=4,
    progress_events_per_s=5.0,
    decode_budget_bytes=64_000_000,
    batch_max_size=3,
    batch_delay_ms=1.0,
    max_embedding_points=2000,
    max_perplexity=40.0,
    max_place_images=3,
    max_job_bytes=4 * 10**9,
    max_job_macs=10**13,
)


@pytest.fixture(scope="module")
def small_cap_stub() -> Iterator:
    srv, port = create_server(test_config(models=("lenet",), limits=SMALL_LIMITS))
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield interp_pb2_grpc.InterpStub(channel)
    channel.close()
    srv.stop(None)


def test_oversize_request_is_refused_naming_the_cap(small_cap_stub) -> None:
    noise = png((RNG.random((120, 120, 3)) * 255).astype(np.uint8))
    assert len(noise) > SMALL_CAP
    with pytest.raises(grpc.RpcError) as info:
        classify(pb.Image(encoded=noise))(small_cap_stub)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details() and str(SMALL_CAP) in info.value.details()


def test_oversize_response_is_refused_not_truncated(small_cap_stub) -> None:
    # Refused before any computing, from the layer catalogue's shapes, naming the budget.
    request = pb.ActivationsRequest(model="lenet", image=TARGET_IMAGE, layers=["conv1", "bn1", "relu1"])
    with pytest.raises(grpc.RpcError) as info:
        small_cap_stub.Activations(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_message_bytes=16,384" in info.value.details()


def test_small_cap_server_reports_its_cap_and_still_serves(small_cap_stub) -> None:
    assert small_cap_stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).limits.max_message_bytes == SMALL_CAP
    assert classify(TARGET_IMAGE)(small_cap_stub).predictions


def test_every_limit_is_reported_as_configured(small_cap_stub) -> None:
    reported = small_cap_stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).limits
    assert {f.name for f in pb.Limits.DESCRIPTOR.fields} == {f.name for f in dataclasses.fields(Limits)}
    for field in dataclasses.fields(Limits):
        assert getattr(reported, field.name) == getattr(SMALL_LIMITS, field.name), field.name
    assert SMALL_LIMITS != Limits() and all(
        getattr(SMALL_LIMITS, f.name) != getattr(Limits(), f.name) for f in dataclasses.fields(Limits)
    )


CAPPED = [
    ("pixels", classify(pb.Image(encoded=png_header(1001, 1000))), ("1001x1000", "1000000 pixels")),
    ("steps", visualize(steps=501), ("steps", "1..500")),
    ("image-side", visualize(image_size=300, steps=2), ("image_size", "256")),
    ("octaves", dream(octaves=4, octave_scale=1.01), ("octaves", "1..3")),
    ("alphas", interpolate(target=TARGET_IMAGE, alphas=[0.5] * 6), ("alphas", "1..5")),
    ("set-size", interpolate(sets=pb.AttributeSets(positive=[TINY_IMAGE] * 21, negative=[TINY_IMAGE])),
     ("set size", "1..20")),
    ("epsilons", attack(epsilons=(0.1,) * 5), ("epsilons", "1..4")),
    ("samples", saliency("smoothgrad", params=pb.SaliencyParams(samples=33)), ("samples", "1..32")),
    ("channels", visualize("conv2", channels=range(9)), ("channels", "1..8")),
    ("layers", activations(["conv1", "relu1", "conv2", "relu2"]), ("layers", "1..3", "max_layers")),
    ("images-per-call", lambda stub: stub.Classify(pb.ClassifyRequest(model="lenet", images=[TARGET_IMAGE] * 5),
     timeout=30), ("number of images", "1..4", "max_images_per_call")),
    ("restarts", visualize(restarts=3, steps=2), ("restarts", "1..2", "max_restarts")),
    ("dataset-images", lambda stub: list(stub.AttackDataset(pb.AttackDatasetRequest(
        model="lenet", dataset="fashion-mnist-test", methods=["fgsm"], epsilons=[0.1], limit=51), timeout=30)),
     ("limit", "1..50", "max_dataset_images")),
    ("dataset-epsilons", lambda stub: list(stub.AttackDataset(pb.AttackDatasetRequest(
        model="lenet", dataset="fashion-mnist-test", methods=["fgsm"], epsilons=[0.1] * 5, limit=2), timeout=30)),
     ("epsilons", "1..4")),
    ("dataset-default-limit", lambda stub: list(stub.AttackDataset(pb.AttackDatasetRequest(
        model="lenet", dataset="fashion-mnist-test", methods=["fgsm"], epsilons=[0.1]), timeout=30)),
     ("default limit (1000)", "max_dataset_images=50")),
    ("embedding-points", lambda stub: list(stub.Embedding(pb.EmbeddingRequest(
        model="lenet", dataset="fashion-mnist-test", layer="relu4", limit=2001), timeout=30)),
     ("limit", "1..2000", "max_embedding_points")),
    ("embedding-default-points", lambda stub: list(stub.Embedding(pb.EmbeddingRequest(
        model="lenet", dataset="fashion-mnist-test", layer="relu4"), timeout=30)),
     ("10,000 images", "max_embedding_points=2,000", "set limit")),
    ("perplexity", lambda stub: list(stub.Embedding(pb.EmbeddingRequest(
        model="lenet", dataset="fashion-mnist-test", layer="relu4", limit=1000,
        params=pb.EmbeddingParams(perplexity=41)), timeout=30)),
     ("params.perplexity", "max_perplexity")),
    ("place-images", lambda stub: stub.PlaceImages(pb.PlaceImagesRequest(
        model="lenet", dataset="fashion-mnist-test", layer="relu4", limit=1000, images=[TINY_IMAGE] * 4), timeout=30),
     ("images", "1..3", "max_place_images")),
]  # fmt: skip


@pytest.mark.parametrize(("call", "fragments"), [c[1:] for c in CAPPED], ids=[c[0] for c in CAPPED])
def test_configured_caps_are_enforced(small_cap_stub, call, fragments) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(small_cap_stub)
    assert info.value.code() == INVALID, info.value.details()
    for fragment in fragments:
        assert fragment in info.value.details()


BUDGETS = [
    # 8 channels x 2 restarts x 64^2 px = 65,536 batch pixels > 12,544
    ("batch-pixels", visualize("conv2", channels=range(8), restarts=2, image_size=64, steps=2), "max_batch_pixels"),
    # 8 x 2 x 28^2 = 12,544 batch pixels (at the budget) x 101 steps > 1,254,400
    ("pixel-steps", visualize("conv2", channels=range(8), restarts=2, steps=101), "max_pixel_steps"),
    # 20 copies of a 28^2 input per forward = 15,680 batch pixels > 12,544
    ("saliency-batch", saliency("smoothgrad", params=pb.SaliencyParams(samples=30, batch_size=20)), "max_batch_pixels"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "budget"), [c[1:] for c in BUDGETS], ids=[c[0] for c in BUDGETS])
def test_combined_budgets_are_refused_before_any_work(small_cap_stub, call, budget) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(small_cap_stub)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert budget in info.value.details()


# -- request bytes that are not the method's message ------------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "shape"), [("Classify", "unary"), ("VisualizeFilter", "server-streamed"), ("Watch", "bidirectional")]
)
def test_malformed_request_bytes_are_an_invalid_argument_with_a_request_id(server, channel, caplog, rpc, shape) -> None:
    """grpc's own deserializer would answer INTERNAL ("Exception deserializing request!") with no
    request id and log a traceback per call; the service answers INVALID_ARGUMENT, one log line."""
    garbage = b"\xff" * 50  # field 31, wire type 7: invalid from the first byte
    path = f"/interp.v1.Interp/{rpc}"
    srv = server[0]
    before = srv.metrics.registry.get_sample_value("interp_requests_total", {"method": rpc, "code": "INVALID_ARGUMENT"})
    with caplog.at_level("INFO"), pytest.raises(grpc.RpcError) as info:
        if shape == "unary":
            channel.unary_unary(path)(garbage, timeout=60)
        elif shape == "server-streamed":
            list(channel.unary_stream(path)(garbage, timeout=60))
        else:
            list(channel.stream_stream(path)(iter([garbage]), timeout=60))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert f"is not a valid interp.v1.{rpc}Request message" in details and "request id" in details
    request_id = details.rsplit("request id ", 1)[1].rstrip(")")
    lines = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("grpc"))
    after = srv.metrics.registry.get_sample_value("interp_requests_total", {"method": rpc, "code": "INVALID_ARGUMENT"})
    assert (after or 0) == (before or 0) + 1


# -- after all of it ---------------------------------------------------------------------------------------


def test_server_is_still_healthy_after_the_battery(channel, stub) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="interp.v1.Interp"), timeout=5).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    reply = classify(TARGET_IMAGE)(stub)
    probabilities = [p.probability for p in reply.predictions]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    # a heavy RPC still gets a capacity slot: nothing leaked from the refused ones
    assert saliency("smoothgrad", params=pb.SaliencyParams(samples=4))(stub).map.shape


# -- client-supplied names are echoed truncated -------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda name: classify(pb.Image(encoded=GOOD_PNG), model=name), NOT_FOUND),
        (lambda name: visualize(layer=name), INVALID),
        (lambda name: dream(layers=((name, None),)), INVALID),
    ],
    ids=["model", "layer", "dream-layer"],
)
def test_a_megabyte_name_is_echoed_in_100_characters(stub, caplog, call, code) -> None:
    name = "N" * 1_000_000 + "\nforged log line"
    with caplog.at_level("INFO", logger="interp.server"), pytest.raises(grpc.RpcError) as info:
        call(name)(stub)
    details = info.value.details()
    assert info.value.code() == code and "'NNN" in details and "..." in details, details[:300]
    assert len(details) < 2000 and "\n" not in details  # the newline arrives escaped
    logged = [r.getMessage() for r in caplog.records if "request" in r.getMessage()]
    assert logged and all(len(line) < 2000 and "\n" not in line for line in logged)
