from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_config


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
