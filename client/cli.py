"""`interp`: command-line client for the interp.v1 service.

    interp models
    interp layers vgg16
    interp classify lenet shirt.png --top-k 3
    interp saliency vgg16 cat.png --method smoothgrad --samples 20 -o out/cat_sal.png
    interp attack lenet shirt.png --method pgd --eps 0.03 --eps 0.1 -o out/attack
    interp dream vgg16 cat.png --layer relu4_3 --layer relu5_1:0.5 --frames out/frames -o out/dream.png

Tables for people by default; ``--json`` prints one JSON document on stdout instead (no progress
bars). Errors print ``error: <CODE>: <message>`` on stderr and exit non-zero (see EXIT STATUS).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from client.cli_commands import command
from client.cli_options import (
    UsageError,
    add_method_options,
    image_files,
    read_image_file,
    request_values,
    takes_many,
)
from client.cli_text import params_text, table
from client.errors import InterpError
from client.results import ProgressEvent, file_part
from client.sdk import DEFAULT_TARGET, InterpClient
from protos.methods import METHODS, Method

__all__ = ["main", "build_parser", "exit_code_for", "UsageError"]

_request_values = request_values  # the name tests and benchmarks used

EXIT_OK = 0
EXIT_FAILURE = 1  # a local file could not be read or written
EXIT_USAGE = 2  # bad command line or argument (also argparse's code)
EXIT_STATUS_BASE = 10  # + the gRPC status code number
EXIT_INTERRUPTED = 130

_EPILOG = f"""\
environment:
  INTERP_SERVER   server address (default {DEFAULT_TARGET}); dns:///host:port balances round-robin
  INTERP_TOKEN    bearer token sent with every call
  INTERP_CA_FILE  PEM root certificate(s): connect with TLS
  INTERP_CLIENT_CERT, INTERP_CLIENT_KEY
                  PEM client certificate and key, for a server with mutual TLS

exit status:
  0 success; 1 local file error; 2 usage error; 130 interrupted;
  10 + gRPC status code for a failed call: 11 CANCELLED, 13 INVALID_ARGUMENT,
  14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 18 RESOURCE_EXHAUSTED, 19 FAILED_PRECONDITION (model
  unavailable), 22 UNIMPLEMENTED, 23 INTERNAL, 24 UNAVAILABLE (no server), 26 UNAUTHENTICATED
"""

_HINTS = {
    "UNAVAILABLE": "is a server running at {server}? Set --server or INTERP_SERVER (TLS: --ca-file; "
    "a server with mutual TLS closes the connection without a client certificate: --client-cert/--client-key).",
    "UNAUTHENTICATED": "the server wants a token: set --token or INTERP_TOKEN.",
    "UNIMPLEMENTED": "this server does not implement that call yet (see `interp info`).",
}


# UNAVAILABLE after the call had reached the server: it closed the connection (a restart, a drain
# whose grace period ended, a proxy in between), not "no server there".
_CUT = ("Cancelling all calls", "GOAWAY", "Socket closed", "Connection reset", "Stream removed")
_CUT_HINT = ("the server closed the connection during the call (shutting down or restarting?); "
             "try again, with a deadline that fits the work (--timeout)")  # fmt: skip


def _hint(error: InterpError, server: str) -> str | None:
    said = error.message or ""
    if error.code_name == "UNAVAILABLE" and "failed to connect" not in said and any(sign in said for sign in _CUT):
        return _CUT_HINT
    hint = _HINTS.get(error.code_name)
    return hint.format(server=server) if hint else None


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"  # not Python's "file:line: UserWarning: ... source line"


def exit_code_for(error: InterpError) -> int:
    """Exit status for a failed call: 10 + the gRPC status code number (1 if there is none)."""
    if error.code is None:
        return EXIT_FAILURE
    return EXIT_STATUS_BASE + int(error.code.value[0])


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


JSON_VALUES_LIMIT = 100_000
"""Arrays of at most this many elements carry their values in ``--json`` output (a map's
coordinates, a curve's per-image minimal epsilons); larger ones (activation tensors) only their
dtype and shape."""


def _jsonable(value: Any) -> Any:
    """Results -> JSON: dataclasses as objects, arrays as {dtype, shape[, values]}, PNG bytes left
    out, NaN and infinities as null (JSON has neither)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if isinstance(item, bytes) or (
                isinstance(item, tuple) and item and all(isinstance(x, bytes) for x in item)
            ):
                continue  # PNGs go to files, not to the JSON document
            out[field.name] = _jsonable(item)
        return out
    if isinstance(value, np.ndarray):
        out = {"dtype": str(value.dtype), "shape": list(value.shape)}
        if value.size <= JSON_VALUES_LIMIT:
            out["values"] = _jsonable(value.tolist())
        return out
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _stamp_line(result: Any) -> str:
    weights = "pretrained" if result.pretrained else "RANDOM weights (pretrained=false)"
    sha = f", sha256 {result.weights_sha256[:12]}" if result.weights_sha256 else ""
    rid = f", request {result.request_id}" if result.request_id else ""
    return f"model {result.model} ({weights}{sha}), {result.elapsed_ms:.1f} ms{rid}"


def _files_line(paths: Sequence[Path]) -> str:
    return "wrote " + ", ".join(str(p) for p in paths) if paths else "wrote no files (the server sent no images)"


_OBJECTIVES = {"index": "images/s", "robustness": "accuracy", "embed": "KL"}
"""What the progress events' ``objective`` is, for the streamed commands that optimize nothing."""


class _Progress:
    """Progress callback: a tqdm bar on stderr and, with --frames, preview PNGs as frame_0001.png..."""

    def __init__(self, show_bar: bool, frames_dir: Path | None, stream: TextIO, objective: str = "objective") -> None:
        self.show_bar = show_bar
        self.objective = objective  # what a stream's objective is (index: images/s; robustness: accuracy)
        self.frames_dir = frames_dir
        self.stream = stream
        self.frames: list[Path] = []
        self._bar: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if self.show_bar:
            if self._bar is None:
                from tqdm import tqdm  # only streaming commands pay for the import

                self._bar = tqdm(total=event.total_steps or None, file=self.stream, unit="step", dynamic_ncols=True)
            if event.total_steps and self._bar.total != event.total_steps:
                self._bar.total = event.total_steps
            if event.stage:
                self._bar.set_description_str(event.stage, refresh=False)
            self._bar.set_postfix_str(f"{self.objective}={event.objective:.4g}", refresh=False)
            self._bar.update(max(0, event.step - self._bar.n))
        if self.frames_dir is not None and event.preview_png:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            path = self.frames_dir / f"frame_{len(self.frames) + 1:04d}.png"
            path.write_bytes(event.preview_png)
            self.frames.append(path)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _frames_line(progress: _Progress) -> str:
    if progress.frames_dir is None:
        return ""
    if not progress.frames:
        return f"\nno preview frames received (set --preview-every); {progress.frames_dir} left empty"
    return f"\nwrote {len(progress.frames)} preview frames to {progress.frames_dir}/frame_NNNN.png"


# ---------------------------------------------------------------------------------------------
# Running a command: the call is generic; its row of the command table says how it reads
# ---------------------------------------------------------------------------------------------

Outcome = tuple[str, dict[str, Any]]

_OUTPUT_HELP = (
    "a folder (ends in /, exists, or has no extension) for one PNG per image, or a file for the main "
    "image with the others beside it as STEM_NAME.png"
)


def cmd_labels(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    labels = c.labels(args.model)
    return table(["CLASS", "LABEL"], list(enumerate(labels)), "rl"), {"model": args.model, "labels": list(labels)}


def cmd_watch(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    """`interp watch`: the video code is client/video.py, behind the `video` extra (OpenCV)."""
    try:
        from client import video
    except ImportError as error:
        raise UsageError(
            f"interp watch needs OpenCV: pip install 'cnn-interp[video]' (opencv-python-headless) ({error})"
        ) from None
    return video.run(c, args)


def _add_watch(sub: Any, common: argparse.ArgumentParser) -> None:
    help_text = "a layer's channels at frame rate from a video or camera, written as a video (DVT layout)"
    p = sub.add_parser("watch", parents=[common], help=help_text, description=help_text)
    p.add_argument("model", help="model name (see `interp models`)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", metavar="FILE", help="read frames from a video file")
    source.add_argument("--camera", type=int, metavar="N", help="read frames from camera N (OpenCV index)")
    p.add_argument("--layer", required=True, help="layer whose channels are shown (module path or alias)")
    p.add_argument("--unit", type=int, default=None, help="channel shown enlarged (default: the most active one)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown (0: the forward stops at the layer)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames read")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="the video written (.mp4, mp4v)")
    p.add_argument("--show", action="store_true", help="also show the frames in a window (needs a GUI OpenCV)")
    p.add_argument(
        "--every-frame",
        action="store_true",
        help="answer every frame (each sent once the previous is answered) instead of the newest one",
    )
    p.set_defaults(handler=cmd_watch)


def run_method(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    """Any command of the method table: request from the options, the call, files, text."""
    method: Method = args.method_spec
    row = command(method)
    values, params = request_values(method, args)
    if row.prepare is not None:
        row.prepare(args, values)
    if row.resolve is not None:
        row.resolve(c, values)
    if takes_many(method):
        images, many = image_files(values.pop("image"))
        if many:
            return _run_many(c, method, args, images, values, params)
        values["image"] = images[0]
    for field in method.request.DESCRIPTOR.fields:  # image files: read here, a local file error
        value = values.get(field.name)
        if field.message_type is not None and field.message_type.name == "Image" and value is not None:
            if field.is_repeated:
                values[field.name] = [read_image_file(Path(v)) for v in value]
            else:
                values[field.name] = read_image_file(Path(value))
    if method.streamed:
        with c.call_stream(method.rpc, values, params=params, progress=progress) as stream:
            result: Any = next((item for item in stream if not isinstance(item, ProgressEvent)), None)
        progress.close()
        if result is None:
            raise UsageError("the server ended the stream without a result")
    else:
        result = c.call(method.rpc, values, params=params)
    writes = bool(row.output) and args.output is not None
    files: list[Path] = result.save(args.output) if writes else []
    files += row.files(result, args) if row.files is not None else []
    text = row.text(result, args)
    params_echo = getattr(result, "params", None)
    if params_echo is not None and method.params is not None:
        text += f"\nparams: {params_text(params_echo)}"
    if hasattr(result, "request_id"):
        text += "\n" + _stamp_line(result)
    document = _jsonable(result)
    if isinstance(document, list):  # a list reply (models, datasets): named by its one field
        document = {method.reply.DESCRIPTOR.fields[0].name: document}
    if writes:
        text += "\n" + _files_line(files)
        document = {**document, "files": _jsonable(files)}
    if method.streamed:
        text += _frames_line(progress)
        document["frames"] = _jsonable(progress.frames)
    return text, document


class ItemsFailed(Exception):
    """Some images of a several-image command failed (each reported in the output)."""

    def __init__(self, text: str, document: dict[str, Any], status: int) -> None:
        super().__init__(text)
        self.text, self.document, self.status = text, document, status


def _run_many(
    c: InterpClient,
    method: Method,
    args: argparse.Namespace,
    files: list[Path],
    values: dict[str, Any],
    params: dict[str, Any],
) -> Outcome:
    """Several images: batched calls (the SDK chunks them), one section of output per image.

    With -o each image's files go to OUTPUT/<file stem>/ (OUTPUT is then a directory). An image
    that fails is reported in its section; the exit status is then that of the first failure.
    """
    results = _call_readable(c, method, files, values, params)
    row = command(method)
    writes = bool(row.output) and args.output is not None
    sections, documents, status = [], [], EXIT_OK
    stems = _unique_stems(files)
    for path, stem, result in zip(files, stems, results, strict=True):
        if isinstance(result, OSError):  # this file could not be read here: it was not sent
            sections.append(f"== {path}\nerror: IO: {result}")
            documents.append({"image": str(path), "error": {"code": "IO", "message": str(result)}})
            status = status or EXIT_FAILURE
            continue
        if isinstance(result, InterpError):
            sections.append(f"== {path}\nerror: {result.code_name}: {result.message}")
            documents.append({"image": str(path), "error": {"code": result.code_name, "message": result.message}})
            status = status or exit_code_for(result)
            continue
        written: list[Path] = []
        if writes:
            folder = Path(args.output) / stem
            written = result.save(folder, as_file=False)
            if row.files is not None:  # --npy: LAYER.npy, map.npy in the image's folder
                written += row.files(result, argparse.Namespace(**{**vars(args), "output": f"{folder}/"}))
        text = row.text(result, args)
        if writes:
            text += "\n" + _files_line(written)
        sections.append(f"== {path}\n{text}")
        document = {"image": str(path), **_jsonable(result)}
        if writes:
            document["files"] = _jsonable(written)
        documents.append(document)
    first = next((r for r in results if not isinstance(r, InterpError | OSError)), None)
    footer = ""
    if first is not None:
        params_echo = getattr(first, "params", None)
        if params_echo is not None and method.params is not None:
            footer += f"\nparams: {params_text(params_echo)}"
        failed = sum(isinstance(r, InterpError | OSError) for r in results)
        footer += f"\n{len(files)} images, {failed} failed; " + _stamp_line(first)
    text = "\n".join(sections) + footer
    document = {"results": documents}
    if status != EXIT_OK:
        raise ItemsFailed(text, document, status)
    return text, document


def _call_readable(
    c: InterpClient, method: Method, files: list[Path], values: dict[str, Any], params: dict[str, Any]
) -> list[Any]:
    """One answer per file: the files that read are sent (batched); one that does not gets its
    OSError in its place and the others go on, as an image the server cannot decode does."""
    read: list[bytes | OSError] = []
    for path in files:
        try:
            read.append(read_image_file(path))
        except OSError as error:
            read.append(error)
    sent = [data for data in read if isinstance(data, bytes)]
    answers = iter(c.call_many(method.rpc, sent, values, params=params) if sent else [])
    return [next(answers) if isinstance(data, bytes) else data for data in read]


def _unique_stems(files: Sequence[Path]) -> list[str]:
    """A distinct directory name per image file: its stem, numbered when two files share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        stem = file_part(path.stem)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """--timeout: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global options; on subcommands they default to SUPPRESS so either position works."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def shown(text: str) -> str:
        return argparse.SUPPRESS if suppress else text

    group = parser.add_argument_group("connection and output")
    env = os.environ.get
    for flag, value, text, extra in (
        ("--server", env("INTERP_SERVER") or DEFAULT_TARGET,
         "host:port or dns:///host:port (env INTERP_SERVER; default %(default)s)", {}),
        ("--token", env("INTERP_TOKEN") or None, "bearer token (env INTERP_TOKEN)", {}),
        ("--ca-file", env("INTERP_CA_FILE") or None,
         "PEM root certificate(s); connect with TLS (env INTERP_CA_FILE)", {}),
        ("--client-cert", env("INTERP_CLIENT_CERT") or None,
         "PEM client certificate for a server with mutual TLS; implies TLS (env INTERP_CLIENT_CERT)", {}),
        ("--client-key", env("INTERP_CLIENT_KEY") or None, "its PEM private key (env INTERP_CLIENT_KEY)", {}),
        ("--tls", False, "connect with TLS using the system's root certificates", STORE_TRUE),
        ("--tls-server-name", None, "certificate name to expect when it differs from the server host", {}),
        ("--timeout", None, "deadline per call in seconds (default: 60 for quick calls, none for streaming ones)",
         {"type": _seconds}),
        ("--json", False, "print one JSON document on stdout (no progress bar)", STORE_TRUE),
        ("--no-progress", False, "no progress bar for streaming commands", STORE_TRUE),
    ):  # fmt: skip
        group.add_argument(flag, default=default(value), help=shown(text), **extra)


STORE_TRUE = {"action": "store_true"}


def build_parser() -> argparse.ArgumentParser:
    """The `interp` argument parser: one subcommand per method of the table (options from its fields)."""
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Client for the cnn-interp gRPC service: look inside CNNs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('cnn-interp')}")
    _add_connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for method in METHODS:
        if not method.command:
            continue
        p = sub.add_parser(method.command, parents=[common], help=method.help, description=method.help)
        row = command(method)
        p.set_defaults(handler=run_method, method_spec=method)
        add_method_options(p, method)
        if row.options is not None:
            row.options(p)
        params = method.params_message
        previews = params is not None and "preview_every" in params.DESCRIPTOR.fields_by_name
        if method.streamed and previews:  # the methods whose progress events carry preview images
            p.add_argument("--frames", type=Path, metavar="DIR", help="save previews as DIR/frame_0001.png ...")
        if row.output:
            p.add_argument(
                "-o",
                "--output",
                required=not row.output_optional,
                metavar="PATH",
                help=f"{_OUTPUT_HELP} ({row.output})",
            )
        if method.command == "layers":
            labels = sub.add_parser("labels", parents=[common], help="a model's class labels in index order")
            labels.add_argument("model")
            labels.set_defaults(handler=cmd_labels)
    _add_watch(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the EXIT STATUS section of ``interp --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.client_cert) != bool(args.client_key):
        parser.error("--client-cert and --client-key go together (the client certificate and its private key)")
    stdout, stderr = sys.stdout, sys.stderr
    warnings.formatwarning = _warning_line
    progress = _Progress(
        show_bar=not (args.json or args.no_progress),
        frames_dir=getattr(args, "frames", None),
        stream=stderr,
        objective=_OBJECTIVES.get(args.command, "objective"),
    )
    try:
        with InterpClient(
            args.server,
            timeout=args.timeout if args.timeout is not None else 60.0,
            stream_timeout=args.timeout,
            token=args.token or None,
            ca_file=args.ca_file or None,
            cert_file=args.client_cert or None,
            key_file=args.client_key or None,
            tls=args.tls,
            server_name=args.tls_server_name or None,
        ) as c:
            text, document = args.handler(c, args, progress)
    except ItemsFailed as failed:  # several images, some failed: every answer printed, then the status
        stdout.write((json.dumps(failed.document, indent=2) if args.json else failed.text.rstrip("\n")) + "\n")
        return failed.status
    except InterpError as error:
        progress.close()
        status = _fail(error.code_name, error.message, exit_code_for(error), args.json, error.request_id)
        hint = _hint(error, args.server)
        if hint:
            print("hint: " + hint, file=sys.stderr)
        return status
    except (UsageError, ValueError) as error:
        progress.close()
        return _fail("USAGE", str(error), EXIT_USAGE, args.json)
    except OSError as error:
        progress.close()
        return _fail("IO", str(error), EXIT_FAILURE, args.json)
    except KeyboardInterrupt:
        progress.close()
        return _fail("INTERRUPTED", "interrupted", EXIT_INTERRUPTED, args.json)
    if args.json:
        stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        stdout.write(text.rstrip("\n") + "\n")
    stdout.flush()
    return EXIT_OK


def _fail(code: str, message: str, status: int, as_json: bool, request_id: str | None = None) -> int:
    if code in ("USAGE", "IO", "INTERRUPTED"):
        print(f"error: {message}", file=sys.stderr)
    else:
        print(f"error: {code}: {message}", file=sys.stderr)
    if as_json:
        error = {"code": code, "message": message, "exit_status": status}
        if request_id:
            error["request_id"] = request_id
        sys.stdout.write(json.dumps({"error": error}, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
