"""Own models that cannot serve every method: each is refused alone, at start-up, with a reason that
says what to change; or (compiled TorchScript) serves, and the layers it hides are explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from models.errors import UnknownLayer
from models.hub import ModelHub
from models.loaded import READY, UNAVAILABLE
from models.own import load_own_model
from models.weights import WeightsOptions

SIZE = 16
BATCH = {"x": {0: torch.export.Dim("batch")}}


class Net(nn.Module):
    """A small CNN with its layers in two Sequentials (what people write; not one Sequential)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * (SIZE // 2) ** 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TwoOutputs(Net):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        features = self.features(x)
        return self.classifier(features), features


class OneAtATime(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[1](self.features(x).view(1, -1))


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("card") / "card.json"
    path.write_text(json.dumps({"input_shape": [1, SIZE, SIZE], "labels": ["a", "b", "c"]}))
    return path


def scripted(module: nn.Module, path: Path) -> str:
    torch.jit.script(module.eval()).save(str(path))
    return f"torchscript:{path}"


def exported(module: nn.Module, path: Path, **kwargs) -> str:
    # an example of 2: torch specializes a dimension of size 1 even when it is marked dynamic
    example = torch.zeros(2 if kwargs else 1, 1, SIZE, SIZE)
    torch.export.save(torch.export.export(module.eval(), (example,), **kwargs), str(path))
    return f"export:{path}"


def test_a_model_returning_a_tuple_is_refused_alone_and_the_others_serve(card, tmp_path) -> None:
    two, one = scripted(TwoOutputs(), tmp_path / "two.ts"), scripted(Net(), tmp_path / "one.ts")
    own = {"two": (two, card), "one": (one, card)}
    hub = ModelHub(["lenet"], WeightsOptions(), own=own)
    assert [hub.get(n).status for n in ("lenet", "two", "one")] == [READY, UNAVAILABLE, READY]
    assert "returns a tuple of 2, not one tensor of logits" in hub.get("two").reason


def test_a_model_taking_one_image_at_a_time_is_refused_with_the_fix(card, tmp_path) -> None:
    fixed = load_own_model("fixed", exported(Net(), tmp_path / "fixed.pt2"), card, WeightsOptions())
    assert fixed.status == UNAVAILABLE
    assert "a batch of 2 blank inputs does not fit the model" in fixed.reason
    assert "dynamic_shapes" in fixed.reason
    dynamic_source = exported(Net(), tmp_path / "dyn.pt2", dynamic_shapes=BATCH)
    dynamic = load_own_model("dynamic", dynamic_source, card, WeightsOptions())
    assert dynamic.status == READY, dynamic.reason
    view = load_own_model("view", scripted(OneAtATime(), tmp_path / "view.ts"), card, WeightsOptions())
    assert view.status == UNAVAILABLE and "no hard-coded 1 in view/reshape" in view.reason
    assert "mat1 and mat2 shapes cannot be multiplied (1x512" in view.reason  # TorchScript's cause, not its preamble


def test_a_whole_module_saved_with_torch_save_is_named_as_such(card, tmp_path) -> None:
    torch.save(Net(), tmp_path / "whole.pt")
    model = load_own_model("whole", f"torchscript:{tmp_path / 'whole.pt'}", card, WeightsOptions())
    assert model.status == UNAVAILABLE and "was written by torch.save" in model.reason


def test_a_wrong_input_size_says_which_shapes_disagree(tmp_path) -> None:
    card = tmp_path / "big.json"
    card.write_text(json.dumps({"input_shape": [1, SIZE + 4, SIZE + 4], "labels": ["a", "b", "c"]}))
    model = load_own_model("big", scripted(Net(), tmp_path / "net.ts"), card, WeightsOptions())
    assert model.status == UNAVAILABLE
    assert "mat1 and mat2 shapes cannot be multiplied" in model.reason, model.reason


def test_compiled_torchscript_says_which_layers_it_hides(card, tmp_path) -> None:
    model = load_own_model("opaque", scripted(Net(), tmp_path / "opaque.ts"), card, WeightsOptions())
    assert model.status == READY
    with pytest.raises(UnknownLayer, match=r"no layer 'features.2'.*net: compiled TorchScript.*torch.export program"):
        model.resolve_layer("features.2")
    assert model.spec.default_gradcam_layer == ""  # never the normalization: Grad-CAM asks for a layer
    assert {layer.name: layer.type for layer in model.layers}["net"] == "Net"  # its scripted class
    # the same network as a program: every layer, with the types it was exported from
    source = exported(Net(), tmp_path / "p.pt2", dynamic_shapes=BATCH)
    program = load_own_model("program", source, card, WeightsOptions())
    assert program.resolve_layer("features.2") == "net.features.2" and not program.spec.layers_note
    types = {layer.name: layer.type for layer in program.layers}
    assert (types["net.features.0"], types["net.features.2"], types["net.classifier.1"]) == ("Conv2d", "ReLU", "Linear")
    assert program.spec.default_gradcam_layer == "net.features.2"  # the conv's ReLU


def test_grad_cams_default_for_an_own_model_is_the_last_convs_relu(card, tmp_path) -> None:
    torch.save(Net().state_dict(), tmp_path / "net.pt")
    scripted_seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(4 * (SIZE // 2) ** 2, 3))  # fmt: skip
    model = load_own_model("seq", scripted(scripted_seq, tmp_path / "seq.ts"), card, WeightsOptions())
    assert model.status == READY and model.spec.default_gradcam_layer == "net.2"
