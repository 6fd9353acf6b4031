"""The SDK against the real in-process server (vgg16/alexnet with random weights, lenet).

Checks go beyond "it answered": results are compared with independent computations on the
returned tensors (softmax of the logits, channel statistics of the activations, the epsilon
ball of the attack) and with the server's own catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from client import InterpClient, ProgressEvent, errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def shirt() -> np.ndarray:
    """A deterministic 28x28 uint8 test pattern (a light blob on a dark background)."""
    yy, xx = np.mgrid[:28, :28]
    return (255 * np.exp(-((yy - 14) ** 2 + (xx - 14) ** 2) / 60.0)).astype(np.uint8)


@pytest.fixture(scope="module")
def shirt_png(shirt) -> bytes:
    ok, buf = cv2.imencode(".png", shirt)
    assert ok
    return buf.tobytes()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - logits.max())
    return z / z.sum()


# -- models and server ------------------------------------------------------------------------------


def test_list_models(client):
    models = {m.name: m for m in client.list_models()}
    assert {"vgg16", "alexnet", "lenet"} <= set(models)
    for name in ("vgg16", "alexnet"):
        m = models[name]
        assert m.ready and m.status == "READY"
        assert m.pretrained is False and m.weights.source == "random"
        assert len(m.weights.sha256) == 64
        assert m.class_sets is False  # no ImageNet training set on the server: DFI takes images
    assert models["lenet"].class_sets is True  # trained in this repo: DFI takes class names
    assert models["vgg16"].input_shape == (3, 224, 224) and models["vgg16"].num_classes == 1000
    assert models["lenet"].input_shape == (1, 28, 28) and models["lenet"].num_classes == 10


def test_describe_vgg16(client):
    d = client.describe_model("vgg16")
    conv3_1 = d.layer("conv3_1")
    assert conv3_1.name == "features.10" and conv3_1 is d.layer("features.10")
    assert conv3_1.output_shape == (256, 56, 56)
    assert conv3_1.receptive_field is not None and conv3_1.receptive_field.jump == 4
    assert conv3_1.parameters == 256 * 128 * 9 + 256
    assert len(d.labels) == 1000
    assert d.preprocessing.channels == 3


def test_server_info(client):
    info = client.server_info()
    assert info.api_version == "interp.v1"
    assert {"vgg16", "alexnet", "lenet"} <= set(info.models)
    assert info.limits["max_steps"] > 0 and info.limits["max_message_bytes"] > 0
    assert "ListModels" in info.implemented_rpcs
    assert info.auth_required is False and info.tls is False


# -- classify ---------------------------------------------------------------------------------------


def test_classify_lenet_probabilities_are_the_softmax_of_the_logits(client, shirt_png):
    r = client.classify(shirt_png, model="lenet", top_k=3, include_input=True)
    assert len(r.predictions) == 3
    assert r.logits.shape == (10,)
    probs = _softmax(r.logits)
    order = np.argsort(-probs)[:3]
    assert [p.index for p in r.predictions] == order.tolist()
    np.testing.assert_allclose([p.probability for p in r.predictions], probs[order], rtol=1e-4)
    assert r.input.shape == (28, 28, 1) and r.input_png.startswith(PNG_SIGNATURE)
    assert r.model == "lenet" and r.request_id and len(r.weights_sha256) == 64


def test_raw_arrays_and_encoded_bytes_classify_the_same(client, shirt, shirt_png):
    from_png = client.classify(shirt_png, model="lenet", include_input=True)
    from_uint8 = client.classify(shirt, model="lenet")
    from_float = client.classify(shirt.astype(np.float32) / 255.0, model="lenet")
    np.testing.assert_allclose(from_uint8.logits, from_png.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_float.logits, from_png.logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(from_png.input[..., 0], shirt / 255.0, atol=1e-6)


def test_classify_vgg16_on_a_photo(client, cat_png, tmp_path: Path):
    path = tmp_path / "cat.png"
    path.write_bytes(cat_png)
    r = client.classify(path, model="vgg16", include_input=True)
    assert len(r.predictions) == 5  # the server's default top_k
    assert r.input.shape == (224, 224, 3)
    assert 0.0 <= float(r.input.min()) and float(r.input.max()) <= 1.0
    assert r.pretrained is False
    assert r.save(tmp_path / "out")[0].read_bytes().startswith(PNG_SIGNATURE)


# -- errors -----------------------------------------------------------------------------------------


def test_unknown_model_is_not_found_naming_the_served_ones(client, shirt_png):
    with pytest.raises(errors.NotFound) as info:
        client.classify(shirt_png, model="resnet50")
    assert "lenet" in info.value.message


def test_bad_inputs_are_invalid_argument(client, shirt_png):
    with pytest.raises(errors.InvalidArgument):
        client.classify(b"definitely not an image", model="lenet")
    with pytest.raises(errors.InvalidArgument) as info:
        client.activations(shirt_png, model="lenet", layers=["conv9"])
    assert "conv1" in info.value.message  # the valid choices are named
    with pytest.raises(errors.NotFound):
        client.describe_model("nope")


def test_deadline_is_enforced(target, cat_png):
    with InterpClient(target) as c, pytest.raises(errors.DeadlineExceeded):
        c.classify(cat_png, model="vgg16", timeout=0.01)  # a VGG16 forward takes far longer


# -- single-pass methods ----------------------------------------------------------------------------


def test_activations_match_the_catalogue_and_their_own_statistics(client, cat_png):
    d = client.describe_model("alexnet")
    r = client.activations(cat_png, model="alexnet", layers=["conv1", "relu5"], top_k=4)
    assert [la.requested for la in r.layers] == ["conv1", "relu5"]
    for la in r.layers:
        assert la.layer == d.layer(la.requested).name
        assert la.activation.shape == d.layer(la.requested).output_shape
        np.testing.assert_allclose(la.channel_mean, la.activation.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(la.channel_max, la.activation.max(axis=(1, 2)), rtol=1e-5)
        assert list(la.top_channels) == np.argsort(-la.channel_mean, kind="stable")[:4].tolist()
        assert la.grid_png.startswith(PNG_SIGNATURE)
    light = client.activations(cat_png, model="alexnet", layers="conv1", include_tensors=False)
    assert light["conv1"].activation is None
    np.testing.assert_allclose(light["conv1"].channel_mean, r["conv1"].channel_mean, rtol=1e-5)


def test_kernels(client):
    r = client.kernels("alexnet", "conv1")
    assert r.weights.shape == (64, 3, 11, 11) and r.weights.dtype == np.float32
    assert r.bias is not None and r.bias.shape == (64,)
    assert r.rgb is True and r.grid_png.startswith(PNG_SIGNATURE)
    deeper = client.kernels("lenet", "conv2")
    assert deeper.rgb is False and deeper.weights.ndim == 4


def test_saliency_gradient_on_lenet(client, shirt_png):
    r = client.saliency(shirt_png, model="lenet", method="gradient", target=3)
    assert r.target.index == 3 and r.method == "gradient"
    assert r.map.shape == (28, 28) and r.map.dtype == np.float32
    assert float(r.map.min()) >= 0.0  # |gradient|
    assert r.heatmap_png.startswith(PNG_SIGNATURE) and r.overlay_png.startswith(PNG_SIGNATURE)
    assert isinstance(r.params, dict)


def test_saliency_smoothgrad_echoes_its_parameters(client, shirt_png):
    r = client.saliency(shirt_png, model="lenet", method="smoothgrad", samples=4, seed=7)
    assert r.params["samples"] == 4 and r.params["seed"] == 7
    assert "noise_level" in r.params  # the default actually used is echoed


def test_attack_fgsm_sweep_stays_in_the_epsilon_ball(client, shirt_png):
    r = client.attack(shirt_png, model="lenet", method="fgsm", epsilon=[0.05, 0.2])
    assert [o.epsilon for o in r.outcomes] == pytest.approx([0.05, 0.2])
    assert r.original is not None and not r.targeted
    for o in r.outcomes:
        assert o.adversarial.shape == r.input.shape
        assert 0.0 <= float(o.adversarial.min()) and float(o.adversarial.max()) <= 1.0
        linf = float(np.abs(o.adversarial - r.input).max())
        assert linf == pytest.approx(o.linf, abs=1e-6)
        assert linf <= o.epsilon + 0.5 / 255 + 1e-6  # 8-bit quantization inside the ball
        assert o.adversarial_png.startswith(PNG_SIGNATURE)


# -- streaming methods ------------------------------------------------------------------------------


def test_visualize_filter_blocking_with_progress(client, tmp_path: Path):
    events: list[ProgressEvent] = []
    r = client.visualize_filter("lenet", "conv2", [0, 3], progress=events.append, steps=8, preview_every=4, seed=1)
    assert events and all(isinstance(e, ProgressEvent) for e in events)
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] <= events[-1].total_steps
    assert any(e.preview_png for e in events)
    assert r.channels == (0, 3) and r.images.shape[0] == 2
    assert 0.0 <= float(r.images.min()) and float(r.images.max()) <= 1.0
    assert len(r.pngs) == 2 and len(r.activations) == 2
    assert r.params["steps"] == 8 and r.params["seed"] == 1
    names = [p.name for p in r.save(tmp_path / "vis.png")]
    assert names[0] == "vis.png"


def test_visualize_filter_is_reproducible_with_a_seed(client):
    a = client.visualize_filter("lenet", "conv2", 1, steps=4, seed=5)
    b = client.visualize_filter("lenet", "conv2", 1, steps=4, seed=5)
    np.testing.assert_array_equal(a.images, b.images)


def test_iterator_form_and_early_close(client):
    items = list(client.iter_visualize_filter("lenet", "conv1", [0], steps=4))
    assert all(isinstance(i, ProgressEvent) for i in items[:-1])
    assert not isinstance(items[-1], ProgressEvent) and items[-1].layer

    stream = client.iter_visualize_filter("lenet", "conv2", [0], steps=2000)
    first = next(stream)
    assert isinstance(first, ProgressEvent) and first.total_steps == 2000
    stream.close()
    # the server is free again: a quick call answers promptly
    assert client.list_models()


def test_dream(client, shirt_png):
    events: list[ProgressEvent] = []
    r = client.dream(shirt_png, model="lenet", layers={"conv2": 1.0}, progress=events.append, octaves=2, iterations=3)
    assert events
    assert r.image.shape == (28, 28, 1)
    assert r.png.startswith(PNG_SIGNATURE)
    assert [g.layer for g in r.gains] and r.params["octaves"] == 2


def test_interpolate_with_class_names(client, shirt_png):
    r = client.interpolate(
        shirt_png,
        model="lenet",
        positive="ankle boot",
        negative="sneaker",
        alphas=[0.0, 1.0],
        iterations=5,
        warm_iterations=3,
        set_size=4,
    )
    assert [a.alpha for a in r.results] == [0.0, 1.0]
    assert all(a.image.shape == (28, 28, 1) for a in r.results)
    assert r.params["set_size"] == 4


# -- TLS and tokens against a real server of their own ------------------------------------------


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A lenet-only server with TLS (test-made certificate) and token auth."""
    from server.app import create_server
    from tests.conftest import self_signed_certificate
    from tests.support.servers import test_config

    key, cert = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    srv, port = create_server(
        test_config(models=("lenet",), tls_cert=cert, tls_key=key, auth_tokens=("s3cret-token-0123",))
    )
    srv.start()
    yield f"localhost:{port}", cert
    srv.stop(grace=None)


def test_token_and_tls(secure_server, shirt_png):
    address, cert = secure_server
    with InterpClient(address, ca_file=cert, token="s3cret-token-0123") as c:
        info = c.server_info()
        assert info.auth_required and info.tls
        assert c.classify(shirt_png, model="lenet").predictions
    with InterpClient(address, ca_file=cert) as c, pytest.raises(errors.Unauthenticated):
        c.list_models()
    with InterpClient(address, ca_file=cert, token="wrong") as c, pytest.raises(errors.Unauthenticated):
        c.list_models()
    with InterpClient(address, token="s3cret-token-0123", timeout=5) as c, pytest.raises(errors.Unavailable):
        c.list_models()  # plaintext against TLS


def test_dns_round_robin_target(target):
    with InterpClient(f"dns:///{target}") as c:
        assert {m.name for m in c.list_models()} >= {"lenet"}


def test_a_grid_of_class_logits_is_labelled_with_class_names(client, monkeypatch) -> None:
    from interp import rendering

    drawn: list[list[str]] = []
    grid = rendering.image_grid

    def recording(images, labels=None):
        drawn.append(list(labels or []))
        return grid(images, labels=labels)

    monkeypatch.setattr(rendering, "image_grid", recording)  # the server runs in this process
    description = client.describe_model("lenet")
    logits = description.layers[-1]
    assert logits.output_shape == (len(description.labels),)
    client.visualize_filter("lenet", logits.name, [0, 3], steps=1, restarts=1)
    assert drawn[-1] == [description.labels[0], description.labels[3]]
    client.visualize_filter("lenet", "conv2", [3], steps=1, restarts=1)
    assert drawn[-1] == ["conv2:3"]
