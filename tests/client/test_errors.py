"""Status codes -> typed exceptions, token metadata, deadlines, TLS and stream cancellation.

Driven through a real in-process gRPC server running a scripted servicer (client_fakes.py), so
codes, messages, metadata and cancellations cross a real channel.
"""

from __future__ import annotations

import gc
import socket

import grpc
import pytest

from client import InterpClient, ProgressEvent, errors
from client.sdk import channel_options, is_loopback_target
from tests.conftest import self_signed_certificate
from tests.support.client_fakes import ABORT_MESSAGE, PNG, FakeInterp, start_fake

MAPPED = [
    (grpc.StatusCode.CANCELLED, errors.Cancelled),
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
    (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
    (grpc.StatusCode.INTERNAL, errors.Internal),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
]
UNMAPPED = [
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.DATA_LOSS,
]


@pytest.fixture(scope="module")
def shared():
    server, port, servicer = start_fake()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


@pytest.fixture()
def fresh():
    """A server of its own, for tests that watch the servicer's events."""
    server, port, servicer = start_fake()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


@pytest.mark.parametrize(("code", "cls"), MAPPED, ids=[c.name for c, _ in MAPPED])
def test_status_code_maps_to_its_exception_with_message_intact(shared, code, cls):
    target, _ = shared
    with InterpClient(target) as c, pytest.raises(cls) as info:
        c.classify(PNG, model=f"abort:{code.name}")
    error = info.value
    assert type(error) is cls
    assert isinstance(error, errors.InterpError)
    assert error.code == code
    assert error.message == ABORT_MESSAGE.format(code=code.name)
    assert error.details == error.message
    assert error.request_id == f"req-{code.name}"
    assert str(error) == f"{code.name}: {error.message}"
    assert errors.exception_for(code) is cls


@pytest.mark.parametrize("code", UNMAPPED, ids=[c.name for c in UNMAPPED])
def test_other_codes_raise_the_base_class(shared, code):
    target, _ = shared
    with InterpClient(target) as c, pytest.raises(errors.InterpError) as info:
        c.describe_model(f"abort:{code.name}")
    assert type(info.value) is errors.InterpError
    assert info.value.code == code
    assert info.value.code_name == code.name


def test_exceptions_also_are_the_natural_builtin_kinds():
    assert issubclass(errors.InvalidArgument, ValueError)
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.DeadlineExceeded, TimeoutError)
    assert issubclass(errors.Unavailable, ConnectionError)
    assert issubclass(errors.Unimplemented, NotImplementedError)


def test_request_id_is_parsed_from_the_message_forms_servers_use():
    assert errors.InterpError("internal error (request id 3f2a-9b)").request_id == "3f2a-9b"
    assert errors.InterpError("failed; request_id=abc123.").request_id == "abc123"
    assert errors.InterpError("Request ID: XYZ").request_id == "XYZ"
    assert errors.InterpError("nothing here").request_id is None


def test_streaming_errors_are_typed_too(shared):
    target, _ = shared
    with InterpClient(target) as c:
        stream = c.iter_dream(PNG, model="abort:FAILED_PRECONDITION", layers="relu1")
        with pytest.raises(errors.FailedPrecondition, match="ünïcödé"):
            next(stream)
        with pytest.raises(errors.NotFound):
            c.visualize_filter("abort:NOT_FOUND", "conv1", [0])


def test_token_is_sent_as_bearer_metadata_on_unary_and_streaming_calls(shared):
    target, servicer = shared
    with InterpClient(target, token="s3cret-token\n") as c:
        c.list_models()
        assert servicer.metadata[-1]["authorization"] == "Bearer s3cret-token"
        c.dream(PNG, model="m", layers="relu1")
        assert servicer.metadata[-1]["authorization"] == "Bearer s3cret-token"
    with InterpClient(target) as c:
        c.list_models()
        assert "authorization" not in servicer.metadata[-1]


@pytest.mark.parametrize(
    "target", ["10.0.0.7:50051", "interp.example.com:50051", "dns:///interp:50051", "[2001:db8::1]:50051",
               "ipv4:127.0.0.1:1,10.0.0.7:1", "127.0.0.1.example.com:50051"],
)  # fmt: skip
def test_a_token_over_plaintext_to_another_host_warns(target):
    with pytest.warns(UserWarning, match="plaintext"):
        InterpClient(target, token="s3cret-token").close()


@pytest.mark.parametrize("target", ["127.0.0.1:1", "localhost:1", "[::1]:1", "dns:///localhost:1", "unix:/tmp/s"])
def test_no_warning_on_loopback_without_a_token_or_with_tls(target, recwarn):
    InterpClient(target, token="s3cret-token").close()  # loopback: nothing leaves the machine
    InterpClient("10.0.0.7:50051").close()  # no token to leak
    InterpClient("10.0.0.7:50051", token="s3cret-token", tls=True).close()
    assert not [w for w in recwarn if "plaintext" in str(w.message)]
    assert is_loopback_target(target)


def test_client_certificate_needs_its_key(tmp_path):
    (tmp_path / "client.crt").write_text("x")
    with pytest.raises(ValueError, match="go together"):
        InterpClient("localhost:1", cert_file=tmp_path / "client.crt")
    with pytest.raises(ValueError, match="go together"):
        InterpClient("localhost:1", key_file=tmp_path / "client.key")


def test_bad_tokens_are_refused_before_any_call():
    with pytest.raises(ValueError, match="token"):
        InterpClient("127.0.0.1:1", token="two words")
    with pytest.raises(ValueError, match="empty"):
        InterpClient("127.0.0.1:1", token="  ")


def test_deadline_exceeded(shared):
    target, _ = shared
    with InterpClient(target, timeout=0.3) as c, pytest.raises(errors.DeadlineExceeded):
        c.classify(PNG, model="sleep")
    with InterpClient(target) as c, pytest.raises(errors.DeadlineExceeded):
        c.classify(PNG, model="sleep", timeout=0.3)  # per-call override


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_is_unavailable():
    with InterpClient(f"127.0.0.1:{_free_port()}", timeout=5) as c, pytest.raises(errors.Unavailable) as info:
        c.list_models()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    with InterpClient(f"127.0.0.1:{_free_port()}") as c, pytest.raises(errors.Unavailable):
        c.wait_ready(timeout=0.2)


def test_closing_the_iterator_cancels_the_server_side_loop(fresh):
    target, servicer = fresh
    with InterpClient(target) as c:
        stream = c.iter_visualize_filter("slow", "conv1", [0, 1])
        events = [next(stream) for _ in range(3)]
        assert all(isinstance(e, ProgressEvent) for e in events)
        assert [e.step for e in events] == [1, 2, 3]
        assert servicer.stream_started.is_set()
        stream.close()
        assert servicer.stream_cancelled.wait(5), "server never saw the cancellation"
        assert servicer.loop_stopped.wait(5), "server loop kept running after cancellation"
        with pytest.raises(StopIteration):
            next(stream)


def test_dropping_the_iterator_cancels_the_call(fresh):
    target, servicer = fresh
    with InterpClient(target) as c:
        stream = c.iter_dream(PNG, model="slow", layers=["relu1"])
        next(stream)
        del stream
        gc.collect()
        assert servicer.stream_cancelled.wait(5)
        assert servicer.loop_stopped.wait(5)


def test_breaking_out_of_a_with_block_cancels_the_call(fresh):
    target, servicer = fresh
    with InterpClient(target) as c:
        with c.iter_interpolate(PNG, model="slow", positive="a", negative="b") as stream:
            for event in stream:
                if event.step == 2:
                    break
        assert servicer.stream_cancelled.wait(5)
        assert servicer.loop_stopped.wait(5)


def test_raising_from_the_progress_callback_cancels_the_call(fresh):
    target, servicer = fresh

    class Stop(Exception):
        pass

    def progress(event: ProgressEvent) -> None:
        if event.step >= 3:
            raise Stop

    with InterpClient(target) as c, pytest.raises(Stop):
        c.visualize_filter("slow", "conv1", 0, progress=progress)
    assert servicer.stream_cancelled.wait(5)
    assert servicer.loop_stopped.wait(5)


def test_stream_deadline_stops_the_server_loop(fresh):
    target, servicer = fresh
    with InterpClient(target, stream_timeout=0.3) as c, pytest.raises(errors.DeadlineExceeded):
        for _ in c.iter_visualize_filter("slow", "conv1", [0]):
            pass
    assert servicer.loop_stopped.wait(5)


def test_a_completed_stream_is_not_cancelled(fresh):
    target, servicer = fresh
    with InterpClient(target) as c:
        items = list(c.iter_visualize_filter("m", "conv1", [0]))
    assert [type(i).__name__ for i in items] == ["ProgressEvent", "ProgressEvent", "FilterVisualization"]
    assert servicer.stream_completed_ok.wait(5)


def test_stream_without_result_is_an_internal_error(shared):
    target, _ = shared
    with InterpClient(target) as c, pytest.raises(errors.Internal, match="without a final result"):
        c.dream(PNG, model="noresult", layers="relu1")


def test_dns_target_uses_round_robin_and_works(shared):
    target, _ = shared
    options = dict(channel_options(f"dns:///{target}"))
    assert options["grpc.lb_policy_name"] == "round_robin"
    assert "grpc.lb_policy_name" not in dict(channel_options(target))
    with InterpClient(f"dns:///{target}") as c:
        assert [m.name for m in c.list_models()] == ["vgg16", "lenet"]


def test_tls_with_ca_file_and_token(tmp_path):
    key, cert = self_signed_certificate(tmp_path)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server, port, servicer = start_fake(FakeInterp(), credentials)
    try:
        with InterpClient(f"localhost:{port}", ca_file=cert, token="tok") as c:
            assert c.tls
            assert len(c.list_models()) == 2
            assert servicer.metadata[-1]["authorization"] == "Bearer tok"
        with InterpClient(f"127.0.0.1:{port}", ca_file=str(cert), server_name="localhost") as c:
            assert c.server_info().api_version == "interp.v1"
        with InterpClient(f"127.0.0.1:{port}", timeout=5) as c, pytest.raises(errors.Unavailable):
            c.list_models()  # plaintext client against a TLS server
    finally:
        server.stop(grace=None)


def test_server_name_without_tls_is_refused():
    with pytest.raises(ValueError, match="TLS"):
        InterpClient("127.0.0.1:1", server_name="localhost")


@pytest.mark.parametrize(
    ("said", "meaning"),
    [
        ("CLIENT: Sent message larger than max (75000031 vs. 67108864)", "the request is over this client's"),
        ("SERVER: Received message larger than max (480028 vs. 100000)", "the request is over the server's"),
        ("SERVER: Sent message larger than max (200000 vs. 50000)", "the answer is over the server's"),
        ("Stream removed (CLIENT: Received message larger than max (200000 vs. 50000))", "the answer is over this"),
    ],
)
def test_a_message_over_a_cap_says_whose_and_which(said, meaning) -> None:
    from client.calls import _over_a_cap

    text = _over_a_cap(said)
    assert text.startswith(meaning), text
    assert ("encoded files" in text) == text.startswith("the request")  # advice about images only for a request
