"""Token auth on a TLS server: every RPC (unary, streaming, reflection) refuses a missing or wrong
token with UNAUTHENTICATED, health stays open, tokens come from a file, the comparison is
constant-time, the CLI passes its token over TLS, and reflection can be switched off.

(The SDK over TLS with and without the token is in test_sdk.py.)
"""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos import interp_pb2 as pb
from server.app import create_server
from server.interceptors import AuthInterceptor
from tests.integration.conftest import test_config

ROOT = Path(__file__).resolve().parents[2]
INTERP = Path(sys.executable).parent / "interp"
TOKENS_FILE = """\
# interp tokens, one a line
alpha-7f3e9c

beta-0b1d52   # the CI runner
# gamma-retired
"""
VALID = ("alpha-7f3e9c", "beta-0b1d52")
METHODS = list(pb.DESCRIPTOR.services_by_name["Interp"].methods)


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A lenet server with TLS (test-made certificate) and tokens from a file only."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    directory = tmp_path_factory.mktemp("auth")
    key, cert, tokens = directory / "key.pem", directory / "cert.pem", directory / "tokens"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tokens.write_text(TOKENS_FILE)
    srv, port = create_server(test_config(models=("lenet",), tls_cert=cert, tls_key=key, auth_tokens_file=tokens))
    srv.start()
    yield f"localhost:{port}", cert
    srv.stop(None)


@pytest.fixture(scope="module")
def channel(secure) -> Iterator[grpc.Channel]:
    target, cert = secure
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(target, credentials) as ch:
        yield ch


def call(channel: grpc.Channel, method, metadata) -> None:
    """Call ``method`` with an empty request; consume a stream fully."""
    request_cls = getattr(pb, method.input_type.name)
    response_cls = getattr(pb, method.output_type.name)
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        stream = channel.unary_stream(path, request_serializer=request_cls.SerializeToString,
                                      response_deserializer=response_cls.FromString)  # fmt: skip
        list(stream(request_cls(), metadata=metadata, timeout=10))
    else:
        unary = channel.unary_unary(path, request_serializer=request_cls.SerializeToString,
                                    response_deserializer=response_cls.FromString)  # fmt: skip
        unary(request_cls(), metadata=metadata, timeout=10)


BAD_CREDENTIALS = {
    "none": None,
    "wrong token": (("authorization", "Bearer not-a-token"),),
    "empty bearer": (("authorization", "Bearer "),),
    "no Bearer scheme": (("authorization", VALID[0]),),
    "retired token": (("authorization", "Bearer gamma-retired"),),
    "token with a suffix": (("authorization", f"Bearer {VALID[0]}x"),),
    "token prefix": (("authorization", f"Bearer {VALID[0][:-1]}"),),
    "other header": (("x-token", VALID[0]),),
}


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_every_rpc_refuses_missing_and_wrong_tokens(channel, method) -> None:
    for label, metadata in BAD_CREDENTIALS.items():
        with pytest.raises(grpc.RpcError) as info:
            call(channel, method, metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, label
        assert "Bearer <token>" in info.value.details()


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_every_rpc_gets_past_auth_with_a_token_from_the_file(channel, method) -> None:
    for token in VALID:
        try:
            call(channel, method, (("authorization", f"Bearer {token}"),))
        except grpc.RpcError as error:  # empty requests are refused, but by the servicer, not auth
            assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), error.details()


def _reflect(channel: grpc.Channel, metadata) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = list(stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10))
    return {s.name for s in replies[0].list_services_response.service}


def test_reflection_needs_a_token_too(channel) -> None:
    for metadata in (None, (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.RpcError) as info:
            _reflect(channel, metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "interp.v1.Interp" in _reflect(channel, (("authorization", f"Bearer {VALID[1]}"),))


def test_health_stays_open(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "interp.v1.Interp"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == 1  # SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service="interp.v1.Interp"), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_comparison_is_constant_time_over_every_token(monkeypatch) -> None:
    """hmac.compare_digest against every configured token, whether or not (and where) one matches."""
    tokens = ["first-token", "second-token", "third-token"]
    interceptor = AuthInterceptor(tokens)
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, allowed in (("first-token", True), ("third-token", True), ("nope", False), ("", False)):
        compared.clear()
        metadata = (("authorization", f"Bearer {presented}".encode()),)  # bytes values are accepted too
        assert interceptor._allowed(metadata) is allowed
        assert compared == [t.encode() for t in tokens]  # no early exit on a match or a length mismatch
    with pytest.raises(ValueError):
        AuthInterceptor(["", ""])  # auth with no usable token would lock everyone out silently


# -- the CLI over TLS with a token ----------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not INTERP.exists():
        pytest.skip(f"console script not installed at {INTERP} (pip install -e .)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}
    return subprocess.run(
        [str(INTERP), *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env={**base, **(env or {})}
    )


def test_cli_needs_the_token_and_passes_it_over_tls(secure) -> None:
    target, cert = secure
    refused = run_cli("--server", target, "--ca-file", str(cert), "models")
    assert refused.returncode == 10 + grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "UNAUTHENTICATED" in refused.stderr and "--token" in refused.stderr
    wrong = run_cli("--server", target, "--ca-file", str(cert), "--token", "nope", "models")
    assert wrong.returncode == refused.returncode
    served = run_cli("--server", target, "--ca-file", str(cert), "--token", VALID[0], "models")
    assert served.returncode == 0, served.stderr
    assert served.stdout.splitlines()[1].split()[0] == "lenet"
    by_env = run_cli("info", "--json", env={"INTERP_SERVER": target, "INTERP_CA_FILE": str(cert),
                                            "INTERP_TOKEN": VALID[1]})  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert '"auth_required": true' in by_env.stdout and '"tls": true' in by_env.stdout


# -- reflection off ----------------------------------------------------------------------------------------


def test_reflection_can_be_switched_off() -> None:
    srv, port = create_server(test_config(models=("lenet",), reflection=False))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as info:
                _reflect(ch, None)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            from protos import interp_pb2_grpc

            assert interp_pb2_grpc.InterpStub(ch).ListModels(pb.ListModelsRequest(), timeout=10).models
    finally:
        srv.stop(None)


def test_a_tokens_file_without_tokens_fails_closed(tmp_path) -> None:
    """An empty secret (e.g. not mounted yet) must stop the server, not switch auth off."""
    empty = tmp_path / "tokens"
    empty.write_text("# tokens go here\n\n   # none yet\n")
    with pytest.raises(SystemExit, match="holds no token"):
        create_server(test_config(models=("lenet",), auth_tokens_file=empty))
