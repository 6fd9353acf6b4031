"""Weights resolution: find a model's state_dict, verify it, and say where it came from.

Order (the first place that has a file wins; a file that is found but refused is an error, never
skipped over):

1. an explicit file for this model (``--weights NAME=PATH``): a user's own or fine-tuned
   state_dict; verified against the canonical checksum only if it carries the canonical name;
2. weights shipped in the package (``WeightsRecord.bundled_metadata``: a JSON naming the
   state_dict next to it and its full sha256; LeNet's, written by ``interp-train``);
3. the weights directory (``--weights-dir`` / ``INTERP_WEIGHTS_DIR``), torchvision's file name;
4. the torch hub cache (``<hub dir>/checkpoints/<canonical name>``), where torchvision puts them;
5. a download into the hub cache (``WeightsOptions.download``; the server's default, off with
   ``--no-download``) from the published URL, or from ``--weights-url-base`` + the canonical name.

Files named like torchvision's (``vgg16-397923af.pth``) must have a sha256 starting with the hex in
their name (torch.hub's rule); ``--weights-sha256 NAME=HEX`` pins the full sha256 instead. Every file
is read with ``torch.load(weights_only=True)`` and must match the architecture exactly: same keys,
same shapes. The full sha256 of the file is reported.

When nothing is found, ``WeightsNotFound`` says how to provide the weights; with ``random=True``
the model instead gets seeded random weights (``source="random"``), never silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from models.download import DownloadFailed, NetworkBounds, download_file
from models.errors import WeightsError, WeightsNotFound
from models.registry import ModelSpec, hash_prefix_from_name

SOURCES = ("file", "bundled", "weights_dir", "hub_cache", "download", "random", "")
PRETRAINED_SOURCES = frozenset({"file", "bundled", "weights_dir", "hub_cache", "download"})
_MAX_KEYS_SHOWN = 8
log = logging.getLogger(__name__)


@dataclass
class WeightsOptions:
    """Where the operator allows weights to come from (the server's flags and env).

    Attributes:
        files: model name -> explicit state_dict file (``--weights NAME=PATH``).
        weights_dir: directory of files with torchvision's names (``--weights-dir``).
        hub_dir: torch hub checkpoint directory; None means ``torch.hub.get_dir()/checkpoints``.
        download: fetch missing published weights into ``hub_dir``. Off here, so that a library
            call never reaches the network unasked; the server turns it on by default.
        url_base: a mirror: weights are fetched from ``url_base`` + the canonical file name
            instead of the published URL ("" for the published one).
        sha256: model name -> the full sha256 its weights file must have (``--weights-sha256``).
        bounds: how long a download may wait on the network.
        random: serve seeded random weights for models whose weights are not found.
        seed: seed of those random weights.
    """

    files: dict[str, Path] = field(default_factory=dict)
    weights_dir: Path | None = None
    hub_dir: Path | None = None
    download: bool = False
    url_base: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    bounds: NetworkBounds = field(default_factory=NetworkBounds)
    random: bool = False
    seed: int = 0

    def checkpoints_dir(self) -> Path:
        """The hub checkpoint directory in force."""
        return Path(self.hub_dir) if self.hub_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"

    def download_url(self, spec: ModelSpec) -> str:
        """Where ``spec``'s weights are downloaded from: the mirror's URL if set, else the published one."""
        if self.url_base and spec.weights.canonical_name:
            return self.url_base.rstrip("/") + "/" + spec.weights.canonical_name
        return spec.weights.url


@dataclass(frozen=True)
class WeightsInfo:
    """Where a served model's weights came from.

    Attributes:
        source: "file", "bundled", "weights_dir", "hub_cache", "download", "random", or "" (none).
        path: the file loaded ("" for random or none).
        sha256: full hex sha256 of the file loaded; for random weights, of the state_dict's
            tensors (see :func:`state_dict_sha256`); "" for none.
        canonical_name: the published file name of this model's weights ("" if none).
    """

    source: str
    path: str
    sha256: str
    canonical_name: str

    @property
    def pretrained(self) -> bool:
        """True for weights from a file, False for random or missing weights."""
        return self.source in PRETRAINED_SOURCES


def needs_download(spec: ModelSpec, options: WeightsOptions) -> bool:
    """True when resolving ``spec`` would download (nothing local takes precedence), which takes a while."""
    record = spec.weights
    if spec.name in options.files or (record.bundled_metadata is not None and record.bundled_metadata.is_file()):
        return False
    if not (record.canonical_name and options.download and options.download_url(spec)):
        return False
    local = [options.checkpoints_dir()]
    if options.weights_dir is not None:
        local.append(Path(options.weights_dir).expanduser())
    return not any((directory / record.canonical_name).is_file() for directory in local)


def resolve_weights(
    spec: ModelSpec,
    options: WeightsOptions,
    report: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, Tensor], WeightsInfo]:
    """Find, verify and load the state_dict a model should serve.

    Args:
        spec: the model.
        options: the places the operator allows.
        report: receives status text while a download runs ("downloading, N % (...)").
        cancel: set to abandon a download.

    Returns:
        (state_dict of CPU tensors matching ``spec.build()`` exactly, where it came from).

    Raises:
        WeightsNotFound: nothing found (and ``options.random`` is off); the message says how to
            provide the weights.
        WeightsError: a file was found but refused: unreadable, checksum mismatch, or keys/shapes
            that do not match the architecture. Never replaced by random weights.
    """
    reference = _reference_shapes(spec)
    canonical = spec.weights.canonical_name
    pinned = _pinned_sha256(spec, options)

    explicit = options.files.get(spec.name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"{spec.name}: weights file {str(path)!r} (--weights {spec.name}=...) does not exist"
            )
        # A file of the canonical name answers to the prefix in that name too; a file of another
        # name (the operator's own state_dict) to the pin alone.
        expected_file = _expected_sha256(spec, options) if path.name == canonical else pinned
        return _load_verified(spec, path, "file", expected_file, reference)

    if spec.weights.bundled_metadata is not None and spec.weights.bundled_metadata.is_file():
        path, sha256 = _bundled_file(spec)
        # a pin covers the bundled file too: a copy that is not the pinned one is refused
        return _load_verified(spec, path, "bundled", pinned or sha256, reference)

    expected = _expected_sha256(spec, options)

    if canonical:
        if options.weights_dir is not None:
            path = Path(options.weights_dir).expanduser() / canonical
            if path.is_file():
                return _load_verified(spec, path, "weights_dir", expected, reference)
        path = options.checkpoints_dir() / canonical
        if path.is_file():
            return _load_verified(spec, path, "hub_cache", expected, reference)
        url = options.download_url(spec)
        if options.download and url:
            try:
                fetched = download_file(
                    url, path, expected, bounds=options.bounds, label=spec.name, report=report, cancel=cancel
                )
            except DownloadFailed as exc:
                if not options.random:
                    raise WeightsNotFound(how_to_provide(spec, options, download_failed=str(exc))) from exc
                log.warning("%s: download failed (%s); serving random weights (--random-weights)", spec.name, exc)
            else:
                return _load_verified(spec, path, "download" if fetched else "hub_cache", expected, reference)

    if options.random:
        return random_weights(spec, options.seed)
    raise WeightsNotFound(how_to_provide(spec, options))


def _pinned_sha256(spec: ModelSpec, options: WeightsOptions) -> str:
    """The full sha256 pinned with ``--weights-sha256`` (lower case), or "".

    Raises:
        WeightsError: the pin is not 64 hex digits.
    """
    pinned = options.sha256.get(spec.name, "").strip().lower()
    if pinned and (len(pinned) != 64 or any(c not in "0123456789abcdef" for c in pinned)):
        raise WeightsError(f"{spec.name}: --weights-sha256 {spec.name}=... must be 64 hex digits, got {pinned!r}")
    return pinned


def _expected_sha256(spec: ModelSpec, options: WeightsOptions) -> str:
    """The pinned full sha256 (``--weights-sha256``) if any, else the prefix in the canonical name.

    Raises:
        WeightsError: the pin is not 64 hex digits, or contradicts the prefix in the file name.
    """
    prefix = spec.weights.sha256_prefix
    pinned = _pinned_sha256(spec, options)
    if not pinned:
        return prefix
    if prefix and not pinned.startswith(prefix):
        raise WeightsError(
            f"{spec.name}: --weights-sha256 {spec.name}={pinned} contradicts the checksum prefix {prefix} "
            f"in the file name {spec.weights.canonical_name}"
        )
    return pinned


def how_to_provide(spec: ModelSpec, options: WeightsOptions, download_failed: str = "") -> str:
    """The exact ways to give ``spec`` its weights, given what was searched; the first line says
    what went wrong (what a one-line view such as ``interp models`` shows)."""
    record = spec.weights
    looked = f"; looked for {record.bundled_metadata}" if record.bundled_metadata is not None else ""
    origin = record.origin or spec.description
    if download_failed:
        failed = f"; the download failed: {download_failed}"
    elif record.canonical_name and options.download_url(spec) and not options.download:
        failed = f"; not in the hub cache {options.checkpoints_dir()}, and downloads are off"
    else:
        failed = ""
    lines = [f"no weights found for {spec.name} ({origin}{looked}){failed}. Provide them with one of:"]
    if record.how_to_make:
        lines.append(f"  - {record.how_to_make}")
    lines.append(f"  - --weights {spec.name}=PATH (a state_dict for this architecture)")
    if record.canonical_name:
        searched = f"searched {options.weights_dir}" if options.weights_dir is not None else "none set"
        name = record.canonical_name
        lines.append(f"  - --weights-dir DIR or INTERP_WEIGHTS_DIR=DIR containing {name} ({searched})")
        lines.append(
            f"  - {name} in the torch hub cache {options.checkpoints_dir()} (moved with --hub-dir / INTERP_HUB_DIR)"
        )
        url = options.download_url(spec)
        if options.download and url:
            lines.append(f"  - a download from {url} (tried: it failed, as said above)")
        elif url:
            lines.append(
                f"  - a download from {url}: downloads are off (--no-download / INTERP_DOWNLOAD_WEIGHTS=0); "
                "drop that to download"
            )
        lines.append(
            f"  - --weights-url-base URL or INTERP_WEIGHTS_URL_BASE=URL: a mirror that serves URL/{name} "
            f"(pin its full sha256 with --weights-sha256 {spec.name}=HEX)"
        )
        lines.append(f"  - ahead of time: python -m models.fetch {spec.name} [--hub-dir DIR] [--weights-url-base URL]")
    lines.append(
        "  - or --random-weights / INTERP_RANDOM_WEIGHTS=1 to serve seeded random weights (pretrained=false)"
    )
    return "\n".join(lines)


# torch's initializers draw from the process-wide generator, which threads share: models load in
# parallel, so every build in this package takes this lock (a seeded build draws its own numbers).
_BUILD_LOCK = threading.RLock()  # re-entrant: a builder may build a part through build_module


def build_module(build: Callable[[], nn.Module], seed: int | None = None) -> nn.Module:
    """``build()`` with the process's RNG forked (callers' random state is left as it was) and, with
    ``seed``, seeded: the same initialisation whatever other models are built at the same time."""
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return build()


def random_weights(spec: ModelSpec, seed: int) -> tuple[dict[str, Tensor], WeightsInfo]:
    """``spec.build()``'s own initialisation under ``torch.manual_seed(seed)``.

    The result depends on nothing but the spec and the seed: not on which other models were
    built before, nor on those being built in other threads (see :func:`build_module`).
    """
    module = build_module(spec.build, seed)
    state = {k: v.detach() for k, v in module.state_dict().items()}
    info = WeightsInfo(
        source="random", path="", sha256=state_dict_sha256(state), canonical_name=spec.weights.canonical_name
    )
    return state, info


def state_dict_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 over (key, dtype, shape, raw bytes) of every tensor, in key order."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Full hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_state_dict(
    spec: ModelSpec, state: Mapping[str, Tensor], reference: Mapping[str, torch.Size], path: Path
) -> None:
    """Strict match of keys and shapes against the architecture.

    Raises:
        WeightsError: naming the missing keys, unexpected keys and shape mismatches.
    """
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(reference[k])}"
        for k in reference
        if k in state and tuple(state[k].shape) != tuple(reference[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{spec.name}: {path} does not match the {spec.name} architecture"]
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            shown = ", ".join(items[:_MAX_KEYS_SHOWN])
            more = f", ... ({len(items) - _MAX_KEYS_SHOWN} more)" if len(items) > _MAX_KEYS_SHOWN else ""
            parts.append(f"{label} ({len(items)}): {shown}{more}")
    if unexpected and all(k.startswith("module.") for k in unexpected):
        parts.append(
            "hint: the keys start with 'module.' (saved from DataParallel?); save model.module.state_dict()"
        )
    raise WeightsError("; ".join(parts))


def _reference_shapes(spec: ModelSpec) -> dict[str, torch.Size]:
    # The architecture's state_dict keys and shapes; a meta-device build allocates nothing.
    with torch.device("meta"):
        module = spec.build()
    return {k: v.shape for k, v in module.state_dict().items()}


def _load_verified(
    spec: ModelSpec, path: Path, source: str, expected_sha256: str, reference: Mapping[str, torch.Size]
) -> tuple[dict[str, Tensor], WeightsInfo]:
    """Checksum (full hash or prefix), weights-only load, strict key/shape check."""
    sha256 = file_sha256(path)
    if expected_sha256 and not sha256.startswith(expected_sha256):
        raise WeightsError(
            f"{spec.name}: checksum mismatch for {path}: its sha256 is {sha256}, expected "
            f"{'a hash starting with ' if len(expected_sha256) < 64 else ''}{expected_sha256} "
            f"(the file is corrupt, truncated or not the weights its name claims)"
        )
    state = _read_state_dict(spec, path)
    check_state_dict(spec, state, reference, path)
    info = WeightsInfo(
        source=source, path=str(path), sha256=sha256, canonical_name=spec.weights.canonical_name
    )
    return state, info


def _load_failure(exc: Exception) -> str:
    """torch.load's reason on one line, without its advice to retry with ``weights_only=False``
    (running the file's code is what this loader refuses)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = f"not a tensors-only pickle: {' '.join(text.split())}"
    else:
        text = " ".join(text.split())
    return text[:300] or type(exc).__name__


def _read_state_dict(spec: ModelSpec, path: Path) -> dict[str, Tensor]:
    """torch.load(weights_only=True) a state_dict; unwrap {"state_dict": ...} / {"model": ...}."""
    try:
        # mmap avoids a second copy of large files; torch supports it for the zip format only
        # (torchvision's older files use the legacy format).
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # an untrusted file can fail in many ways; all mean "refused"
        raise WeightsError(
            f"{spec.name}: cannot read {path} as a weights-only torch state_dict "
            f"(weights files are read as tensors only, never as pickled code): {_load_failure(exc)}"
        ) from exc
    if isinstance(loaded, Mapping) and not _all_tensors(loaded):
        for key in ("state_dict", "model"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and _all_tensors(inner):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not _all_tensors(loaded):
        raise WeightsError(
            f"{spec.name}: {path} is not a state_dict (a mapping of parameter names to tensors); "
            f"save it with torch.save(model.state_dict(), path)"
        )
    return dict(loaded)


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, Tensor) for k, v in mapping.items())


def _bundled_file(spec: ModelSpec) -> tuple[Path, str]:
    """The state_dict file and full sha256 named by the bundled metadata JSON, after checking it."""
    meta_path = spec.weights.bundled_metadata
    if meta_path is None:
        raise WeightsError(f"{spec.name}: no bundled weights metadata")
    try:
        meta = json.loads(meta_path.read_text())
        name, sha256 = str(meta["file"]), str(meta["sha256"]).lower()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{spec.name}: unreadable weights metadata {meta_path}: {exc!r}") from exc
    path = meta_path.parent / name
    if Path(name).name != name or not path.is_file():
        raise WeightsError(
            f"{spec.name}: {meta_path} names {name!r}, which is not a file in {meta_path.parent}"
        )
    prefix = hash_prefix_from_name(name)
    if len(sha256) != 64 or not sha256.startswith(prefix):
        raise WeightsError(f"{spec.name}: {meta_path} is inconsistent: file {name!r} but sha256 {sha256!r}")
    classes = meta.get("classes")
    if classes is not None and tuple(classes) != spec.labels:
        raise WeightsError(
            f"{spec.name}: {meta_path} has classes {classes}, the model serves {list(spec.labels)}"
        )
    norm = meta.get("normalization")
    if isinstance(norm, Mapping):
        pre = spec.preprocessing
        for key, served in (("mean", pre.mean), ("std", pre.std)):
            trained = tuple(float(v) for v in norm.get(key, served))
            if len(trained) != len(served) or not all(
                math.isclose(a, b, abs_tol=1e-6) for a, b in zip(trained, served, strict=False)
            ):
                raise WeightsError(
                    f"{spec.name}: {meta_path} was trained with normalization {key}={list(trained)}, "
                    f"the served model uses {list(served)}"
                )
    return path, sha256
