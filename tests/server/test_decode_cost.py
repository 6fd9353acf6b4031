"""The decode budget: header reading, the cost estimate against measured allocations, admission.

The estimate is checked against tracemalloc's peak of the real decode + preprocessing (numpy,
hence OpenCV's arrays, allocate through Python's tracked allocator), on images chosen to cover
each branch: 16-bit and 8-bit, grey, RGB and RGBA, PNG and JPEG, reduced and not, elongated.
"""

from __future__ import annotations

import threading
import tracemalloc

import cv2
import numpy as np
import pytest

from interp.errors import Cancelled
from models.registry import get_spec
from protos import interp_pb2 as pb
from protos.codec import to_tensor
from server.capacity import DecodeBudget
from server.errors import Overloaded
from server.imaging import decode_cost, load_input, load_stack, read_header, stack_key

HANG_S = 60.0
RNG = np.random.default_rng(0)


def _encode(array: np.ndarray, ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


def _image(height: int, width: int, channels: int, dtype: type = np.uint8) -> np.ndarray:
    top = 65535 if dtype is np.uint16 else 255
    shape = (height, width) if channels == 1 else (height, width, channels)
    smooth = cv2.resize(RNG.integers(0, top, (8, 8, max(channels, 1))).astype(np.float32), (width, height))
    return smooth.reshape(shape).astype(dtype)


CASES = [
    ("png 16-bit rgb 1200x900", _encode(_image(900, 1200, 3, np.uint16))),
    ("png 8-bit rgba 2000x300", _encode(_image(300, 2000, 4))),
    ("png 16-bit grey 700x500", _encode(_image(500, 700, 1, np.uint16))),
    ("png 8-bit grey 3000x40 (elongated)", _encode(_image(40, 3000, 1))),
    ("png 8-bit rgb 20x20", _encode(_image(20, 20, 3))),
    ("jpeg rgb 1000x800", _encode(_image(800, 1000, 3), ".jpg")),
    ("jpeg grey 640x480", _encode(_image(480, 640, 1), ".jpg")),
]


@pytest.mark.parametrize(("name", "data"), CASES, ids=[c[0] for c in CASES])
def test_the_header_describes_the_decoded_array(name: str, data: bytes) -> None:
    header = read_header(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (header.height, header.width) == decoded.shape[:2]
    assert header.sample_bytes == decoded.dtype.itemsize
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    assert channels <= header.channels  # an upper bound where the header cannot tell (palette)
    assert header.decoded_bytes >= decoded.nbytes


@pytest.mark.parametrize("model", ["lenet", "vgg16"])
@pytest.mark.parametrize(("name", "data"), CASES, ids=[c[0] for c in CASES])
def test_the_cost_bounds_what_decoding_allocates(model: str, name: str, data: bytes) -> None:
    spec = get_spec(model).preprocessing
    image = pb.Image(encoded=data)
    load_input(image, spec, 40_000_000)  # warm: first calls allocate caches that are not per image
    tracemalloc.start()
    try:
        load_input(image, spec, 40_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    cost = decode_cost(image, spec, 40_000_000)
    print(f"{model} {name}: cost {cost:,} bytes, measured peak {peak:,}")
    assert peak <= cost
    # ... and is not wildly above it (the budget would then admit far fewer images than fit)
    assert cost <= 8 * peak + 4 * 1024 * 1024


def test_pixels_are_costed_from_the_tensor() -> None:
    spec = get_spec("lenet").preprocessing
    array = _image(600, 800, 3)
    image = pb.Image(pixels=to_tensor(array))
    assert decode_cost(image, spec, 40_000_000) >= 2 * array.nbytes
    malformed = pb.Image(pixels=pb.Tensor(shape=[0, 1 << 40], dtype=pb.Tensor.UINT8))
    assert decode_cost(malformed, spec, 40_000_000) == 0  # left for decoding to refuse as invalid


def test_an_image_over_the_pixel_cap_is_invalid_before_it_is_costed() -> None:
    from server.errors import BadRequest

    with pytest.raises(BadRequest, match="exceeds this server's limit"):
        decode_cost(pb.Image(encoded=CASES[0][1]), get_spec("lenet").preprocessing, 1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_cost_above_the_whole_budget_is_refused_at_once() -> None:
    budget = DecodeBudget(1000)
    with pytest.raises(Overloaded, match="decode_budget_bytes=1,000"):
        with budget.reserve(1001, "image", lambda: True, wait_until=1e9):
            pass
    assert budget.used == 0 and budget.refused == 1


def _waiter(budget: DecodeBudget, nbytes: int, wanted: list[bool], wait_until: float) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            with budget.reserve(nbytes, "image", lambda: wanted[0], wait_until):
                outcome.append(("ok", budget.used))
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for(condition) -> None:  # noqa: ANN001
    tick = threading.Event()
    for _ in range(int(HANG_S / 0.002)):
        if condition():
            return
        tick.wait(0.002)
    pytest.fail("condition not reached: a hang")


def test_a_call_that_does_not_fit_waits_for_the_memory_to_be_released() -> None:
    budget = DecodeBudget(1000)
    with budget.reserve(700, "image", lambda: True, wait_until=1e9):
        thread, outcome = _waiter(budget, 400, [True], 1e9)
        _wait_for(lambda: budget.waiting == 1)
        small, small_outcome = _waiter(budget, 300, [True], 1e9)  # fits now: does not queue behind
        small.join(HANG_S)
        assert small_outcome == [("ok", 1000)] and not outcome
    thread.join(HANG_S)
    assert outcome == [("ok", 400)] and budget.used == 0 and budget.peak == 1000


def test_the_wait_ends_before_the_deadline_with_resource_exhausted() -> None:
    clock = FakeClock()
    budget = DecodeBudget(1000, clock=clock)
    with budget.reserve(1000, "image", lambda: True, wait_until=1e9):
        thread, outcome = _waiter(budget, 10, [True], wait_until=5.0)
        _wait_for(lambda: budget.waiting == 1)
        clock.now = 5.0
        thread.join(HANG_S)
    assert len(outcome) == 1 and isinstance(outcome[0], Overloaded)
    assert "decode_budget_bytes=1,000" in str(outcome[0]) and budget.waiting == 0 and budget.used == 0


def test_a_waiting_call_that_is_cancelled_leaves() -> None:
    budget = DecodeBudget(1000)
    wanted = [True]
    with budget.reserve(1000, "image", lambda: True, wait_until=1e9):
        thread, outcome = _waiter(budget, 10, wanted, 1e9)
        _wait_for(lambda: budget.waiting == 1)
        wanted[0] = False
        thread.join(HANG_S)
        assert isinstance(outcome[0], Cancelled) and budget.waiting == 0 and budget.used == 1000
    assert budget.used == 0


STACKS = [  # raw arrays decoded as one stack (lenet: up to 56 px; vgg16: up to 512 px on the shorter side)
    ("lenet", "uint8 grey 28x28", (28, 28), np.uint8),
    ("lenet", "float32 rgba 30x30", (30, 30, 4), np.float32),
    ("lenet", "uint8 grey 50x40", (50, 40), np.uint8),
    ("vgg16", "uint8 grey 28x28", (28, 28), np.uint8),
    ("vgg16", "uint16 rgb 60x80", (60, 80, 3), np.uint16),
    ("vgg16", "float32 rgba 30x30", (30, 30, 4), np.float32),
    ("vgg16", "uint8 rgb 300x240", (300, 240, 3), np.uint8),
]


@pytest.mark.parametrize(("model", "name", "shape", "dtype"), STACKS, ids=[f"{s[0]}-{s[1]}" for s in STACKS])
def test_the_summed_cost_bounds_what_a_stacked_decode_allocates(model: str, name: str, shape, dtype) -> None:
    spec = get_spec(model).preprocessing
    count = 16
    if dtype is np.float32:
        arrays = [RNG.random(shape, dtype=np.float32) for _ in range(count)]
    else:
        arrays = [RNG.integers(0, np.iinfo(dtype).max, shape).astype(dtype) for _ in range(count)]
    images = [pb.Image(pixels=to_tensor(a)) for a in arrays]
    assert stack_key(images[0], spec, 40_000_000) is not None
    load_stack(images, spec)  # warm
    tracemalloc.start()
    try:
        load_stack(images, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    cost = sum(decode_cost(image, spec, 40_000_000) for image in images)  # what Ctx.inputs reserves
    print(f"{model} {count} x {name}: summed cost {cost:,} bytes, measured peak {peak:,}")
    assert peak <= cost
    assert cost <= 8 * peak + 4 * 1024 * 1024
