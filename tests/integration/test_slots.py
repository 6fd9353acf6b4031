"""Heavy work runs inside its capacity slot, to its last forward: the slot counts the compute
the server admitted, and a forward outside it would run uncounted beside the next admitted call."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.hub import ModelHub
from models.weights import WeightsOptions
from protos import interp_pb2 as pb
from server.config import Limits
from server.servicer import InterpServicer
from tests.support.servers import test_config


class Client:
    """A ServicerContext whose client reads everything and never goes away."""

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def cancel(self) -> None:
        raise AssertionError("nothing cancels this call")

    def abort_with_status(self, status: object) -> None:
        raise RuntimeError(f"aborted: {status}")


def _image(seed: int) -> pb.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    return pb.Image(encoded=cv2.imencode(".png", pixels)[1].tobytes())


@pytest.fixture(scope="module")
def servicer() -> InterpServicer:
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=4, default_deadline_s=300.0)
    return InterpServicer(test_config(models=("lenet",), limits=limits), ModelHub(["lenet"], WeightsOptions()))


def test_interpolate_features_runs_every_forward_inside_its_slot(servicer) -> None:
    conv1 = servicer.hub.get("lenet").require_ready().get_submodule("conv1")
    held: list[int] = []  # the gate's running count at each forward of the call

    def record(module: torch.nn.Module, inputs: object) -> None:
        held.append(servicer.gate.running)

    alphas = [0.0, 0.5, 1.0]
    request = pb.InterpolateFeaturesRequest(
        model="lenet",
        source=_image(0),
        target=_image(1),
        alphas=alphas,
        params=pb.InterpolateFeaturesParams(iterations=2, warm_iterations=1),
    )
    hook = conv1.register_forward_pre_hook(record)
    try:
        events = list(servicer.InterpolateFeatures(request, Client()))
    finally:
        hook.remove()
    result = events[-1].result
    assert [r.alpha for r in result.results] == alphas and all(r.prediction.label for r in result.results)
    assert len(held) > len(alphas)
    outside = [i for i, running in enumerate(held) if running != 1]
    assert not outside, f"forwards {outside} of {len(held)} ran outside the capacity slot"
    assert servicer.gate.running == 0
