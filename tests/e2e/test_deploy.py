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
from server.config import ServerConfig, auth_tokens, env_vars, load_config
from tests.conftest import mutual_tls_certificates, require, self_signed_certificate
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HEALTHCHECK = ROOT / "server" / "healthcheck.py"
WEB_CLI = ROOT / "web" / "cli.py"
ENV_KEY = re.compile(r"^\s+(INTERP_[A-Z0-9_]+):\s*(.*?)\s*(?:#.*)?$")
INTERPOLATION = re.compile(r"\$\{[A-Z0-9_]+:?-([^}]*)\}")


def compose_environment() -> dict[str, str]:
    """INTERP_* keys of the shared environment block (``x-interp-env``), with their values
    (``${VAR:-default}`` -> default). Services may override some (see ``resolved_services``)."""
    values = {}
    text = COMPOSE.read_text()
    block = text[text.index("x-interp-env:") : text.index("\nservices:")]
    for line in block.splitlines():
        match = ENV_KEY.match(line)
        if match:
            value = match.group(2).strip().strip("\"'")
            values[match.group(1)] = INTERPOLATION.sub(lambda m: m.group(1), value)
    return values


def compose_keys() -> set[str]:
    """Every INTERP_* key set anywhere in the compose file (the shared block and the services)."""
    return {match.group(1) for line in COMPOSE.read_text().splitlines() if (match := ENV_KEY.match(line))}


def healthcheck_variables() -> set[str]:
    """INTERP_* variables the healthcheck command (run by the compose healthcheck) reads."""
    return set(re.findall(r"environ\.get\(\s*[\"'](INTERP_[A-Z0-9_]+)", HEALTHCHECK.read_text()))


def web_variables() -> set[str]:
    """INTERP_* variables interp-web (the compose ``web`` service) reads."""
    return set(re.findall(r"[\"'](INTERP_[A-Z0-9_]+)[\"']", WEB_CLI.read_text()))


def clean_env() -> dict[str, str]:
    """This process's environment without INTERP_* variables, which compose would interpolate."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    require(binary, "the docker-compose binary is not installed (.ci/run installs Debian's docker-compose)")
    return str(binary)


def test_compose_file_is_valid(docker_compose) -> None:
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run(
            [docker_compose, "-f", str(COMPOSE), *profile, "config", "-q"],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def resolved_services(docker_compose: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    """Per service of ``docker-compose config`` (every profile): its environment and its ports.

    A small reader of the resolved YAML docker-compose prints (two-space indents, ``KEY: value``
    environment entries, one port a line), so the test needs no YAML library.
    """
    done = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "--profile", "gpu", "--profile", "local-unauthenticated",
         "--profile", "explorer", "config"],
        cwd=ROOT, env={**clean_env(), **(env or {})}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    services: dict[str, dict[str, object]] = {}
    section, current, block = "", None, ""
    for line in done.stdout.splitlines():
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 0:
            section = text.rstrip(":")
        elif section == "services" and indent == 2:
            current = services.setdefault(text.rstrip(":"), {"environment": {}, "ports": []})
        elif current is not None and block == "ports" and indent == 4 and text.startswith("- "):
            current["ports"].append(text[2:])  # type: ignore[union-attr]
        elif current is not None and indent == 4:
            block = text.rstrip(":")
        elif current is not None and block == "environment" and indent == 6:
            key, _, value = text.partition(": ")
            current["environment"][key] = value.strip("'\"")  # type: ignore[index]
    return services


def test_compose_services_and_scaling(docker_compose) -> None:
    services = resolved_services(docker_compose)
    assert {"interp", "interp-gpu", "interp-local-unauthenticated"} <= set(services)
    # --scale needs container ports without a fixed host port, and the healthcheck speaks gRPC health
    assert services["interp"]["ports"] == ["127.0.0.1::50051/tcp", "127.0.0.1::9100/tcp"]
    assert "server.healthcheck" in COMPOSE.read_text()


def test_compose_publishes_on_loopback_unless_told_otherwise(docker_compose) -> None:
    for name, service in resolved_services(docker_compose).items():
        assert service["ports"], name
        for port in service["ports"]:  # type: ignore[union-attr]
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    exposed = resolved_services(docker_compose, {"INTERP_PUBLISH_HOST": "0.0.0.0"})["interp"]
    assert exposed["ports"] == ["0.0.0.0::50051/tcp", "0.0.0.0::9100/tcp"]


def test_compose_default_service_fails_closed_without_tokens(docker_compose) -> None:
    """The default service never serves without auth: no tokens -> it refuses to start."""
    environment = resolved_services(docker_compose)["interp"]["environment"]
    with pytest.raises(SystemExit, match="without authentication"):
        auth_tokens(load_config([], environ=environment))  # type: ignore[arg-type]
    token = "compose-token-8c1d0e5f2a7b"
    environment = resolved_services(docker_compose, {"INTERP_AUTH_TOKENS": token})["interp"]["environment"]
    assert auth_tokens(load_config([], environ=environment)) == (token,)  # type: ignore[arg-type]
    with pytest.raises(SystemExit, match="shorter than 16"):
        short = resolved_services(docker_compose, {"INTERP_AUTH_TOKENS": "letmein"})["interp"]["environment"]
        auth_tokens(load_config([], environ=short))  # type: ignore[arg-type]


def test_only_the_local_profile_serves_without_auth_and_only_on_loopback(docker_compose) -> None:
    services = resolved_services(docker_compose, {"INTERP_PUBLISH_HOST": "0.0.0.0"})
    allowed = [name for name, service in services.items()
               if service["environment"].get("INTERP_ALLOW_UNAUTHENTICATED") not in ("0", "", None)]  # type: ignore[union-attr]  # fmt: skip
    assert allowed == ["interp-local-unauthenticated"]
    local = services["interp-local-unauthenticated"]
    assert local["ports"] == ["127.0.0.1:50051:50051/tcp", "127.0.0.1:9100:9100/tcp"]  # even with PUBLISH_HOST set
    config = load_config([], environ=local["environment"])  # type: ignore[arg-type]
    assert config.allow_unauthenticated and auth_tokens(config) == ()
    profiles = re.search(r"interp-local-unauthenticated:\n(?:.*\n)*?\s+profiles: \[(.*?)\]", COMPOSE.read_text())
    assert profiles and profiles.group(1) == '"local-unauthenticated"'  # never started by a plain `up`


def test_compose_web_service_fails_closed_without_an_access_token(docker_compose, monkeypatch) -> None:
    from web.cli import parser, settings_from

    web = resolved_services(docker_compose)["web"]
    assert web["ports"] == ["127.0.0.1:8080:8080/tcp"]
    for key, value in web["environment"].items():  # type: ignore[union-attr]
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match="refusing to listen on 0.0.0.0"):
        settings_from(parser().parse_args([]))
    monkeypatch.setenv("INTERP_WEB_ACCESS_TOKEN", "compose-web-token-8c1d0e")
    settings = settings_from(parser().parse_args([]))
    assert settings.server == "interp:50051" and settings.access_token == "compose-web-token-8c1d0e"
    # so a plain `docker compose up -d` (the documented recipe exports INTERP_AUTH_TOKENS only) does
    # not start it into a restart loop: it has its own profile, started with its two tokens
    profiles = re.search(r"\n  web:\n(?:.*\n)*?\s+profiles: \[(.*?)\]", COMPOSE.read_text())
    assert profiles and profiles.group(1) == '"explorer"'


def test_every_variable_compose_sets_is_one_the_server_reads() -> None:
    read = set(env_vars()) | healthcheck_variables() | web_variables()
    unknown = sorted(compose_keys() - read)
    assert not unknown, f"docker-compose.yml sets variables nothing reads: {unknown}"


def test_every_variable_the_server_reads_is_documented_in_compose() -> None:
    missing = sorted(set(env_vars()) - set(compose_environment()))
    assert not missing, f"docker-compose.yml does not document: {missing}"


def test_dockerfile_sets_only_variables_the_server_reads() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert set(re.findall(r"\b(INTERP_[A-Z0-9_]+)=", dockerfile)) <= set(env_vars())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerfile_installs_every_runtime_dependency_at_its_pin() -> None:
    """The image installs requirements.lock through the Dockerfile's `grep -vE` filters (tools and
    test-only packages out): every package the base, server and web installs need, and what they
    need in turn, must come through them, or pip pulls it unpinned (scipy did: the server imports it)."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    dockerfile = (ROOT / "Dockerfile").read_text()
    filters = [re.compile(pattern) for pattern in re.findall(r"grep -vE '([^']+)'", dockerfile)]
    assert len(filters) == 2, filters
    kept = {
        _normalized(line.split("==")[0])
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not any(f.search(line) for f in filters)
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in ("server", "web") for r in project["optional-dependencies"][extra]]
    installed_apart = {"torch", "torchvision"}
    needed: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = _normalized(requirement.name)
        if name in needed:
            continue
        needed.add(name)
        if name in installed_apart:  # with what it needs, from the wheel index the build argument names
            continue
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                wanted.append(child)
    missing = sorted(needed - kept - installed_apart)
    assert not missing, f"the Dockerfile's filters drop runtime dependencies: {missing}"


def test_compose_values_parse_into_a_deployable_config() -> None:
    config = load_config([], environ=compose_environment())
    assert config.port == 50051 and config.host == "0.0.0.0"
    assert config.metrics_port == 9100 and config.grace_s == 20
    assert config.allow_unauthenticated is False
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
    key, cert = self_signed_certificate(tmp_path_factory.mktemp("deploy-tls"))
    config = test_config(models=("lenet",), tls_cert=cert, tls_key=key, auth_tokens=("t0k-healthcheck-0123",))
    srv, port = create_server(config)
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


def test_healthcheck_under_mutual_tls_presents_its_client_certificate(tmp_path) -> None:
    certs = mutual_tls_certificates(tmp_path)
    config = test_config(models=("lenet",), tls_cert=certs.server_cert, tls_key=certs.server_key,
                         tls_client_ca=certs.ca)  # fmt: skip
    srv, port = create_server(config)
    srv.start()
    try:
        env = {"INTERP_PORT": str(port), "INTERP_HEALTHCHECK_CA": str(certs.ca)}
        refused = run_healthcheck(env=env)  # no client certificate: the handshake fails
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
        done = run_healthcheck(env={**env, "INTERP_HEALTHCHECK_CERT": str(certs.client_cert),
                                    "INTERP_HEALTHCHECK_KEY": str(certs.client_key)})  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr
    finally:
        srv.stop(None)


def test_healthcheck_over_tls_with_a_certificate_that_does_not_name_localhost(tmp_path) -> None:
    """A certificate for the public name only: the healthcheck (which dials localhost) fails saying
    what to set, and passes with INTERP_HEALTHCHECK_SERVER_NAME (or --server-name)."""
    from tests.conftest import _openssl

    key, cert = tmp_path / "public.key", tmp_path / "public.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=interp.example.org",
             "-addext", "subjectAltName=DNS:interp.example.org", "-keyout", str(key), "-out", str(cert))  # fmt: skip
    srv, port = create_server(test_config(models=("lenet",), tls_cert=cert, tls_key=key))
    srv.start()
    try:
        env = {"INTERP_TLS_CERT": str(cert), "INTERP_PORT": str(port)}
        refused = run_healthcheck(env=env)
        assert refused.returncode == 1 and "INTERP_HEALTHCHECK_SERVER_NAME" in refused.stderr, refused.stderr
        done = run_healthcheck(env={**env, "INTERP_HEALTHCHECK_SERVER_NAME": "interp.example.org"})
        assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr
        flag = run_healthcheck("--server-name", "interp.example.org", env=env)
        assert flag.returncode == 0, flag.stderr
    finally:
        srv.stop(None)


def test_healthcheck_help_and_one_model(server) -> None:
    helped = run_healthcheck("--help")
    assert helped.returncode == 0 and "--service" in helped.stdout and "--server-name" in helped.stdout
    _, target = server
    done = run_healthcheck(target, "--service", "interp.v1.Interp/lenet")
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr


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
