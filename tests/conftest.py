"""Shared fixtures and helpers: real images (scikit-image's photos, Fashion-MNIST test images),
``require`` for prerequisites, test-made TLS certificates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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
