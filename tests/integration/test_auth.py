"""Token auth on a TLS server: every RPC (unary, streaming, reflection) refuses a missing or wrong
token with UNAUTHENTICATED, health stays open, tokens come from a file, the comparison is
constant-time, the CLI passes its token over TLS, and reflection can be switched off.

(The SDK over TLS with and without the token is in test_sdk.py.)
"""

from __future__ import annotations

import hmac
import os
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
from server.config import load_config
from server.interceptors import AuthInterceptor
from tests.conftest import MutualTLS, mutual_tls_certificates, require, self_signed_certificate
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
INTERP = Path(sys.executable).parent / "interp"
TOKENS_FILE = """\
# interp tokens, one a line; only lines starting with # are comments
alpha-7f3e9c4d11a8e2

  beta-0b1d52#c7a9e3f8
# gamma-retired-6d2f1e88a
"""
VALID = ("alpha-7f3e9c4d11a8e2", "beta-0b1d52#c7a9e3f8")
METHODS = list(pb.DESCRIPTOR.services_by_name["Interp"].methods)


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A lenet server with TLS (test-made certificate) and tokens from a file only."""
    directory = tmp_path_factory.mktemp("auth")
    key, cert = self_signed_certificate(directory)
    tokens = directory / "tokens"
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
    "retired token": (("authorization", "Bearer gamma-retired-6d2f1e88a"),),
    "token cut at the #": (("authorization", "Bearer beta-0b1d52"),),
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


def test_a_refusal_has_a_request_id_in_its_status_and_the_log_without_the_token(channel, caplog) -> None:
    """An operator sees each refused call in the log (method, peer, request id), as every other
    error; the token presented is never written."""
    import re

    from grpc_status import rpc_status

    wrong = "wrong-token-7d1e0c9a2b4f"
    caplog.set_level("INFO", logger="interp.server")
    with pytest.raises(grpc.RpcError) as info:
        call(channel, pb.DESCRIPTOR.services_by_name["Interp"].methods_by_name["ListModels"],
             (("authorization", f"Bearer {wrong}"),))  # fmt: skip
    found = re.search(r"\(request id ([0-9a-f]{12})\)$", info.value.details())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and found, info.value.details()
    assert rpc_status.from_call(info.value) is not None  # the rich status, as every other error
    lines = [r.getMessage() for r in caplog.records if found.group(1) in r.getMessage()]
    assert len(lines) == 1 and "ListModels -> UNAUTHENTICATED" in lines[0] and "from ipv" in lines[0], lines
    assert all(wrong not in r.getMessage() for r in caplog.records)


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
    tokens = ["first-token-0123456", "second-token-012345", "third-token-0123456"]
    interceptor = AuthInterceptor(tokens)
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, allowed in ((tokens[0], True), (tokens[2], True), ("nope", False), ("", False)):
        compared.clear()
        metadata = (("authorization", f"Bearer {presented}".encode()),)  # bytes values are accepted too
        assert interceptor._allowed(metadata) is allowed
        assert compared == [t.encode() for t in tokens]  # no early exit on a match or a length mismatch
    with pytest.raises(ValueError):
        AuthInterceptor(["", ""])  # auth with no usable token would lock everyone out silently


# -- the CLI over TLS with a token ----------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
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


# -- attacks on the configuration: each must stop the server before it serves ------------------------------

SERVER_SCRIPT = Path(sys.executable).parent / "interp-server"
GOOD_TOKEN = "good-token-5e0c9a7b"


SHORT_LINE = "abc#secret\n"  # once read as the token "abc"; now the token "abc#secret": too short
ATTACKS = {
    "INTERP_AUTH_TOKENS=' , '": (["--host", "127.0.0.1"], {"INTERP_AUTH_TOKENS": " , "}, "holds no token"),
    "INTERP_AUTH_TOKENS=','": (["--host", "127.0.0.1"], {"INTERP_AUTH_TOKENS": ","}, "holds no token"),
    "a short token": (["--host", "127.0.0.1", "--auth-tokens", "hunter2"], {}, "shorter than 16"),
    "'abc#secret' in the tokens file": (["--host", "127.0.0.1", "--auth-tokens-file", "FILE"], {}, "shorter than 16"),
    "no auth on 0.0.0.0": (["--host", "0.0.0.0"], {}, "--allow-unauthenticated"),
    "no auth on 0.0.0.0, empty env": (["--host", "0.0.0.0"], {"INTERP_AUTH_TOKENS": ""}, "without authentication"),
    "no auth on ::": (["--host", "::"], {}, "without authentication"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_configurations_that_would_serve_without_auth_are_refused(attack: str, tmp_path) -> None:
    """What ``interp-server`` does with these flags and variables: load_config, then create_server."""
    argv, env, reason = ATTACKS[attack]
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(SHORT_LINE)
    argv = [str(tokens_file) if arg == "FILE" else arg for arg in argv]
    with pytest.raises(SystemExit) as info:
        create_server(load_config(["--port", "0", "--models", "lenet", *argv], environ=env))
    assert reason in str(info.value) and "hunter2" not in str(info.value)


def test_the_reproduction_from_main_stops_the_process() -> None:
    """On main, INTERP_AUTH_TOKENS=" , " started a server that answered an unauthenticated Classify."""
    command = [str(SERVER_SCRIPT)] if SERVER_SCRIPT.exists() else [sys.executable, "-m", "server.app"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}
    done = subprocess.run(
        [*command, "--host", "127.0.0.1", "--port", "0", "--models", "lenet"], cwd=ROOT,
        env={**base, "INTERP_AUTH_TOKENS": " , "}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "INTERP_AUTH_TOKENS" in done.stderr and "holds no token" in done.stderr
    assert "listening" not in done.stderr + done.stdout


def test_auth_is_checked_before_models_load(tmp_path) -> None:
    """create_server refuses at once, before it would load (or log) any model."""
    with pytest.raises(SystemExit, match="without authentication"):
        create_server(test_config(host="0.0.0.0", models=("no-such-model",)))


def test_tokens_without_tls_log_a_warning(caplog) -> None:
    with caplog.at_level("WARNING", logger="interp.server"):
        srv, _port = create_server(test_config(models=("lenet",), auth_tokens=(GOOD_TOKEN,)))
    srv.stop(None)
    assert any("plaintext" in r.getMessage() for r in caplog.records)
    assert all(GOOD_TOKEN not in r.getMessage() for r in caplog.records)


# -- unauthenticated calls are refused before the request is parsed -----------------------------------------


@pytest.fixture(scope="module")
def plain_with_token() -> Iterator[str]:
    srv, port = create_server(test_config(models=("lenet",), auth_tokens=(GOOD_TOKEN,)))
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(None)


def test_an_unauthenticated_request_is_refused_unparsed(plain_with_token) -> None:
    """32 MB that are not a protobuf: parsing them fails with INVALID_ARGUMENT ("not a valid
    interp.v1.ClassifyRequest"); refused on its metadata alone, the call gets UNAUTHENTICATED. With a token the same
    bytes do reach the parser: so the first answer is not a coincidence."""
    garbage = b"\xff" * (32 << 20)  # field 31, wire type 7: invalid from the first byte
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(plain_with_token, options=options) as channel:
        classify = channel.unary_unary("/interp.v1.Interp/Classify")  # raw bytes in and out
        with pytest.raises(grpc.RpcError) as refused:
            classify(garbage, timeout=60)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as parsed:
            classify(garbage, timeout=60, metadata=(("authorization", f"Bearer {GOOD_TOKEN}"),))
        assert parsed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid interp.v1.ClassifyRequest message" in parsed.value.details()
        from protos import interp_pb2_grpc

        models = interp_pb2_grpc.InterpStub(channel).ListModels(
            pb.ListModelsRequest(), metadata=(("authorization", f"Bearer {GOOD_TOKEN}"),), timeout=10
        )
        assert [m.name for m in models.models] == ["lenet"]  # and the server serves on


def test_the_refusing_handler_never_reads_its_request() -> None:
    """The handler grpc gets for a refused call has no deserializer and never iterates the request."""

    def never(_request: bytes) -> object:
        raise AssertionError("the request was deserialized")

    handler = grpc.unary_unary_rpc_method_handler(lambda r, c: r, request_deserializer=never)

    class Details:
        method = "/interp.v1.Interp/Classify"
        invocation_metadata = (("authorization", "Bearer wrong"),)

    class Context:
        def abort_with_status(self, status: grpc.Status) -> None:
            raise RuntimeError(status.code)

        def peer(self) -> str:
            return "ipv4:127.0.0.1:40000"

    refused = AuthInterceptor([GOOD_TOKEN]).intercept_service(lambda _d: handler, Details())
    assert refused.request_streaming and refused.request_deserializer is None

    read: list[bytes] = []

    def requests() -> Iterator[bytes]:
        read.append(b"x")
        yield b"x"

    with pytest.raises(RuntimeError) as info:
        list(refused.stream_stream(requests(), Context()))
    assert info.value.args[0] == grpc.StatusCode.UNAUTHENTICATED and read == []


# -- mutual TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mutual(tmp_path_factory) -> Iterator[tuple[str, MutualTLS, object]]:
    """A lenet server that requires client certificates from its CA; no tokens."""
    certs = mutual_tls_certificates(tmp_path_factory.mktemp("mtls"))
    config = test_config(
        models=("lenet",), tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca
    )
    srv, port = create_server(config)
    srv.start()
    yield f"localhost:{port}", certs, srv
    srv.stop(None)


def test_mutual_tls_refuses_clients_without_a_certificate_from_its_ca(mutual) -> None:
    from client import InterpClient, errors

    target, certs, srv = mutual
    for label, cert_key in (("no client certificate", {}),
                            ("a self-signed client certificate", {"cert_file": certs.stranger_cert,
                                                                  "key_file": certs.stranger_key})):  # fmt: skip
        with InterpClient(target, ca_file=certs.ca, timeout=10, **cert_key) as client:
            with pytest.raises(errors.Unavailable):
                client.list_models()
        assert srv.metrics.busy() == 0, label  # refused in the handshake: no RPC ever started
    with InterpClient(target, ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key) as client:
        assert [m.name for m in client.list_models()] == ["lenet"]
        assert client.server_info().tls
    assert sample(srv, "interp_requests_total", method="ListModels", code="OK") == 1  # only the certified call


def test_the_cli_and_the_explorer_present_a_client_certificate(mutual) -> None:
    """The CLI and interp-web had no way to present one, so neither could use a mutual-TLS server;
    the CLI's hint on the refused handshake now names the options too."""
    target, certs, _srv = mutual
    done = run_cli("--server", target, "--ca-file", str(certs.ca), "models")
    assert done.returncode == 24 and "--client-cert/--client-key" in done.stderr, done.stderr
    done = run_cli("--server", target, "--ca-file", str(certs.ca), "models",
                   env={"INTERP_CLIENT_CERT": str(certs.client_cert), "INTERP_CLIENT_KEY": str(certs.client_key)})
    assert done.returncode == 0 and "lenet" in done.stdout, done.stderr
    done = run_cli("--server", target, "--client-cert", str(certs.client_cert), "models")
    assert done.returncode == 2 and "--client-cert and --client-key go together" in done.stderr

    from web.cli import parser, settings_from
    from web.explorer import Explorer

    args = ["--server", target, "--ca-file", str(certs.ca), "--client-cert", str(certs.client_cert),
            "--client-key", str(certs.client_key)]  # fmt: skip
    explorer = Explorer(settings_from(parser().parse_args(args)))
    assert [m.name for m in explorer.client.list_models()] == ["lenet"]
    explorer.client.close()
    with pytest.raises(SystemExit, match="--client-cert and --client-key go together"):
        settings_from(parser().parse_args(["--client-cert", str(certs.client_cert)]))


def test_mutual_tls_counts_as_authentication_on_any_address(tmp_path) -> None:
    certs = mutual_tls_certificates(tmp_path)
    config = test_config(host="0.0.0.0", models=("lenet",), tls_cert=certs.server_cert, tls_key=certs.server_key,
                         tls_client_ca=certs.ca)  # fmt: skip
    srv, port = create_server(config)  # no --allow-unauthenticated needed
    srv.stop(None)
    assert port > 0


def sample(srv, name: str, **labels: str) -> float:
    return srv.metrics.registry.get_sample_value(name, labels) or 0.0


# -- a port, certificate or metrics port the server cannot use: a one-line refusal, never a share --


def test_a_port_another_server_listens_on_is_refused_not_shared(secure) -> None:
    """With gRPC's default SO_REUSEPORT a second server bound the port of a running one and took
    part of its connections (an open server beside a TLS + token one); now it stops with the reason."""
    address, _cert = secure
    port = int(address.rsplit(":", 1)[1])
    with pytest.raises(SystemExit, match=rf"cannot listen on 127\.0\.0\.1:{port}: the port is in use"):
        create_server(test_config(models=("lenet",), port=port))


def test_a_tls_key_that_does_not_match_its_certificate_is_named(tmp_path) -> None:
    """gRPC only said "Failed to bind to address" (a traceback); the refusal names the pair and why,
    before any model loads."""
    _key, cert = self_signed_certificate(tmp_path, "a")
    other_key, _other_cert = self_signed_certificate(tmp_path, "b")
    with pytest.raises(SystemExit, match="the key does not match the certificate"):
        create_server(test_config(models=("no-such-model",), tls_cert=cert, tls_key=other_key))
    with pytest.raises(SystemExit, match="not a PEM certificate and unencrypted PEM key"):
        create_server(test_config(models=("no-such-model",), tls_cert=cert, tls_key=cert))  # not a key at all


def test_a_metrics_port_in_use_is_refused_in_one_line(secure) -> None:
    address, _cert = secure
    port = int(address.rsplit(":", 1)[1])  # the secure server's gRPC port: taken
    with pytest.raises(SystemExit, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: Address already in use"):
        create_server(test_config(models=("lenet",), metrics_port=port))
