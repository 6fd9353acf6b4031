"""The `interp` CLI against a scripted servicer (client_fakes.py): tables, --json, files, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client import cli
from tests.support.client_fakes import PNG, start_fake


@pytest.fixture(scope="module")
def fake():
    server, port, servicer = start_fake()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


@pytest.fixture()
def run(fake, capsys, monkeypatch, tmp_path):
    """run(*argv) -> (exit status, stdout, stderr), with INTERP_SERVER pointing at the fake."""
    target, _ = fake
    monkeypatch.setenv("INTERP_SERVER", target)
    monkeypatch.delenv("INTERP_TOKEN", raising=False)
    monkeypatch.delenv("INTERP_CA_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img.png").write_bytes(PNG)

    def _run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return _run


def test_models_table(run):
    status, out, _ = run("models")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PRETRAINED", "INPUT", "CLASSES", "WEIGHTS", "REASON"]
    assert lines[1].split()[:3] == ["vgg16", "READY", "no"]
    assert "random 0123456789ab" in lines[1]
    assert "UNAVAILABLE" in lines[2] and "no weights: run interp-train" in lines[2]
    # a reason of several lines keeps its row one line and says where the rest is
    assert lines[2].endswith("no weights: run interp-train (more: interp layers lenet)") and len(lines) == 3
    # aligned: every column starts at the same offset on every line
    assert lines[1].index("READY") == lines[0].index("STATUS") == lines[2].index("UNAVAILABLE")


def test_a_model_that_never_loaded_shows_no_shape_or_classes() -> None:
    """An own model that could not load reports input (3, 1, 1) and 0 classes: placeholders, shown as -."""
    from client.cli_text import text_models
    from client.results import ModelInfo, WeightsInfo

    never = ModelInfo(name="mine", task="", input_shape=(3, 1, 1), num_classes=0, pretrained=False,
                      weights=WeightsInfo(source="", path="", sha256="", canonical_name=""), status="UNAVAILABLE",
                      reason="cannot read mine.pt", description="", dataset="")  # fmt: skip
    row = text_models([never], None).splitlines()[1]  # type: ignore[arg-type]
    assert row.split()[:5] == ["mine", "UNAVAILABLE", "-", "-", "-"] and row.endswith("cannot read mine.pt")


def test_layers_table(run):
    status, out, _ = run("layers", "vgg16")
    assert status == 0
    row = next(line for line in out.splitlines() if "conv3_1" in line)
    assert "(256, 56, 56)" in row and "Conv2d" in row and "295,168" in row
    assert row.split()[-4:] == ["24", "4", "1.5", "295,168"]


def test_json_is_one_document(run):
    status, out, err = run("--json", "classify", "vgg16", "img.png", "--top-k", "2")
    assert status == 0 and err == ""
    doc = json.loads(out)
    assert [p["index"] for p in doc["predictions"]] == [0, 1]
    assert doc["logits"]["dtype"] == "float32" and doc["logits"]["shape"] == [10] and len(doc["logits"]["values"]) == 10
    assert "input_png" not in doc
    big = cli._jsonable(np.zeros(cli.JSON_VALUES_LIMIT + 1, np.float32))
    assert big == {"dtype": "float32", "shape": [cli.JSON_VALUES_LIMIT + 1]}  # a tensor: its shape only
    assert cli._jsonable({"kl": float("nan"), "a": np.array([1.0, np.inf])}) == {
        "kl": None, "a": {"dtype": "float64", "shape": [2], "values": [1.0, None]}
    }  # JSON has no NaN: json.loads in JavaScript and other strict parsers refuse it
    # global options also work after the subcommand
    status, out, _ = run("models", "--json")
    assert [m["name"] for m in json.loads(out)["models"]] == ["vgg16", "lenet"]


def test_info(run):
    status, out, _ = run("info")
    assert status == 0
    assert "interp.v1" in out and "max_steps" in out and "2048" in out


def test_saliency_writes_overlay_and_heatmap_beside(run, fake, tmp_path):
    _, servicer = fake
    status, out, _ = run("saliency", "vgg16", "img.png", "--method", "smoothgrad", "--target", "281",
                         "--samples", "5", "-o", "out/cat.png")  # fmt: skip
    assert status == 0
    request = servicer.requests[-1]
    assert request.target.index == 281 and request.params.samples == 5
    assert not request.params.HasField("steps")
    for name in ("cat.png", "cat_heatmap.png", "cat_input.png"):
        assert (tmp_path / "out" / name).read_bytes() == PNG
    assert "class 281" in out and "out/cat.png" in out
    run("saliency", "vgg16", "img.png", "--target", "tabby cat", "-o", "x.png")
    assert servicer.requests[-1].target.label == "tabby cat"


def test_attack_table_and_files(run, tmp_path):
    status, out, _ = run("attack", "lenet", "img.png", "--method", "bim", "--eps", "0.01", "--eps", "0.1",
                         "--no-random-start", "-o", "adv")  # fmt: skip
    assert status == 0
    assert "EPS" in out and "SUCCESS" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0.01", "0.1 "))]
    assert [r[0] for r in rows] == ["0.01", "0.1"]
    assert (tmp_path / "adv" / "adversarial_eps0.1.png").exists()


def test_streaming_commands_write_results_and_frames(run, fake, tmp_path):
    _, servicer = fake
    status, _, err = run("dream", "vgg16", "img.png", "--layer", "relu4_3:2", "--layer", "relu5_1",
                         "--octaves", "2", "--frames", "frames", "-o", "dream.png")  # fmt: skip
    assert status == 0
    layers = [(lw.layer, lw.weight if lw.HasField("weight") else None) for lw in servicer.requests[-1].layers]
    assert layers == [("relu4_3", 2.0), ("relu5_1", None)]
    assert (tmp_path / "dream.png").read_bytes() == PNG
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0001.png"]
    assert "objective" in err  # the progress bar went to stderr

    status, out, err = run("--json", "visualize", "vgg16", "conv3_1", "--channel", "3", "--channel", "7",
                           "--steps", "8", "-o", "vis.png")  # fmt: skip
    assert status == 0 and err == "", "no progress bar in --json mode"
    doc = json.loads(out)
    assert doc["channels"] == [3, 7] and doc["files"][0] == "vis.png"


def test_interpolate_class_names_and_image_sets(run, fake, tmp_path):
    _, servicer = fake
    status, _, _ = run("interpolate", "lenet", "img.png", "--positive", "ankle boot", "--negative", "sneaker",
                       "--alpha", "0", "--alpha", "1", "-o", "dfi")  # fmt: skip
    assert status == 0
    sets = servicer.requests[-1].sets
    assert (sets.positive_class, sets.negative_class) == ("ankle boot", "sneaker")
    assert (tmp_path / "dfi" / "alpha_1.png").exists()

    (tmp_path / "pos").mkdir()
    for i in range(3):
        (tmp_path / "pos" / f"{i}.png").write_bytes(PNG)
    status, _, _ = run("interpolate", "lenet", "img.png", "--positive", "pos", "--negative", "img.png", "img.png",
                       "-o", "dfi2")  # fmt: skip
    assert status == 0
    sets = servicer.requests[-1].sets
    assert (len(sets.positive), len(sets.negative)) == (3, 2)

    status, _, err = run("interpolate", "lenet", "img.png", "--positive", "a", "-o", "x")
    assert status == cli.EXIT_USAGE and "--negative" in err


def test_server_errors_print_code_and_message_and_exit_distinctly(run):
    status, out, err = run("classify", "abort:NOT_FOUND", "img.png")
    assert status == 15 and out == ""
    assert err.startswith("error: NOT_FOUND: no luck for NOT_FOUND — ünïcödé intact")
    assert "Traceback" not in err
    status, _, err = run("classify", "abort:FAILED_PRECONDITION", "img.png")
    assert status == 19
    status, out, err = run("--json", "layers", "abort:UNIMPLEMENTED")
    assert status == 22 and "hint:" in err
    assert json.loads(out)["error"] == {
        "code": "UNIMPLEMENTED",
        "message": "no luck for UNIMPLEMENTED — ünïcödé intact (request id req-UNIMPLEMENTED)",
        "exit_status": 22,
        "request_id": "req-UNIMPLEMENTED",
    }


def test_local_errors(run):
    status, _, err = run("classify", "vgg16", "missing.png")
    assert status == cli.EXIT_FAILURE and "missing.png" in err
    status, _, err = run("dream", "vgg16", "img.png", "--layer", "relu4_3:heavy", "-o", "d.png")
    assert status == cli.EXIT_USAGE and "weight" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["attack", "lenet", "img.png", "-o", "x"])  # --eps missing: argparse
    assert info.value.code == 2


def test_no_server_is_unavailable_with_a_hint(run, monkeypatch):
    status, _, err = run("--server", "127.0.0.1:1", "--timeout", "5", "models")
    assert status == 24
    assert err.startswith("error: UNAVAILABLE:") and "hint: is a server running at 127.0.0.1:1" in err


def test_a_call_cut_by_the_server_is_not_told_to_look_for_a_server() -> None:
    from client.errors import Unavailable

    cut = Unavailable("Cancelling all calls")  # what grpc says when a draining server's grace ends
    assert "closed the connection during the call" in cli._hint(cut, "localhost:50051")
    refused = Unavailable("failed to connect to all addresses; last error: Connection refused")
    assert "is a server running at localhost:50051" in cli._hint(refused, "localhost:50051")
    closed = Unavailable("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:5: Socket closed")
    assert "--client-cert" in cli._hint(closed, "localhost:50051")  # mutual TLS without a client certificate


def test_warnings_print_as_one_line() -> None:
    assert cli._warning_line(UserWarning("token over plaintext"), UserWarning, "cli.py", 1) == (
        "warning: token over plaintext\n"
    )


def test_token_from_environment(run, fake, monkeypatch):
    _, servicer = fake
    monkeypatch.setenv("INTERP_TOKEN", "env-token")
    assert run("models")[0] == 0
    assert servicer.metadata[-1]["authorization"] == "Bearer env-token"
    assert run("models", "--token", "flag-token")[0] == 0
    assert servicer.metadata[-1]["authorization"] == "Bearer flag-token"


def test_exit_codes_are_distinct_per_status():
    import grpc

    from client.errors import exception_for

    codes = {cli.exit_code_for(exception_for(c)("x", code=c)) for c in grpc.StatusCode if c != grpc.StatusCode.OK}
    assert len(codes) == len(grpc.StatusCode) - 1
    assert codes.isdisjoint({cli.EXIT_OK, cli.EXIT_FAILURE, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED})


def _argv(method) -> list[str]:
    """A command line for ``method``'s command: its positionals and required options, plus -o."""
    from client.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[method.command]  # noqa: SLF001
    argv = [method.command]
    for action in sub._actions:  # noqa: SLF001
        if not action.option_strings and action.dest not in ("help",):
            argv.append("img.png" if action.dest in ("image", "source") else "lenet" if action.dest == "model" else "x")
        elif action.required and action.dest != "output":
            value = "img.png" if action.dest == "place_images" else action.choices[0] if action.choices else "1"
            argv += [action.option_strings[0], value]
    if any(a.dest == "output" for a in sub._actions):  # noqa: SLF001
        argv += ["-o", "out/"]
    if method.command == "interpolate":
        argv += ["--positive", "a", "--negative", "b"]
    return argv


@pytest.mark.parametrize("method", [m for m in cli.METHODS if m.command], ids=lambda m: m.command)
def test_every_command_of_the_table_parses_and_runs(run, method):
    status, out, err = run(*_argv(method))
    assert status == 0, err
    assert out.strip()
    status, out, err = run("--json", *_argv(method))
    assert status == 0, err
    assert isinstance(json.loads(out), dict)


def test_a_command_without_a_formatter_prints_its_fields(run, monkeypatch):
    from client import cli_commands

    monkeypatch.delitem(cli_commands.COMMANDS, "index")
    status, out, _ = run("index", "lenet", "fashion-mnist-test")
    assert status == 0
    assert out.splitlines()[0].split()[0] == "dataset" and "index_id" in out
    assert "request_id" not in out and out.splitlines()[-1].startswith("model lenet (")  # the stamp, once
    monkeypatch.delitem(cli_commands.COMMANDS, "kernels")  # its reply holds PNGs: -o is there, optional
    status, out, _ = run("kernels", "vgg16", "conv1")
    assert status == 0 and "grid_png" in out and "wrote" not in out
    status, out, _ = run("kernels", "vgg16", "conv1", "-o", "k/")
    assert status == 0 and "wrote k/kernels.png" in out
    monkeypatch.delitem(cli_commands.COMMANDS, "datasets")
    status, out, _ = run("datasets")
    assert status == 0 and out.strip() == "(none)"


@pytest.mark.parametrize(
    ("command", "output", "written"),
    [
        (["visualize", "vgg16", "conv3_1", "--channel", "0,1"], "cls/", ["cls/grid.png", "cls/channel_0000.png"]),
        (["visualize", "vgg16", "conv3_1", "--channel", "0"], "cls", ["cls/grid.png", "cls/channel_0000.png"]),
        (["visualize", "vgg16", "conv3_1", "--channel", "0"], "v.png", ["v.png", "v_channel_0000.png"]),
        (["attack", "lenet", "img.png", "--eps", "0.1"], "adv.png", ["adv.png", "adv_perturbation_eps0.1.png"]),
        (["dream", "vgg16", "img.png", "--layer", "relu4_3"], "d/", ["d/dream.png", "d/input.png"]),
    ],
)
def test_output_means_the_same_in_every_command(run, tmp_path, command, output, written):
    status, out, err = run(*command, "-o", output)
    assert status == 0, err
    for name in written:
        assert (tmp_path / name).is_file(), (name, out)
    assert not (tmp_path / output.rstrip("/")).is_file() or output.endswith(".png")


def test_frames_only_where_progress_carries_previews() -> None:
    """--frames saves preview images; embed, index and robustness have none (it said to set a
    --preview-every they do not take)."""
    parser = cli.build_parser()
    actions = {name: p for action in parser._subparsers._group_actions for name, p in action.choices.items()}
    for command in ("visualize", "dream", "interpolate"):
        assert "--frames" in actions[command].format_help()
    for command in ("embed", "index", "robustness"):
        assert "--frames" not in actions[command].format_help()
