"""SDK requests and results over a real channel to a scripted servicer (client_fakes.py).

Checks what the SDK puts on the wire (parameters, targets, layer weights, attribute sets) and
how it decodes results (arrays, PNG bytes, resolved parameters, stamps, save()).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client import (
    ActivationsResult,
    AttackResult,
    DreamResult,
    FilterVisualization,
    InterpClient,
    InterpolationResult,
    ProgressEvent,
    SaliencyResult,
)
from protos import interp_pb2 as pb
from tests.support.client_fakes import PNG, start_fake


@pytest.fixture(scope="module")
def fake():
    server, port, servicer = start_fake()
    with InterpClient(f"127.0.0.1:{port}") as c:
        yield c, servicer
    server.stop(grace=None)


def last_request(servicer):
    return servicer.requests[-1]


def test_models_catalogue_and_server_info(fake):
    c, _ = fake
    models = c.list_models()
    assert [(m.name, m.status, m.ready) for m in models] == [
        ("vgg16", "READY", True),
        ("lenet", "UNAVAILABLE", False),
    ]
    assert models[0].input_shape == (3, 224, 224)
    assert models[0].weights.source == "random"
    assert models[1].reason.startswith("no weights")

    d = c.describe_model("vgg16")
    conv = d.layer("conv3_1")
    assert conv is d.layer("features.10")
    assert conv.output_shape == (256, 56, 56)
    assert (conv.receptive_field.size, conv.receptive_field.jump, conv.receptive_field.start) == (24, 4, 1.5)
    assert d.layer("classifier.6").receptive_field is None
    assert d.labels == ("cat", "dog")
    with pytest.raises(KeyError, match="conv3_1"):
        d.layer("conv9")

    info = c.server_info()
    assert info.limits["max_steps"] == 2048
    assert info.limits["max_octaves"] == 0  # unset limits are still listed
    assert info.libraries["torch"] == "2.14.1"


def test_classify_decodes_everything(fake):
    c, servicer = fake
    r = c.classify(np.zeros((4, 4, 3), np.uint8), model="vgg16", top_k=3)
    assert not last_request(servicer).image.HasField("encoded")
    assert [p.index for p in r.predictions] == [0, 1, 2]
    assert r.top.label == "class 0"
    np.testing.assert_array_equal(r.logits, np.arange(10, dtype=np.float32))
    assert r.input.shape == (4, 4, 3) and r.input.dtype == np.float32  # channels last, like any input
    assert r.input_png == PNG
    assert (r.model, r.pretrained, r.request_id, r.elapsed_ms) == ("vgg16", False, "rid-1", 1.5)
    c.classify(PNG, model="vgg16")
    assert not last_request(servicer).HasField("top_k"), "top_k left out -> the server's default"


def test_activations_request_and_result(fake):
    c, servicer = fake
    r = c.activations(PNG, model="vgg16", layers=["conv3_1", "relu1_1"], top_k=2, include_tensors=False)
    request = last_request(servicer)
    assert list(request.layers) == ["conv3_1", "relu1_1"]
    assert request.top_k == 2 and request.include_tensors is False
    assert isinstance(r, ActivationsResult)
    assert r["conv3_1"].activation is None
    np.testing.assert_allclose(r["conv3_1"].channel_mean, [4.0, 13.0])
    assert r["conv3_1"].top_channels == (1, 0)
    full = c.activations(PNG, model="vgg16", layers="conv3_1")
    assert full["conv3_1"].activation.shape == (2, 3, 3)
    assert full[full.layers[0].layer] is full.layers[0]
    with pytest.raises(ValueError, match="at least one"):
        c.activations(PNG, model="vgg16", layers=[])


def test_kernels(fake):
    c, _ = fake
    r = c.kernels("vgg16", "conv1_1")
    assert r.weights.shape == (4, 3, 3, 3)
    assert r.bias is None
    assert r.rgb and r.grid_png == PNG


def test_saliency_params_target_and_resolved_echo(fake):
    c, servicer = fake
    r = c.saliency(PNG, model="vgg16", method="smoothgrad", target=5, samples=np.int64(20), noise_level=0.1)
    request = last_request(servicer)
    assert request.method == "smoothgrad"
    assert request.target.index == 5
    assert request.params.samples == 20 and request.params.noise_level == pytest.approx(0.1)
    assert not request.params.HasField("seed"), "unset parameters stay unset"
    assert isinstance(r, SaliencyResult)
    np.testing.assert_array_equal(r.map, np.eye(4, dtype=np.float32))
    assert r.params == {"samples": 20, "noise_level": pytest.approx(0.1), "seed": 0}
    assert isinstance(r.params["seed"], int)
    c.saliency(PNG, model="vgg16", target="Tabby Cat", layer=None)
    request = last_request(servicer)
    assert request.target.label == "Tabby Cat"
    assert not request.params.HasField("layer"), "None means the server default"
    c.saliency(PNG, model="vgg16")
    assert not last_request(servicer).HasField("target")


def test_unknown_or_mistyped_parameters_raise_type_error_naming_valid_ones(fake):
    c, _ = fake
    with pytest.raises(TypeError, match=r"'sample'.*valid parameters: layer, samples, noise_level"):
        c.saliency(PNG, model="vgg16", sample=3)
    with pytest.raises(TypeError, match="steps=2.5.*int expected"):
        c.attack(PNG, model="vgg16", epsilon=0.1, steps=2.5)
    with pytest.raises(TypeError, match="valid parameters: octaves"):
        c.dream(PNG, model="vgg16", layers="relu4_3", octave=3)
    with pytest.raises(TypeError, match="valid parameters"):
        c.iter_visualize_filter("vgg16", "conv1", 0, lr=0.1)
    with pytest.raises(TypeError, match="valid parameters"):
        c.interpolate(PNG, model="lenet", positive="a", negative="b", iters=3)
    with pytest.raises(TypeError, match="class index"):
        c.saliency(PNG, model="vgg16", target=True)
    with pytest.raises(TypeError, match="epsilons must be a number or a sequence of numbers, got '0.1'"):
        c.attack(PNG, model="vgg16", epsilon="0.1")  # not split into characters
    with pytest.raises(ValueError, match=r"steps=1000000000000 is out of range: at most 2,147,483,647"):
        c.attack(PNG, model="vgg16", epsilon=0.1, steps=10**12)  # an int32 overflow is no type error
    with pytest.raises(ValueError, match="unknown RPC 'Frobnicate'; the RPCs: ListModels"):
        c.call("Frobnicate", {})


def test_attack_sweep_and_result(fake):
    c, servicer = fake
    r = c.attack(PNG, model="lenet", method="pgd", epsilon=[0.01, 0.1], target="bag", steps=5, random_start=True)
    request = last_request(servicer)
    assert list(request.epsilons) == pytest.approx([0.01, 0.1])
    assert request.target.label == "bag" and request.params.steps == 5 and request.params.random_start
    assert isinstance(r, AttackResult)
    assert [o.success for o in r.outcomes] == [False, True]
    assert r.outcomes[1].adversarial.shape == (4, 4, 3)
    assert r.params == {"steps": 10, "seed": 123456789012}
    c.attack(PNG, model="lenet", epsilon=0.03)
    assert list(last_request(servicer).epsilons) == pytest.approx([0.03])
    with pytest.raises(ValueError, match="at least one"):
        c.attack(PNG, model="lenet", epsilon=[])


def test_visualize_filter_blocking_with_progress_and_iterator(fake):
    c, servicer = fake
    events: list[ProgressEvent] = []
    r = c.visualize_filter("vgg16", "conv3_1", [3, 7], progress=events.append, steps=64, image_size=32)
    request = last_request(servicer)
    assert list(request.channels) == [3, 7]
    assert request.params.steps == 64 and request.params.image_size == 32
    assert [e.step for e in events] == [1, 2]
    assert events[0].preview_png is None and events[1].preview_png == PNG
    assert events[1].stage == "octave 1/1" and events[1].total_steps == 2
    assert isinstance(r, FilterVisualization)
    assert r.images.shape == (2, 8, 8, 3) and r.activations == (3.0, 7.0)
    assert r.params == {"steps": 64, "seed": 0}

    items = list(c.iter_visualize_filter("vgg16", "conv3_1", 3))
    assert [type(i) for i in items] == [ProgressEvent, ProgressEvent, FilterVisualization]
    with pytest.raises(ValueError, match="at least one"):
        c.visualize_filter("vgg16", "conv3_1", [])


def test_iterator_arguments_are_checked_before_the_call_starts(fake):
    c, servicer = fake
    before = len(servicer.requests)
    with pytest.raises(ValueError):
        c.iter_dream(np.full((4, 4), 2.0), model="vgg16", layers="relu1")
    stream = c.iter_dream(PNG, model="vgg16", layers="relu1")
    assert len(servicer.requests) == before, "the call starts lazily, at the first next()"
    next(stream)
    stream.close()


def test_dream_layer_forms(fake):
    c, servicer = fake

    def sent_layers():
        return [(lw.layer, lw.weight if lw.HasField("weight") else None) for lw in last_request(servicer).layers]

    r = c.dream(PNG, model="vgg16", layers="relu4_3", octaves=2, seed=3)
    assert sent_layers() == [("relu4_3", None)]
    assert last_request(servicer).params.octaves == 2
    assert isinstance(r, DreamResult)
    assert r.gains[0].ratio == pytest.approx(3.0)
    c.dream(PNG, model="vgg16", layers={"relu4_3": 2.0, "relu5_1": 0.5})
    assert sent_layers() == [("relu4_3", 2.0), ("relu5_1", 0.5)]
    c.dream(PNG, model="vgg16", layers=["relu4_3", ("relu5_1", 0.25)])
    assert sent_layers() == [("relu4_3", None), ("relu5_1", 0.25)]
    with pytest.raises(ValueError, match="at least one"):
        c.dream(PNG, model="vgg16", layers={})


def test_interpolate_direction_forms(fake, tmp_path: Path):
    c, servicer = fake
    r = c.interpolate(PNG, model="lenet", positive="ankle boot", negative="sneaker", alphas=[0, 1], set_size=10)
    request = last_request(servicer)
    assert request.WhichOneof("direction") == "sets"
    assert (request.sets.positive_class, request.sets.negative_class) == ("ankle boot", "sneaker")
    assert list(request.alphas) == [0.0, 1.0] and request.params.set_size == 10
    assert isinstance(r, InterpolationResult)
    assert [a.alpha for a in r.results] == [0.0, 1.0]

    img = tmp_path / "a.png"
    img.write_bytes(PNG)
    # a list of images, and an (N, H, W, C) array as N images
    c.interpolate(PNG, model="lenet", positive=[img, PNG], negative=np.zeros((2, 4, 4, 3), np.uint8))
    sets = last_request(servicer).sets
    assert len(sets.positive) == 2 and len(sets.negative) == 2
    assert sets.positive[0].encoded == PNG

    c.interpolate(PNG, model="lenet", target=img, layers=["relu1", "relu2"])
    request = last_request(servicer)
    assert request.WhichOneof("direction") == "target"
    assert list(request.layers) == ["relu1", "relu2"]
    assert len(request.alphas) == 0, "alphas left out -> the server's defaults"

    with pytest.raises(ValueError, match="not both"):
        c.interpolate(PNG, model="lenet", target=img, positive="a", negative="b")
    with pytest.raises(ValueError, match="both positive= and negative="):
        c.interpolate(PNG, model="lenet", positive="a")
    with pytest.raises(ValueError, match="give a direction"):
        c.interpolate(PNG, model="lenet")
    with pytest.raises(ValueError, match="empty"):
        c.interpolate(PNG, model="lenet", positive=[], negative="b")


def test_save_to_directory_and_to_file(fake, tmp_path: Path):
    c, _ = fake
    sal = c.saliency(PNG, model="vgg16")
    written = sal.save(tmp_path / "dir")
    assert [p.name for p in written] == ["overlay.png", "heatmap.png", "input.png"]
    written = sal.save(tmp_path / "one" / "cat.png")
    assert [p.name for p in written] == ["cat.png", "cat_heatmap.png", "cat_input.png"]
    assert all(p.read_bytes() == PNG for p in written)

    attack = c.attack(PNG, model="lenet", epsilon=[0.01, 0.1])
    names = [p.name for p in attack.save(tmp_path / "attack")]
    assert names[:2] == ["adversarial_eps0.01.png", "perturbation_eps0.01.png"]
    assert "adversarial_eps0.1.png" in names

    acts = c.activations(PNG, model="vgg16", layers=["features.10", "a/b"])
    names = [p.name for p in acts.save(tmp_path / "acts")]
    assert names == ["features.10.png", "a_b.png", "input.png"]

    vis = c.visualize_filter("vgg16", "conv3_1", [3, 7])
    names = [p.name for p in vis.save(tmp_path / "vis" / "grid", as_file=True)]
    assert names == ["grid", "grid_channel_0003.png", "grid_channel_0007.png"]


def test_results_are_frozen(fake):
    c, _ = fake
    r = c.classify(PNG, model="vgg16")
    with pytest.raises(AttributeError):
        r.model = "other"  # type: ignore[misc]
    other = c.classify(PNG, model="vgg16")
    assert r == r and r != other  # identity equality: comparing never hits numpy's ambiguous truth value


def test_image_message_passthrough_and_pb_image(fake):
    c, servicer = fake
    c.classify(pb.Image(encoded=PNG), model="vgg16")
    assert last_request(servicer).image.encoded == PNG


def test_is_many_tells_one_image_from_several(tmp_path):
    from client.sdk import is_many

    one = [
        "cat.png",
        tmp_path / "cat.png",
        b"\x89PNG",
        bytearray(b"x"),
        np.zeros((28, 28), np.uint8),
        np.zeros((28, 28, 3), np.uint8),  # (H, W, C): one image, even when H is small
        np.zeros((4, 28, 28), np.uint8),  # 3-D is always one (H, W, C) image, never (N, H, W)
        pb.Image(encoded=b"x"),
    ]
    several = [["a.png"], ("a.png", "b.png"), iter(["a.png"]), (p for p in ["a.png"]), np.zeros((2, 28, 28, 1))]
    assert [is_many(x) for x in one] == [False] * len(one)
    assert [is_many(x) for x in several] == [True] * len(several)


def test_dataset_images_sends_positions_or_a_page(fake):
    c, servicer = fake
    result = c.dataset_images("vgg16", dataset="fashion-mnist-test", positions=[3, 1])
    sent = last_request(servicer)
    assert isinstance(sent, pb.DatasetImagesRequest)
    assert (sent.model, sent.dataset, list(sent.positions)) == ("vgg16", "fashion-mnist-test", [3, 1])
    assert not sent.HasField("label") and not sent.HasField("limit") and sent.offset == 0
    assert result.model == "vgg16" and result.images == () and result.total == 0
    c.dataset_images("vgg16", dataset="mine", positions=7, label=None)
    assert list(last_request(servicer).positions) == [7]
    c.dataset_images("vgg16", dataset="mine", label=0, offset=48, limit=24)
    sent = last_request(servicer)
    assert (list(sent.positions), sent.label, sent.offset, sent.limit) == ([], 0, 48, 24)
    assert sent.HasField("label")
