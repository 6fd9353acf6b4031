from __future__ import annotations

from pathlib import Path

import pytest

from server.app import grpc_options
from server.config import (
    MIN_TOKEN_LENGTH,
    OPTIONS,
    ServerConfig,
    auth_tokens,
    build_parser,
    is_loopback,
    load_config,
    read_tokens_file,
)


def test_defaults() -> None:
    config = load_config([], environ={})
    assert config.port == 50051 and config.random_weights is False and config.models == ()


def test_flag_beats_env_beats_default() -> None:
    env = {
        "INTERP_PORT": "6000",
        "INTERP_RANDOM_WEIGHTS": "1",
        "INTERP_MAX_STEPS": "99",
        "INTERP_MODELS": "lenet, vgg16",
    }
    config = load_config(["--port", "7000"], environ=env)
    assert config.port == 7000
    assert config.random_weights is True
    assert config.limits.max_steps == 99
    assert config.models == ("lenet", "vgg16")


def test_weights_pairs_from_flags_and_env() -> None:
    config = load_config(["--weights", "vgg16=/a/b.pth", "--weights", "alexnet=/c.pth"], environ={})
    assert config.weights == {"vgg16": Path("/a/b.pth"), "alexnet": Path("/c.pth")}
    config = load_config([], environ={"INTERP_WEIGHTS": "vgg16=/x.pth"})
    assert config.weights == {"vgg16": Path("/x.pth")}


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--weights", "vgg16"], {}),
        ([], {"INTERP_RANDOM_WEIGHTS": "maybe"}),
        (["--port", "70000"], {}),
        ([], {"INTERP_MAX_STEPS": "0"}),
    ],
)
def test_bad_values_exit_with_a_message(argv, env) -> None:
    with pytest.raises(SystemExit):
        load_config(argv, environ=env)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--grace", "-5"], {}, "--grace must be a number of seconds >= 0, got -5.0"),
        ([], {"INTERP_GRACE": "-1"}, "--grace must be a number of seconds >= 0"),
        (["--grace", "nan"], {}, "--grace must be a number of seconds >= 0"),
        ([], {"INTERP_DRAIN_DELAY": "-2"}, "--drain-delay must be a number of seconds >= 0, got -2.0"),
        (["--log-level", "LOUD"], {}, "--log-level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
        (["--auth-tokens-file", "DIR"], {}, "not a file (a directory): "),
    ],
)
def test_bad_values_are_named_in_one_line(argv, env, message, tmp_path) -> None:
    """What the operator tryout found starting, or tracebacking: each is now refused with its reason."""
    argv = [str(tmp_path) if arg == "DIR" else arg for arg in argv]
    with pytest.raises(SystemExit) as info:
        load_config(argv, environ=env)
    assert message in str(info.value)
    assert load_config(["--log-level", "debug", "--grace", "0"], environ={}).grace_s == 0  # any case; 0: no drain


# -- authentication fails closed ---------------------------------------------------------------------

LONG = "a" * MIN_TOKEN_LENGTH


@pytest.mark.parametrize("value", [" , ", ",", " ", ",,,"])
def test_a_set_but_empty_tokens_variable_is_an_error_not_no_auth(value: str) -> None:
    """Reproduced on main: INTERP_AUTH_TOKENS=" , " started a server that served without auth."""
    with pytest.raises(SystemExit, match="INTERP_AUTH_TOKENS.*holds no token"):
        load_config(["--host", "127.0.0.1"], environ={"INTERP_AUTH_TOKENS": value})


def test_an_empty_tokens_flag_is_an_error(capsys) -> None:
    with pytest.raises(SystemExit):
        load_config(["--auth-tokens", " , "], environ={})
    assert "holds no token" in capsys.readouterr().err


def test_an_unset_tokens_variable_means_no_tokens() -> None:
    """Compose passes ``${INTERP_AUTH_TOKENS:-}``: an empty variable is unset, like every INTERP_* one."""
    assert load_config([], environ={"INTERP_AUTH_TOKENS": ""}).auth_tokens == ()


def test_short_tokens_are_refused_at_start_without_echoing_them(tmp_path) -> None:
    config = load_config(["--host", "127.0.0.1", "--auth-tokens", f"{LONG},short-secret"], environ={})
    with pytest.raises(SystemExit, match=r"number 2 are shorter than 16") as info:
        auth_tokens(config)
    assert "short-secret" not in str(info.value)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{LONG}\n{'b' * (MIN_TOKEN_LENGTH - 1)}\n")
    with pytest.raises(SystemExit, match="shorter than"):
        auth_tokens(ServerConfig(host="127.0.0.1", auth_tokens_file=tokens))
    assert auth_tokens(ServerConfig(host="127.0.0.1", auth_tokens=(LONG,))) == (LONG,)


def test_only_lines_starting_with_a_hash_are_comments(tmp_path) -> None:
    """``abc#secret`` used to become ``abc``: a token with a '#' is a token."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# comment\n  # indented comment\n{LONG}#secret\n\n  {LONG}-padded  \n")
    assert read_tokens_file(tokens) == [f"{LONG}#secret", f"{LONG}-padded"]
    assert auth_tokens(ServerConfig(host="127.0.0.1", auth_tokens_file=tokens)) == (f"{LONG}#secret", f"{LONG}-padded")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "interp.example.com", "127.0.0.1.example.com"])
def test_no_auth_on_a_non_loopback_address_needs_the_explicit_flag(host: str) -> None:
    with pytest.raises(SystemExit, match="--allow-unauthenticated"):
        auth_tokens(load_config(["--host", host], environ={}))
    allowed = load_config(["--host", host, "--allow-unauthenticated"], environ={})
    assert allowed.allow_unauthenticated is True and auth_tokens(allowed) == ()
    by_env = load_config(["--host", host], environ={"INTERP_ALLOW_UNAUTHENTICATED": "1"})
    assert auth_tokens(by_env) == ()
    assert auth_tokens(load_config(["--host", host, "--auth-tokens", LONG], environ={})) == (LONG,)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_no_auth_on_loopback_needs_no_flag(host: str) -> None:
    assert is_loopback(host)
    assert auth_tokens(load_config(["--host", host], environ={})) == ()


def test_client_certificates_count_as_authentication(tmp_path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    argv = ["--host", "0.0.0.0", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    config = load_config([*argv, "--tls-client-ca", str(tmp_path / "ca.pem")], environ={})
    assert auth_tokens(config) == ()  # no SystemExit: every client must present a certificate
    with pytest.raises(SystemExit, match="--allow-unauthenticated"):
        auth_tokens(load_config(argv, environ={}))  # TLS alone authenticates the server, not the client


def test_client_ca_needs_tls(tmp_path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(SystemExit, match="needs TLS"):
        load_config(["--tls-client-ca", str(tmp_path / "ca.pem")], environ={})


def test_metrics_bind_loopback_unless_configured() -> None:
    assert load_config([], environ={}).metrics_host == "127.0.0.1"
    assert load_config([], environ={"INTERP_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"


def test_connection_limits_are_options() -> None:
    env = {"INTERP_MAX_CONCURRENT_RPCS": "10", "INTERP_KEEPALIVE_TIME": "30", "INTERP_MAX_CONNECTION_AGE": "120"}
    config = load_config(["--max-connection-age-grace", "5"], environ=env)
    assert config.limits.max_concurrent_rpcs == 10 and config.limits.keepalive_time_s == 30
    assert config.limits.max_connection_age_s == 120 and config.limits.max_connection_age_grace_s == 5
    options = dict(grpc_options(config.limits))
    assert options["grpc.keepalive_time_ms"] == 30_000 and options["grpc.max_connection_age_ms"] == 120_000
    assert options["grpc.max_connection_age_grace_ms"] == 5000
    assert options["grpc.keepalive_timeout_ms"] == 20_000 and options["grpc.max_connection_idle_ms"] == 900_000
    with pytest.raises(SystemExit):
        load_config(["--max-concurrent-rpcs", "0"], environ={})


def test_a_negative_torch_thread_count_is_refused_in_one_line() -> None:
    """torch's own refusal came later, as a traceback from create_server."""
    for argv, environ in ((["--torch-threads", "-3"], {}), ([], {"INTERP_TORCH_THREADS": "-1"})):
        with pytest.raises(SystemExit, match="--torch-threads must be >= 0"):
            load_config(argv, environ=environ)


def test_data_dir_is_an_option() -> None:
    assert load_config(["--data-dir", "/srv/fashion"], environ={}).data_dir == Path("/srv/fashion")
    assert load_config([], environ={"INTERP_DATA_DIR": "/srv/f"}).data_dir == Path("/srv/f")
    assert load_config([], environ={"INTERP_DATA_DIR": ""}).data_dir is None  # compose sets unused ones to ""


def test_the_default_address_is_loopback_so_the_default_server_starts() -> None:
    config = load_config([], environ={})
    assert config.host == "127.0.0.1" and auth_tokens(config) == ()


def test_help_lists_every_flag_and_variable() -> None:
    text = build_parser().format_help()  # a bare % in a help string once made --help crash
    for flag, env, *_rest in OPTIONS:
        assert flag in text and env in text, flag
    for flag in ("--weights", "--dataset", "--weights-sha256", "--no-download", "INTERP_WEIGHTS_SHA256"):
        assert flag in text, flag
    assert "25% of the cgroup" in text.replace("\n", " ").replace("  ", " ")

