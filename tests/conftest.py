"""Shared fixtures: real images (scikit-image's photos, Fashion-MNIST test images)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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
    """The first 100 Fashion-MNIST test images (uint8 28x28) and labels; skips if the data is absent."""
    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
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
