"""`python -m models.fetch vgg16 alexnet [--hub-dir DIR]`: fetch and verify weights ahead of time.

Runs exactly the resolution the server runs at start-up (weights dir, hub cache, then download
with the checksum check, from the published URL or a mirror), so a Docker build can bake verified
ImageNet weights into the image, and a machine can fill its hub cache before serving.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from models.errors import WeightsError
from models.registry import get_spec
from models.weights import WeightsOptions, resolve_weights


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names, e.g. vgg16 alexnet")
    parser.add_argument("--hub-dir", type=Path, default=None, help="torch hub checkpoints dir to fill")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--no-download", action="store_true", help="only verify what is already there")
    parser.add_argument("--weights-url-base", default="", metavar="URL", help="download from URL/<file name>")
    parser.add_argument(
        "--weights-sha256", action="append", default=[], metavar="NAME=HEX", help="pin a model's full sha256"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the download's progress lines
    pins = dict(item.partition("=")[::2] for item in args.weights_sha256)
    options = WeightsOptions(
        weights_dir=args.weights_dir,
        hub_dir=args.hub_dir,
        download=not args.no_download,
        url_base=args.weights_url_base,
        sha256=pins,
    )
    failed = 0
    for name in args.models:
        try:
            _state, info = resolve_weights(get_spec(name), options)
        except (WeightsError, LookupError) as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {info.source} {info.path} sha256={info.sha256}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
