"""Shared fixtures and helpers: real images (scikit-image's photos, Fashion-MNIST test images),
``require`` for prerequisites, test-made TLS certificates, the shared real in-process server.

The tests mirror the packages, in two tiers; a test's folder decides its tier:

- fast tier (``make test-fast``, in parallel under pytest-xdist): ``tests/interp``,
  ``tests/models``, ``tests/server``, ``tests/client`` (against the scripted servicer of
  ``tests/support/client_fakes.py``) and ``tests/contract`` (method table, protos, imports, docs,
  packaging, self-containment). These never start the project's server (neither in process nor as
  a process), run no console script or browser, and keep to seconds per file.
- full tier (only ``make test``, which runs every tier): ``tests/integration`` (every RPC through a
  real in-process gRPC server on port 0, and the long checks of the trained models on the full test
  set) and ``tests/e2e`` (real processes: console scripts, the CLI as a subprocess, the browser,
  deployment files, SIGTERM, the docs examples).

``tests/support`` holds helpers, not tests. tests/contract/test_tiers.py checks the rule: every test
folder is in one tier, ``make test-fast`` lists exactly the fast one, and no fast-tier test builds
the server (the ``server`` fixture refuses to start for one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TESTS = Path(__file__).resolve().parent
FULL_TIER = ("integration", "e2e")
"""The folders under tests/ that only ``make test`` runs; every other test folder is the fast tier."""


def under_ci() -> bool:
    """True on the CI machine (``CI=true``, as .ci/run and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(available: object, reason: str) -> None:
    """Skip the test when a prerequisite is missing, or fail it under ``CI=true``.

    Every test that cannot run without something outside the repository (the openssl command,
    the Fashion-MNIST files, an installed console script, docker-compose) calls this instead of
    ``pytest.skip``: on a developer machine the test is skipped with ``reason``; on CI, where
    .ci/run installs every prerequisite, a missing one is a broken setup and must not pass
    silently as a skip.
    """
    if available:
        return
    if under_ci():
        pytest.fail(f"missing prerequisite under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


MACHINE_SPECIFIC = "machine-specific"
"""The one prefix of a skip that CI accepts (.ci/run fails on any other skip): a property of the
machine no install step changes (no non-loopback address, a C library other than glibc)."""


def skip_machine_specific(reason: str) -> None:
    """Skip for a property of this machine that no install fixes; .ci/run lists these and lets them pass."""
    pytest.skip(f"{MACHINE_SPECIFIC}: {reason}")


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@pytest.fixture(autouse=True)
def _weights_downloads_stay_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A weights download in a test may only look up loopback names (or ``*.test`` names that the
    test itself fakes): the server downloads by default, and no test may try a public host.

    Only where ``models.download`` is already imported: importing it here would import torch into
    the client-only tests.
    """
    download = sys.modules.get("models.download")
    if download is not None:
        real = download.lookup

        def local_only(host: str, port: int, timeout: float) -> list:
            if host not in LOCAL_HOSTS and not host.endswith(".test"):
                raise download.DownloadFailed(f"tests never reach {host}: serve the file from 127.0.0.1")
            return real(host, port, timeout)

        monkeypatch.setattr(download, "lookup", local_only)
    yield


def require_fashion_mnist(split: str = "t10k") -> None:
    require(
        (FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz").exists(),
        f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
    )


# -- TLS certificates made by the tests (openssl) -------------------------------------------------


def _openssl(*args: str) -> None:
    require(shutil.which("openssl"), "needs the openssl command to make certificates (apt-get install openssl)")
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed_certificate(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """(key, cert) of a one-day self-signed certificate for localhost and 127.0.0.1."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return key, cert


@dataclass(frozen=True)
class MutualTLS:
    """A test CA, a server certificate and a client certificate it signed, and a stranger's client certificate."""

    ca: Path
    server_key: Path
    server_cert: Path
    client_key: Path
    client_cert: Path
    stranger_key: Path  # self-signed: not from the CA the server trusts
    stranger_cert: Path


def mutual_tls_certificates(directory: Path) -> MutualTLS:
    ca_key, ca = self_signed_certificate(directory, "ca")
    signed = {}
    for role, extension in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        key, csr, cert, ext = (directory / f"{role}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        ext.write_text(extension + "\n")
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={role}-localhost",
                 "-keyout", str(key), "-out", str(csr))  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
        signed[role] = (key, cert)
    stranger_key, stranger_cert = self_signed_certificate(directory, "stranger")
    return MutualTLS(ca, *signed["server"], *signed["client"], stranger_key, stranger_cert)


@pytest.fixture(scope="session")
def cat_rgb() -> np.ndarray:
    """skimage.data.chelsea(): a real 300x451 RGB photo of a cat, uint8."""
    from skimage import data

    return data.chelsea()


@pytest.fixture(scope="session")
def cat_png(cat_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(cat_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


@pytest.fixture(scope="session")
def fashion_test_images() -> tuple[np.ndarray, np.ndarray]:
    """The first 100 Fashion-MNIST test images (uint8 28x28) and labels (see ``require``)."""
    require_fashion_mnist()
    from models.datasets import load_dataset

    images, labels = load_dataset("fashion-mnist", "test")
    return images[:100], labels[:100]


@pytest.fixture(scope="session")
def sneaker_png(fashion_test_images) -> bytes:
    """A real Fashion-MNIST test image (a sneaker, class 7) as PNG bytes."""
    images, labels = fashion_test_images
    index = int(np.flatnonzero(labels == 7)[0])
    ok, buf = cv2.imencode(".png", images[index])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


# -- the shared real in-process server (full tier only) -------------------------------------------


def tier_of(path: Path) -> str:
    """ "full" for a file under one of FULL_TIER's folders, "fast" for any other file under tests/."""
    parts = path.resolve().relative_to(TESTS).parts
    return "full" if len(parts) > 1 and parts[0] in FULL_TIER else "fast"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A fast-tier test that asks for the shared server is a collection error, not a slow fast tier."""
    wrong = [
        item.nodeid for item in items if "server" in getattr(item, "fixturenames", ()) and tier_of(item.path) == "fast"
    ]
    if wrong:
        raise pytest.UsageError(
            "fast-tier tests may not start the server; move them to tests/integration or tests/e2e: " + ", ".join(wrong)
        )


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[object, str]]:
    """The real server of ``tests.support.servers.test_config()`` on port 0, shared by the session."""
    from server.app import create_server
    from tests.support.servers import test_config

    srv, port = create_server(test_config())
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(grace=None)


@pytest.fixture(scope="session")
def target(server) -> str:
    """ "127.0.0.1:PORT" of the shared real server."""
    return server[1]


@pytest.fixture(scope="session")
def channel(target) -> Iterator[object]:
    import grpc

    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel):
    from protos import interp_pb2_grpc

    return interp_pb2_grpc.InterpStub(channel)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray instance (2 CPUs) shared by the Ray engine's tests: starting one costs seconds."""
    from tests.support.ray_local import local_ray

    yield from local_ray()
