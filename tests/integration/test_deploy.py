"""Deployment files against the code: docker-compose.yml, the Dockerfile, the healthcheck command.

No container engine runs here. `docker-compose config -q` (Debian's docker-compose, installed by
.ci/run) validates the compose file; the tests below check that every INTERP_* variable it sets is
one the server reads and that every variable the server reads is documented there, that its values
parse into a config, that the healthcheck command it runs works (also over TLS), and that no request
message lets a client name a server-side file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from protos import interp_pb2 as pb
from server.app import create_server
from server.config import ServerConfig, env_vars, load_config
from tests.integration.conftest import test_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HEALTHCHECK = ROOT / "server" / "healthcheck.py"
ENV_KEY = re.compile(r"^\s+(INTERP_[A-Z0-9_]+):\s*(.*?)\s*(?:#.*)?$")
INTERPOLATION = re.compile(r"\$\{[A-Z0-9_]+:?-([^}]*)\}")


def compose_environment() -> dict[str, str]:
    """INTERP_* keys the compose file sets, with their values (``${VAR:-default}`` -> default)."""
    values = {}
    for line in COMPOSE.read_text().splitlines():
        match = ENV_KEY.match(line)
        if match:
            value = match.group(2).strip().strip("\"'")
            values[match.group(1)] = INTERPOLATION.sub(lambda m: m.group(1), value)
    return values


def healthcheck_variables() -> set[str]:
    """INTERP_* variables the healthcheck command (run by the compose healthcheck) reads."""
    return set(re.findall(r"environ\.get\(\s*[\"'](INTERP_[A-Z0-9_]+)", HEALTHCHECK.read_text()))


def clean_env() -> dict[str, str]:
    """This process's environment without INTERP_* variables, which compose would interpolate."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("the docker-compose binary is not installed (.ci/run installs Debian's docker-compose)")
    return binary


def test_compose_file_is_valid(docker_compose) -> None:
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run(
            [docker_compose, "-f", str(COMPOSE), *profile, "config", "-q"],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_compose_services_and_scaling(docker_compose) -> None:
    done = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "--profile", "gpu", "config", "--services"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"interp", "interp-gpu"} <= set(done.stdout.split())
    resolved = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    # --scale needs container ports without a fixed host port, and the healthcheck speaks gRPC health
    assert "target: 50051" in resolved and "published: 50051" not in resolved
    assert "server.healthcheck" in resolved


def test_every_variable_compose_sets_is_one_the_server_reads() -> None:
    read = set(env_vars()) | healthcheck_variables()
    unknown = sorted(set(compose_environment()) - read)
    assert not unknown, f"docker-compose.yml sets variables nothing reads: {unknown}"


def test_every_variable_the_server_reads_is_documented_in_compose() -> None:
    missing = sorted(set(env_vars()) - set(compose_environment()))
    assert not missing, f"docker-compose.yml does not document: {missing}"


def test_dockerfile_sets_only_variables_the_server_reads() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert set(re.findall(r"\b(INTERP_[A-Z0-9_]+)=", dockerfile)) <= set(env_vars())


def test_compose_values_parse_into_a_deployable_config() -> None:
    config = load_config([], environ=compose_environment())
    assert config.port == 50051 and config.host == "0.0.0.0"
    assert config.metrics_port == 9100 and config.grace_s == 20
    assert config.random_weights is False and config.download_weights is False  # never serve random weights
    assert config.log_format == "json"
    assert config.models == ("vgg16", "alexnet", "lenet", "lenet-classic")
    # the compose limits are the server's defaults unless deliberately changed
    assert config.limits == ServerConfig().limits


# -- the healthcheck command the compose file runs ----------------------------------------------------


def run_healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.healthcheck", *args],
        cwd=ROOT, env={**clean_env(), **(env or {})}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_healthcheck_command_against_the_real_server(server) -> None:
    srv, target = server
    done = run_healthcheck(target)
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_healthcheck(f"127.0.0.1:{port}")
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    directory = tmp_path_factory.mktemp("deploy-tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    srv, port = create_server(test_config(models=("lenet",), tls_cert=cert, tls_key=key, auth_tokens=("t0k",)))
    srv.start()
    yield port, cert
    srv.stop(None)


def test_healthcheck_over_tls_trusts_the_servers_own_certificate(tls_server) -> None:
    """As in compose with TLS on: INTERP_TLS_CERT and INTERP_PORT set, no argument, no token."""
    port, cert = tls_server
    done = run_healthcheck(env={"INTERP_TLS_CERT": str(cert), "INTERP_PORT": str(port)})
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr
    plaintext = run_healthcheck(f"localhost:{port}")
    assert plaintext.returncode == 1


def test_healthcheck_reports_not_serving_during_shutdown() -> None:
    srv, port = create_server(test_config(models=("lenet",)))
    srv.start()
    try:
        srv.set_serving(False)  # what stop() does first
        done = run_healthcheck(f"127.0.0.1:{port}")
        assert done.returncode == 1 and done.stdout.strip() == "NOT_SERVING"
    finally:
        srv.stop(None)


# -- clients can never name a server-side file ------------------------------------------------------


def request_messages() -> dict[str, Descriptor]:
    """Every message type a client can send: the RPC inputs and everything they contain."""
    seen: dict[str, Descriptor] = {}
    pending = [method.input_type for method in pb.DESCRIPTOR.services_by_name["Interp"].methods]
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen[message.full_name] = message
        pending.extend(f.message_type for f in message.fields if f.type == FieldDescriptor.TYPE_MESSAGE)
    return seen


def test_no_request_field_names_a_server_path() -> None:
    messages = request_messages()
    assert {"interp.v1.ClassifyRequest", "interp.v1.Image", "interp.v1.AttributeSets"} <= set(messages)
    suspicious = [
        f"{name}.{field.name}"
        for name, message in messages.items()
        for field in message.fields
        if re.search(r"path|file|dir|url|uri", field.name, re.IGNORECASE)
    ]
    assert not suspicious, f"request fields that could name a server-side file: {suspicious}"
