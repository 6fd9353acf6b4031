"""Weights resolution and the model hub: real files written by the tests, never the network.

Every test points the hub cache at its own tmp dir, so weights on the machine cannot leak in. The
bundled LeNet checkpoint (written by ``interp-train``) may or may not exist: tests that need LeNet
without weights swap in a spec whose metadata path is in tmp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from models import registry
from models.errors import (
    ECHO_LIMIT,
    ModelUnavailable,
    UnknownLayer,
    UnknownModel,
    WeightsError,
    WeightsNotFound,
    shown,
)
from models.hub import ModelHub, load_model
from models.loaded import READY, UNAVAILABLE
from models.registry import ModelSpec, get_spec
from models.weights import WeightsOptions, random_weights, resolve_weights, state_dict_sha256
from models.zoo import LENET_METADATA
from tests.conftest import require


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lenet_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return get_spec("lenet").build().state_dict()


def with_weights(spec: ModelSpec, **changes) -> ModelSpec:
    return dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, **changes))


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random AlexNet state_dict saved with torch.save, as a user's fine-tuned weights would be."""
    path = tmp_path_factory.mktemp("alexnet") / "my_alexnet.pt"
    torch.manual_seed(1)
    torch.save(get_spec("alexnet").build().state_dict(), path)
    return path


@pytest.fixture
def options(tmp_path: Path) -> WeightsOptions:
    """Options whose hub cache is an empty tmp dir."""
    hub = tmp_path / "hub"
    hub.mkdir()
    return WeightsOptions(hub_dir=hub)


@pytest.fixture
def lenet_unbundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """Registry's lenet as if ``interp-train`` had not run yet (metadata path in tmp, absent)."""
    spec = with_weights(get_spec("lenet"), bundled_metadata=tmp_path / "bundle" / "lenet5_fashion_mnist.json")
    monkeypatch.setitem(registry._REGISTRY, "lenet", spec)
    return spec


def test_explicit_file_loads_and_reports_its_sha256(alexnet_file: Path, options: WeightsOptions) -> None:
    options.files = {"alexnet": alexnet_file}
    state, info = resolve_weights(get_spec("alexnet"), options)
    assert (info.source, info.path, info.pretrained) == ("file", str(alexnet_file), True)
    assert info.sha256 == sha256_of(alexnet_file)
    assert info.canonical_name == "alexnet-owt-7be5be79.pth"
    saved = torch.load(alexnet_file, weights_only=True)
    assert list(state) == list(saved)
    torch.testing.assert_close(state["features.0.weight"], saved["features.0.weight"])


def test_a_pin_covers_an_explicit_file_of_another_name(alexnet_file: Path, options: WeightsOptions) -> None:
    """``--weights alexnet=my_alexnet.pt --weights-sha256 alexnet=<its sha256>``: the operator's own
    state_dict answers to the pin alone (it was refused for contradicting the prefix in the name
    of torchvision's file, a file never used); a pin it does not match refuses it."""
    options.files = {"alexnet": alexnet_file}
    options.sha256 = {"alexnet": sha256_of(alexnet_file).upper()}
    _state, info = resolve_weights(get_spec("alexnet"), options)
    assert info.source == "file" and info.sha256 == sha256_of(alexnet_file)
    options.sha256 = {"alexnet": "0" * 64}
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(get_spec("alexnet"), options)


def test_a_pin_covers_the_bundled_lenet_too(options: WeightsOptions) -> None:
    """A pin on a bundled model was ignored without a word; it is checked like any other file's."""
    _state, bundled = resolve_weights(get_spec("lenet"), options)
    assert bundled.source == "bundled"
    options.sha256 = {"lenet": bundled.sha256}
    assert resolve_weights(get_spec("lenet"), options)[1].sha256 == bundled.sha256
    options.sha256 = {"lenet": "b" * 64}
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(get_spec("lenet"), options)


def test_hub_serves_an_explicit_file_frozen_and_in_eval_mode(alexnet_file: Path, options: WeightsOptions) -> None:
    options.files = {"alexnet": alexnet_file}
    hub = ModelHub(["alexnet"], options)
    model = hub.ready("alexnet")
    assert (model.status, model.reason, model.pretrained) == (READY, "", True)
    assert model.weights.sha256 == sha256_of(alexnet_file)
    module = model.require_ready()
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    saved = torch.load(alexnet_file, weights_only=True)
    torch.testing.assert_close(module.classifier[6].bias, saved["classifier.6.bias"])
    assert model.layers[0].name == "normalize"


def test_wrong_architecture_is_refused_naming_the_keys(alexnet_file: Path, options: WeightsOptions) -> None:
    options.files = {"vgg16": alexnet_file}
    with pytest.raises(WeightsError) as caught:
        resolve_weights(get_spec("vgg16"), options)
    message = str(caught.value)
    assert "does not match the vgg16 architecture" in message
    assert "missing keys" in message and "features.2.weight" in message  # VGG's conv1_2
    assert "unexpected keys" in message and "classifier.1.weight" in message  # AlexNet's fc6
    assert "shape mismatches" in message and "features.0.weight: file (64, 3, 11, 11) vs model (64, 3, 3, 3)" in message


def test_wrong_architecture_makes_the_model_unavailable_even_with_random(
    alexnet_file: Path, options: WeightsOptions
) -> None:
    options.files = {"vgg16": alexnet_file}
    options.random = True  # a refused file is an error to see, not a gap to fill
    model = ModelHub(["vgg16"], options).get("vgg16")
    assert model.status == UNAVAILABLE and model.module is None and not model.pretrained
    assert model.reason.startswith("weights refused:") and "features.2.weight" in model.reason
    with pytest.raises(ModelUnavailable, match="vgg16 is unavailable: weights refused"):
        model.require_ready()
    assert model.resolve_layer("conv3_1") == "features.10"  # the catalogue is still there
    assert {layer.name: layer.output_shape for layer in model.layers}["features.10"] == (256, 56, 56)


@pytest.mark.parametrize("where", ["weights_dir", "hub_cache", "explicit"])
def test_canonical_name_with_wrong_content_is_refused(tmp_path: Path, options: WeightsOptions, where: str) -> None:
    bogus = tmp_path / where / "vgg16-397923af.pth"
    if where == "hub_cache":
        bogus = options.hub_dir / "vgg16-397923af.pth"
    bogus.parent.mkdir(exist_ok=True)
    torch.save(lenet_state(0), bogus)  # a perfectly readable file, just not the one its name claims
    if where == "weights_dir":
        options.weights_dir = bogus.parent
    elif where == "explicit":
        options.files = {"vgg16": bogus}
    with pytest.raises(WeightsError, match=r"checksum mismatch .* expected a hash starting with 397923af"):
        resolve_weights(get_spec("vgg16"), options)
    options.random = True
    model = ModelHub(["vgg16"], options).get("vgg16")
    assert model.status == UNAVAILABLE
    assert "checksum mismatch" in model.reason and sha256_of(bogus) in model.reason and str(bogus) in model.reason


def controlled_spec(tmp_path: Path, name: str = "lenet") -> tuple[ModelSpec, Path]:
    """LeNet under a torchvision-style canonical name whose checksum we control."""
    source = tmp_path / "source.pt"
    torch.save(lenet_state(3), source)
    prefix = sha256_of(source)[:8]
    spec = with_weights(
        get_spec(name), canonical_name=f"lenet-{prefix}.pth", sha256_prefix=prefix, bundled_metadata=None
    )
    return spec, source


def test_weights_dir_then_hub_cache(tmp_path: Path, options: WeightsOptions) -> None:
    spec, source = controlled_spec(tmp_path)
    canonical = spec.weights.canonical_name
    (options.hub_dir / canonical).write_bytes(source.read_bytes())
    state, info = resolve_weights(spec, options)
    assert (info.source, info.path) == ("hub_cache", str(options.hub_dir / canonical))
    assert info.sha256 == sha256_of(source)
    torch.testing.assert_close(state["fc3.weight"], lenet_state(3)["fc3.weight"])

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / canonical).write_bytes(source.read_bytes())
    options.weights_dir = weights_dir
    _, info = resolve_weights(spec, options)
    assert (info.source, info.path) == ("weights_dir", str(weights_dir / canonical))

    options.files = {"lenet": tmp_path / "missing.pt"}  # explicit beats both, even when it is wrong
    with pytest.raises(WeightsError, match="missing.pt.*does not exist"):
        resolve_weights(spec, options)


def test_default_hub_cache_is_torch_hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    spec, source = controlled_spec(tmp_path)
    options = WeightsOptions()
    assert options.checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    assert options.checkpoints_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    options.checkpoints_dir().mkdir(parents=True)
    (options.checkpoints_dir() / spec.weights.canonical_name).write_bytes(source.read_bytes())
    _, info = resolve_weights(spec, options)
    assert info.source == "hub_cache"


def test_download_of_a_file_url_with_the_hash_check(tmp_path: Path, options: WeightsOptions) -> None:
    # A file:// URL takes models.download's real path without a network (HTTP: test_download.py).
    spec, source = controlled_spec(tmp_path)
    spec = with_weights(spec, url=source.as_uri())
    with pytest.raises(WeightsNotFound, match="downloads are off"):
        resolve_weights(spec, options)  # not allowed: nothing fetched
    options.download = True
    _, info = resolve_weights(spec, options)
    assert (info.source, info.path) == ("download", str(options.hub_dir / spec.weights.canonical_name))
    assert info.sha256 == sha256_of(source)

    forged = with_weights(spec, canonical_name="lenet-00000000.pth", sha256_prefix="00000000")
    with pytest.raises(WeightsError, match="download of .* refused: its sha256 is"):
        resolve_weights(forged, options)
    assert not (options.hub_dir / "lenet-00000000.pth").exists()

    gone = with_weights(spec, canonical_name="lenet-11111111.pth", url=(tmp_path / "nowhere.pt").as_uri())
    with pytest.raises(WeightsNotFound, match="download failed"):
        resolve_weights(gone, options)


def test_no_weights_says_exactly_how_to_provide_them(options: WeightsOptions) -> None:
    with pytest.raises(WeightsNotFound) as caught:
        resolve_weights(get_spec("vgg16"), options)
    message = str(caught.value)
    for expected in (
        "--weights vgg16=PATH",
        "--weights-dir",
        "INTERP_WEIGHTS_DIR",
        "vgg16-397923af.pth",
        str(options.hub_dir),
        "--no-download",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "--weights-url-base",
        "INTERP_WEIGHTS_URL_BASE",
        "--weights-sha256 vgg16=HEX",
        "--random-weights",
    ):
        assert expected in message, expected


def test_missing_lenet_weights_say_how_to_train_them(lenet_unbundled: ModelSpec, options: WeightsOptions) -> None:
    model = ModelHub(["lenet"], options).get("lenet")
    assert model.status == UNAVAILABLE
    assert "interp-train" in model.reason and "--weights lenet=PATH" in model.reason
    assert str(lenet_unbundled.weights.bundled_metadata) in model.reason


def test_unavailable_models_do_not_stop_the_others(
    alexnet_file: Path, lenet_unbundled: ModelSpec, options: WeightsOptions
) -> None:
    options.files = {"alexnet": alexnet_file}
    hub = ModelHub(["lenet", "vgg16", "alexnet"], options)
    assert hub.names() == ["lenet", "vgg16", "alexnet"]
    assert [m.status for m in hub.all()] == [UNAVAILABLE, UNAVAILABLE, READY]
    assert hub.ready("alexnet").pretrained
    with pytest.raises(ModelUnavailable, match="vgg16 is unavailable: no weights found"):
        hub.ready("vgg16")
    with pytest.raises(UnknownModel, match="'resnet'.*lenet, vgg16, alexnet"):
        hub.get("resnet")
    lenets = ModelHub(["lenet"], options)
    with pytest.raises(UnknownModel, match="'alexnet' is a built-in model this server was not started with"):
        lenets.get("alexnet")  # not "did you mean 'lenet'?"


def test_random_weights_fill_only_missing_ones(
    alexnet_file: Path, lenet_unbundled: ModelSpec, options: WeightsOptions
) -> None:
    options.files = {"alexnet": alexnet_file}
    options.random, options.seed = True, 7
    rng_before = torch.get_rng_state()
    hub = ModelHub(["alexnet", "lenet"], options)
    assert torch.equal(torch.get_rng_state(), rng_before)  # no global RNG side effects
    alexnet, lenet = hub.get("alexnet"), hub.get("lenet")
    assert (alexnet.weights.source, alexnet.pretrained) == ("file", True)
    assert (lenet.status, lenet.weights.source, lenet.pretrained, lenet.weights.path) == (READY, "random", False, "")
    module = lenet.require_ready()
    assert lenet.weights.sha256 == state_dict_sha256(module.state_dict())
    # Seeded: torch.manual_seed(7) + build gives the same tensors; another seed does not.
    torch.manual_seed(7)
    torch.testing.assert_close(module.state_dict(), lenet_unbundled.build().state_dict())
    assert random_weights(lenet_unbundled, 7)[1].sha256 == lenet.weights.sha256
    assert random_weights(lenet_unbundled, 8)[1].sha256 != lenet.weights.sha256


def test_random_weights_do_not_depend_on_models_loading_beside_them(options: WeightsOptions) -> None:
    # The server loads its models in parallel; torch's initializers share one process-wide generator.
    alexnet = get_spec("alexnet")
    alone = random_weights(alexnet, 0)[1].sha256
    done = threading.Event()
    beside = 0

    def load_lenets() -> None:  # the bundled LeNet, built (random init, then overwritten) again and again
        nonlocal beside
        while not done.is_set():
            assert load_model(get_spec("lenet"), options).status == READY
            beside += 1

    thread = threading.Thread(target=load_lenets)
    thread.start()
    try:
        together = [random_weights(alexnet, 0)[1].sha256 for _ in range(2)]
    finally:
        done.set()
        thread.join()
    assert beside > 0
    assert together == [alone, alone]


def test_state_dict_sha256_covers_keys_and_values() -> None:
    state = lenet_state(0)
    base = state_dict_sha256(state)
    assert base == state_dict_sha256(dict(state)) and len(base) == 64
    changed = dict(state, **{"fc3.bias": state["fc3.bias"] + 1e-6})
    assert state_dict_sha256(changed) != base
    renamed = {("x" + k if k == "fc3.bias" else k): v for k, v in state.items()}
    assert state_dict_sha256(renamed) != base


def test_unreadable_and_non_state_dict_files_are_refused(tmp_path: Path, options: WeightsOptions) -> None:
    spec = get_spec("lenet")
    cases = {
        "garbage.pt": (b"not a torch file", "cannot read .* weights-only"),
        "module.pt": (None, "cannot read .* weights-only"),  # a pickled nn.Module: weights_only refuses it
        "numbers.pt": ({"epoch": 3}, "is not a state_dict"),
    }
    for name, (content, pattern) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is None:
            torch.save(spec.build(), path)
        else:
            torch.save(content, path)
        options.files = {"lenet": path}
        with pytest.raises(WeightsError, match=pattern) as info:
            resolve_weights(spec, options)
        # one line (it is a model's reason in `interp models`), and never torch's advice to retry
        # with weights_only=False, which would run the file's code
        text = str(info.value)
        assert "\n" not in text and "weights_only` set to `False" not in text and len(text) < 500, text
        if name == "module.pt":
            assert "not a tensors-only pickle" in text, text


def test_training_checkpoints_are_unwrapped(tmp_path: Path, options: WeightsOptions) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": lenet_state(2), "epoch": 5}, path)
    options.files = {"lenet": path}
    state, info = resolve_weights(get_spec("lenet"), options)
    torch.testing.assert_close(state["conv1.weight"], lenet_state(2)["conv1.weight"])
    assert info.sha256 == sha256_of(path)


def test_data_parallel_prefix_gets_a_hint(tmp_path: Path, options: WeightsOptions) -> None:
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in lenet_state(0).items()}, path)
    options.files = {"lenet": path}
    with pytest.raises(WeightsError, match="DataParallel"):
        resolve_weights(get_spec("lenet"), options)


def write_bundle(directory: Path, state: dict[str, torch.Tensor], **overrides) -> Path:
    """A checkpoint + metadata pair in interp-train's format."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "tmp.pt"
    torch.save(state, tmp)
    sha256 = sha256_of(tmp)
    checkpoint = directory / f"lenet5_fashion_mnist-{sha256[:8]}.pt"
    tmp.rename(checkpoint)
    meta = {
        "file": checkpoint.name,
        "sha256": sha256,
        "classes": list(get_spec("lenet").labels),
        "normalization": {"mean": [0.2860], "std": [0.3530]},
        "test_accuracy": 0.9,
    } | overrides
    path = directory / "lenet5_fashion_mnist.json"
    path.write_text(json.dumps(meta))
    return path


def test_bundled_weights_are_verified(tmp_path: Path, options: WeightsOptions) -> None:
    metadata = write_bundle(tmp_path / "bundle", lenet_state(4))
    spec = with_weights(get_spec("lenet"), bundled_metadata=metadata)
    state, info = resolve_weights(spec, options)
    checkpoint = metadata.parent / json.loads(metadata.read_text())["file"]
    assert (info.source, info.path, info.sha256) == ("bundled", str(checkpoint), sha256_of(checkpoint))
    torch.testing.assert_close(state["conv2.weight"], lenet_state(4)["conv2.weight"])

    options.files = {"lenet": tmp_path / "bundle" / checkpoint.name}  # explicit still wins
    assert resolve_weights(spec, options)[1].source == "file"
    options.files = {}

    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # corrupted after training
    with pytest.raises(WeightsError, match="checksum mismatch"):
        resolve_weights(spec, options)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"file": "elsewhere.pt"}, "names 'elsewhere.pt', which is not a file"),
        ({"file": "../escape.pt"}, "which is not a file"),
        ({"sha256": "ab" * 32}, "is inconsistent"),
        ({"classes": [str(i) for i in range(10)]}, "has classes"),
        ({"normalization": {"mean": [0.1307], "std": [0.3081]}}, "trained with normalization mean"),
    ],
)
def test_inconsistent_bundles_are_refused(tmp_path: Path, options: WeightsOptions, overrides, pattern) -> None:
    spec = with_weights(get_spec("lenet"), bundled_metadata=write_bundle(tmp_path, lenet_state(0), **overrides))
    with pytest.raises(WeightsError, match=pattern):
        resolve_weights(spec, options)
    options.random = True
    with pytest.raises(WeightsError, match=pattern):  # refused, never replaced by random weights
        resolve_weights(spec, options)


def test_the_trained_lenet_checkpoint_if_present(options: WeightsOptions) -> None:
    require(LENET_METADATA.is_file(), "models/weights/lenet5_fashion_mnist.json not written yet (run interp-train)")
    model = ModelHub(["lenet"], options).ready("lenet")
    assert (model.weights.source, model.pretrained) == ("bundled", True)
    assert model.weights.sha256 == json.loads(LENET_METADATA.read_text())["sha256"]


def test_hub_validates_names(options: WeightsOptions, tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="'vgg19'.*alexnet, lenet, lenet-classic, vgg16"):
        ModelHub(["vgg19"], options)
    options.files = {"resnet": tmp_path / "r.pt"}
    with pytest.raises(UnknownModel, match="'resnet'"):
        ModelHub(["lenet"], options)


def test_resolve_layer(options: WeightsOptions) -> None:
    hub = ModelHub(["vgg16"], options)  # UNAVAILABLE here: layers come from the architecture
    model = hub.get("vgg16")
    assert model.resolve_layer("conv3_1") == "features.10"
    assert model.resolve_layer("features.10") == "features.10"
    assert model.resolve_layer("classifier.6") == model.resolve_layer("fc8") == "classifier.6"
    assert model.resolve_layer("normalize") == "normalize"
    with pytest.raises(UnknownLayer) as caught:
        model.resolve_layer("conv6_1")
    message = str(caught.value)
    assert "'conv6_1'" in message and "conv5_3" in message and "features.30" in message
    with pytest.raises(UnknownLayer):
        model.resolve_layer("features")  # a container, not a catalogued layer


def test_unknown_names_are_echoed_truncated_and_escaped(options: WeightsOptions) -> None:
    """A client-supplied name of 10^6 characters (or with a newline) is echoed as at most ~100."""
    huge = "conv" + "A" * 1_000_000 + "tail"
    hub = ModelHub(["lenet"], options)
    with pytest.raises(UnknownLayer) as layer:
        hub.get("lenet").resolve_layer(huge)
    with pytest.raises(UnknownModel) as served:
        hub.get(huge)
    with pytest.raises(UnknownModel) as registered:
        get_spec(huge)
    for caught in (layer, served, registered):
        message = str(caught.value.args[0])
        assert len(message) < 400, len(message)
        assert "'convAAA" in message and "AAAtail'" in message and "..." in message  # both ends, elided
    assert "lenet" in str(served.value) and "conv1" in str(layer.value)  # the valid choices still listed
    with pytest.raises(UnknownModel) as injected:
        hub.get("lenet\nINFO forged log line")
    assert "\n" not in str(injected.value.args[0]) and "'lenet\\nINFO forged log line'" in str(injected.value.args[0])


def test_shown_keeps_short_values_as_repr() -> None:
    assert shown("conv6_1") == "'conv6_1'"
    assert shown("x" * ECHO_LIMIT) == repr("x" * ECHO_LIMIT)
    assert len(shown("x" * (ECHO_LIMIT + 1))) <= ECHO_LIMIT + 2 and len(shown("é" * 10**6)) <= ECHO_LIMIT + 2


def test_module_is_moved_to_the_requested_device(options: WeightsOptions, tmp_path: Path) -> None:
    path = tmp_path / "lenet.pt"
    torch.save(lenet_state(0), path)
    options.files = {"lenet": path}
    module = ModelHub(["lenet"], options, device="cpu").ready("lenet").require_ready()
    assert isinstance(module, nn.Sequential)
    assert {p.device.type for p in module.parameters()} == {"cpu"}
    assert module.normalize.mean.device.type == "cpu"
