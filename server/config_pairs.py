"""The repeatable NAME=VALUE options of the server (``--weights``, ``--model``, ...) and their parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _weights_pair(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), Path(path).expanduser()


def _model_pair(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=SPEC (e.g. mynet=torchvision:resnet18:weights.pt), got {text!r}"
        )
    return name.strip(), spec.strip()


def _sha256_pair(text: str) -> tuple[str, str]:
    name, sep, digest = text.partition("=")
    digest = digest.strip().lower()
    if not sep or not name.strip() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"expected NAME=HEX (a model name and 64 hex digits), got {text!r}")
    return name.strip(), digest


# flag, env var (comma-separated), dest, type, metavar, help: NAME=VALUE options given once per name.
REPEATABLE: tuple[tuple[str, str, str, Callable[[str], tuple[str, Any]], str, str], ...] = (
    ("--weights", "INTERP_WEIGHTS", "weights", _weights_pair, "NAME=PATH", "state_dict file for one model"),
    ("--dataset", "INTERP_DATASETS", "datasets", _weights_pair, "NAME=DIR", "an image folder to serve as dataset NAME"),
    ("--weights-sha256", "INTERP_WEIGHTS_SHA256", "weights_sha256", _sha256_pair, "NAME=HEX",
     "the full sha256 model NAME's weights file must have (a stronger guard than the 8-hex prefix in its name)"),
    ("--model", "INTERP_MODEL_SPECS", "model_specs", _model_pair, "NAME=SPEC",
     "also serve model NAME from SPEC: torchvision:ARCH[:WEIGHTS] (a state_dict path or published weights), "
     "torchscript:PATH or export:PATH (docs/own-models.md)"),
    ("--model-card", "INTERP_MODEL_CARDS", "model_cards", _weights_pair, "NAME=PATH",
     "model card (JSON: input shape, resize/crop, mean/std, labels, Grad-CAM layer) of a --model"),
)  # fmt: skip
