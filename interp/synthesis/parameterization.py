"""How a feature-visualization image is optimized: a function of one leaf tensor.

- ``"fourier"`` (Lucid/Lucent): a Fourier spectrum scaled by 1/f, mapped to colour with Lucid's
  decorrelating colour matrix, squashed to [0, 1] by a sigmoid;
- ``"pixel"``: sigmoid of per-pixel logits (decorrelated colours for RGB too).

Both have an inverse (:meth:`ParameterizedImage.set_images`), which is how the image-space
regularizers act on either.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Lucid's colour correlation (square root of the ImageNet colour covariance), columns normalized
# so that the largest has unit norm: decorrelated noise maps to natural colour statistics.
_COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
_FOURIER_INIT_STD = 0.01  # Lucid's fft_image sd
_FOURIER_MAGIC = 4.0  # Lucid divides the inverse FFT by 4 before the sigmoid
_PIXEL_INIT_STD = 1.0  # N(0, 1) logits: noise strong enough that few ReLU channels start dead
_PIXEL_MEAN_INIT_STD = 0.1  # from the mean image: just enough to tell restarts apart
_WRITE_BACK_EPS = 1e-4  # pixels are clamped to [eps, 1 - eps] before the logit of a write-back


class ParameterizedImage:
    """A batch of images as a function of one optimized leaf, with the inverse for write-back.

    ``images()`` maps the leaf to ``(restarts * n, C, S, S)`` in [0, 1]; ``set_images(x)`` sets
    the leaf so that ``images()`` returns ``x`` (up to the sigmoid's clamp at 1e-4 / 1 - 1e-4),
    which is how the image-space regularizers act on either parameterization.
    """

    def __init__(
        self,
        kind: str,
        leaf: Tensor,
        size: int,
        decorrelate: Tensor | None,
        scale: Tensor | None,
    ) -> None:
        self.kind, self.leaf, self.size = kind, leaf, size
        self.decorrelate, self.scale = decorrelate, scale

    def images(self) -> Tensor:
        raw = self.leaf
        if self.kind == "fourier":
            spectrum = torch.view_as_complex((self._scale() * raw).contiguous())
            raw = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / _FOURIER_MAGIC
        if self.decorrelate is not None:
            raw = torch.einsum("nchw,dc->ndhw", raw, self.decorrelate)
        return torch.sigmoid(raw)

    def set_images(self, x: Tensor) -> None:
        self.leaf.data.copy_(self.raw_for(x))

    def raw_for(self, x: Tensor) -> Tensor:
        """The leaf value whose images are ``x``."""
        raw = torch.logit(x.clamp(_WRITE_BACK_EPS, 1.0 - _WRITE_BACK_EPS))
        if self.decorrelate is not None:
            raw = torch.einsum("nchw,dc->ndhw", raw, torch.linalg.inv(self.decorrelate))
        if self.kind == "pixel":
            return raw
        spectrum = torch.fft.rfft2(raw * _FOURIER_MAGIC, norm="ortho")
        return torch.view_as_real(spectrum) / self._scale()

    def _scale(self) -> Tensor:
        if self.scale is None:
            raise TypeError("a Fourier parameterization needs its spectrum scale")
        return self.scale


def parameterize(
    kind: str,
    n: int,
    restarts: int,
    channels: int,
    size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
    start: Tensor | None = None,
) -> ParameterizedImage:
    """The optimized image batch of ``restarts * n`` images.

    The initial values are drawn restart by restart, so restart 0 starts exactly where a run
    without restarts would. With ``start`` ``(1, C, S, S)`` (the mean image), every image starts
    there plus the parameterization's init noise (pixel: logits N(0, 0.1); Fourier: Lucid's).
    """

    def draw(*shape: int, std: float) -> Tensor:
        parts = [torch.randn(n, *shape, generator=generator) for _ in range(restarts)]
        return (torch.cat(parts) * std).to(device, dtype)

    decorrelate = color_matrix(device, dtype) if channels == 3 else None
    if kind == "pixel":
        image = ParameterizedImage(kind, torch.empty(0), size, decorrelate, None)
        noise = draw(channels, size, size, std=_PIXEL_INIT_STD if start is None else _PIXEL_MEAN_INIT_STD)
    else:
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        # 1/f scaling: every frequency band starts with equal energy in the image.
        scale = (1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)).to(device, dtype)[..., None]
        image = ParameterizedImage(kind, torch.empty(0), size, decorrelate, scale)
        noise = draw(channels, size, size // 2 + 1, 2, std=_FOURIER_INIT_STD)
    leaf = noise if start is None else image.raw_for(start.expand(len(noise), -1, -1, -1)) + noise
    image.leaf = leaf.detach().requires_grad_(True)
    return image


def color_matrix(device: torch.device, dtype: torch.dtype) -> Tensor:
    m = torch.tensor(_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    m = m / m.norm(dim=0).max()
    return m.to(device, dtype)
