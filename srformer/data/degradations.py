"""Random real-world degradations of HR training batches, on the batch's device (Real-ESRGAN style).

A :class:`RealWorldDegradation` turns HR patches ``(B, 3, H, W)`` into LR patches ``(B, 3, H/s, W/s)``
through one or more :class:`DegradationRound` s (blur -> random resize -> noise -> JPEG) and a final
step (resize to exactly ``H/s x W/s`` and a sinc filter, and a JPEG, in random order), as in Real-ESRGAN's
second-order pipeline (Wang et al., ICCVW 2021). Every range and probability is an argument, so the Hydra
group ``configs/degradation/`` holds the complete recipes (``realesrgan``: the published ranges;
``photo``: everyday phone/web photos). ``degradation=bicubic`` builds no degrader at all: the training LR
is then the cached MATLAB bicubic one, exactly as before.

Randomness: every call takes a ``seed``; the same seed on the same device gives the same LR batch. Choices
that change tensor sizes (resize factor and interpolation, whether a round or the JPEG-first order
happens) are drawn once per batch on the CPU; everything else (kernels, noise, JPEG quality) per sample on
the batch's device.

Library use, by measurement: blur is :func:`kornia.filters.filter2d` with one kernel per sample; kernels
(anisotropic, generalized and plateau gaussians, sinc) are built in plain torch (kornia has only the
isotropic gaussian); JPEG is the real libjpeg codec of :func:`torchvision.io.encode_jpeg` (see
:func:`jpeg_compress` for why not kornia's differentiable JPEG).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from srformer.imresize import imresize
from srformer.pixels import snap_to_uint8_levels, to_uint8

KernelKind = Literal["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_KINDS: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
ResizeMode = Literal["area", "bilinear", "bicubic", "matlab"]
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic", "matlab")


def _pair(values: Sequence[float], what: str) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if low > high:
        raise ValueError(f"{what}: range ({low}, {high}) has its low end above its high end")
    return low, high


def _probability(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {value}")
    return float(value)


def _weights(weights: Mapping[str, float], allowed: Sequence[str], what: str) -> dict[str, float]:
    unknown = set(weights) - set(allowed)
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; allowed: {list(allowed)}")
    cleaned = {k: float(v) for k, v in weights.items() if float(v) > 0}
    if not cleaned or any(float(v) < 0 for v in weights.values()):
        raise ValueError(f"{what}: weights must be non-negative with a positive total, got {dict(weights)}")
    return cleaned


def _coerce(value: object, cls: type) -> object:
    """A nested step given as a plain mapping (as Hydra passes it) -> its dataclass."""
    return cls(**value) if isinstance(value, Mapping) else value


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class BlurStep:
    """Blur with one random kernel per sample.

    Args:
        probability: chance that a sample is blurred at all (else its kernel is the identity).
        kernel_size: (smallest, largest) odd kernel side; each sample draws an odd size in between.
        kind_weights: relative frequency of each kernel kind (``iso``/``aniso`` gaussian, ``generalized_*``
            ``exp(-0.5 q^beta)``, ``plateau_*`` ``1 / (1 + q^beta)``, ``q`` the gaussian's quadratic form).
        sigma: range of the gaussian standard deviations, in pixels of the image being blurred.
        generalized_beta: range of the generalized gaussian's shape; half the draws below 1, half above.
        plateau_beta: the same for the plateau kernel.
        sinc_probability: chance that the kernel is a 2-D sinc (ringing/overshoot) instead; cutoff in
            [pi/3, pi] for kernels under 13 pixels, else [pi/5, pi].
    """

    probability: float = 1.0
    kernel_size: Sequence[int] = (7, 21)
    kind_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "iso": 0.45,
            "aniso": 0.25,
            "generalized_iso": 0.12,
            "generalized_aniso": 0.03,
            "plateau_iso": 0.12,
            "plateau_aniso": 0.03,
        }
    )
    sigma: Sequence[float] = (0.2, 3.0)
    generalized_beta: Sequence[float] = (0.5, 4.0)
    plateau_beta: Sequence[float] = (1.0, 2.0)
    sinc_probability: float = 0.1

    def __post_init__(self) -> None:
        low, high = (int(v) for v in _pair(self.kernel_size, "blur.kernel_size"))
        if low < 1 or low % 2 == 0 or high % 2 == 0:
            raise ValueError(f"blur.kernel_size must be odd sizes >= 1, got {tuple(self.kernel_size)}")
        object.__setattr__(self, "kernel_size", (low, high))
        object.__setattr__(self, "kind_weights", _weights(self.kind_weights, KERNEL_KINDS, "blur.kind_weights"))
        object.__setattr__(self, "sigma", _pair(self.sigma, "blur.sigma"))
        object.__setattr__(self, "generalized_beta", _pair(self.generalized_beta, "blur.generalized_beta"))
        object.__setattr__(self, "plateau_beta", _pair(self.plateau_beta, "blur.plateau_beta"))
        if self.sigma[0] <= 0:
            raise ValueError(f"blur.sigma must be positive, got {self.sigma}")
        _probability(self.probability, "blur.probability")
        _probability(self.sinc_probability, "blur.sinc_probability")


@dataclass(frozen=True)
class ResizeStep:
    """Resize the whole batch by one random factor with one random interpolation.

    Args:
        relative_to: ``"input"``: the factor applies to the current size (Real-ESRGAN's first round);
            ``"output"``: to the final LR size (its second round, and where a camera's noise and JPEG live).
        up_down_keep: probabilities of enlarging, shrinking and keeping the base size.
        up_range: factor range when enlarging (>= 1).
        down_range: factor range when shrinking (<= 1).
        mode_weights: relative frequency of ``area``, ``bilinear``, ``bicubic`` (``torch.nn.functional.interpolate``)
            and ``matlab`` (MATLAB's antialiased bicubic, :func:`srformer.imresize.imresize`).
        antialias: antialias ``bilinear``/``bicubic`` when shrinking (Real-ESRGAN does not).
    """

    relative_to: Literal["input", "output"] = "input"
    up_down_keep: Sequence[float] = (0.2, 0.7, 0.1)
    up_range: Sequence[float] = (1.0, 1.5)
    down_range: Sequence[float] = (0.15, 1.0)
    mode_weights: Mapping[str, float] = field(default_factory=lambda: {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0})
    antialias: bool = False

    def __post_init__(self) -> None:
        if self.relative_to not in ("input", "output"):
            raise ValueError(f"resize.relative_to must be 'input' or 'output', got {self.relative_to!r}")
        if len(self.up_down_keep) != 3 or min(self.up_down_keep) < 0 or sum(self.up_down_keep) <= 0:
            raise ValueError(f"resize.up_down_keep must be 3 non-negative weights, got {self.up_down_keep}")
        object.__setattr__(self, "up_down_keep", tuple(float(v) for v in self.up_down_keep))
        object.__setattr__(self, "up_range", _pair(self.up_range, "resize.up_range"))
        object.__setattr__(self, "down_range", _pair(self.down_range, "resize.down_range"))
        object.__setattr__(self, "mode_weights", _weights(self.mode_weights, RESIZE_MODES, "resize.mode_weights"))
        if self.up_range[0] < 1 or not 0 < self.down_range[0] <= self.down_range[1] <= 1:
            raise ValueError("resize.up_range must be >= 1 and resize.down_range in (0, 1]")


@dataclass(frozen=True)
class NoiseStep:
    """Additive gaussian or Poisson noise, per sample, in colour or gray (the same noise in R, G and B).

    Args:
        probability: chance that a sample gets noise at all.
        gaussian_probability: chance that the noise is gaussian (else Poisson).
        gaussian_sigma: range of the gaussian standard deviation on the 0-255 scale.
        poisson_scale: range of the Poisson noise multiplier (1: the shot noise of 256 photons per unit
            intensity, Real-ESRGAN's model for 8-bit images).
        gray_probability: chance that the noise is gray.
        strength_power: how the sigma and the multiplier are drawn in their ranges: ``low + (high - low) *
            u ** strength_power`` with ``u`` uniform in [0, 1). 1: uniform; 2 keeps most draws mild while
            the range reaches heavy noise (on (0, 25): 63% of the sigmas below 10, 23% above 15).
    """

    probability: float = 1.0
    gaussian_probability: float = 0.5
    gaussian_sigma: Sequence[float] = (1.0, 30.0)
    poisson_scale: Sequence[float] = (0.05, 3.0)
    gray_probability: float = 0.4
    strength_power: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gaussian_sigma", _pair(self.gaussian_sigma, "noise.gaussian_sigma"))
        object.__setattr__(self, "poisson_scale", _pair(self.poisson_scale, "noise.poisson_scale"))
        if self.gaussian_sigma[0] < 0 or self.poisson_scale[0] < 0:
            raise ValueError("noise.gaussian_sigma and noise.poisson_scale must be non-negative")
        if not self.strength_power > 0:
            raise ValueError(f"noise.strength_power must be positive, got {self.strength_power}")
        for name in ("probability", "gaussian_probability", "gray_probability"):
            _probability(getattr(self, name), f"noise.{name}")


@dataclass(frozen=True)
class JPEGStep:
    """JPEG compression per sample (libjpeg, 4:2:0 chroma subsampling, as Pillow's defaults).

    Args:
        probability: chance that a sample is compressed.
        quality: range of the JPEG quality (integers, 1-100).
    """

    probability: float = 1.0
    quality: Sequence[int] = (30, 95)

    def __post_init__(self) -> None:
        low, high = (int(v) for v in _pair(self.quality, "jpeg.quality"))
        if low < 1 or high > 100:
            raise ValueError(f"jpeg.quality must lie in [1, 100], got {(low, high)}")
        object.__setattr__(self, "quality", (low, high))
        _probability(self.probability, "jpeg.probability")


@dataclass(frozen=True)
class DegradationRound:
    """One order of the pipeline: blur -> resize -> noise -> JPEG. ``probability``: chance (per batch)
    that the round happens at all. Steps may be given as mappings of their arguments."""

    blur: BlurStep = field(default_factory=BlurStep)
    resize: ResizeStep = field(default_factory=ResizeStep)
    noise: NoiseStep = field(default_factory=NoiseStep)
    jpeg: JPEGStep = field(default_factory=JPEGStep)
    probability: float = 1.0

    def __post_init__(self) -> None:
        for name, cls in (("blur", BlurStep), ("resize", ResizeStep), ("noise", NoiseStep), ("jpeg", JPEGStep)):
            object.__setattr__(self, name, _coerce(getattr(self, name), cls))
        _probability(self.probability, "round.probability")


@dataclass(frozen=True)
class FinalStep:
    """Resize to exactly the LR size followed by a sinc filter, and a JPEG, in random order.

    Args:
        mode_weights: interpolation of the resize to the LR size (as :class:`ResizeStep`).
        antialias: antialias ``bilinear``/``bicubic`` when shrinking.
        sinc_probability: chance (per sample) of the sinc filter (else none).
        sinc_kernel_size: (smallest, largest) odd sinc kernel side; cutoff in [pi/3, pi].
        jpeg: the last JPEG.
        jpeg_first_probability: chance (per batch) that the JPEG comes before the resize and sinc.
    """

    mode_weights: Mapping[str, float] = field(default_factory=lambda: {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0})
    antialias: bool = False
    sinc_probability: float = 0.8
    sinc_kernel_size: Sequence[int] = (7, 21)
    jpeg: JPEGStep = field(default_factory=JPEGStep)
    jpeg_first_probability: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode_weights", _weights(self.mode_weights, RESIZE_MODES, "final.mode_weights"))
        object.__setattr__(self, "jpeg", _coerce(self.jpeg, JPEGStep))
        low, high = (int(v) for v in _pair(self.sinc_kernel_size, "final.sinc_kernel_size"))
        if low < 1 or low % 2 == 0 or high % 2 == 0:
            raise ValueError(f"final.sinc_kernel_size must be odd sizes, got {(low, high)}")
        object.__setattr__(self, "sinc_kernel_size", (low, high))
        _probability(self.sinc_probability, "final.sinc_probability")
        _probability(self.jpeg_first_probability, "final.jpeg_first_probability")


# ------------------------------------------------------------------------------------------- sampling
class _Randomness:
    """Seeded draws: per-batch choices on a CPU generator (Python values, no device sync), per-sample
    values on a generator of the batch's device."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cpu = torch.Generator().manual_seed(seed)
        self.device = device
        self.on_device = torch.Generator(device=device).manual_seed(seed + 1) if device.type != "cpu" else self.cpu

    def chance(self, probability: float) -> bool:
        """One batch-level coin flip."""
        return bool(torch.rand((), generator=self.cpu) < probability)

    def pick(self, weights: Mapping[str, float] | Sequence[float]) -> str | int:
        """One batch-level weighted choice: a key of a mapping, or an index of a sequence."""
        keys = list(weights) if isinstance(weights, Mapping) else list(range(len(weights)))
        values = torch.tensor([float(weights[k]) for k in keys], dtype=torch.float64)
        return keys[int(torch.multinomial(values, 1, generator=self.cpu))]

    def uniform_scalar(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), dtype=torch.float64, generator=self.cpu))

    def uniform(self, n: int, low: float, high: float) -> Tensor:
        """(n,) float32 on the device."""
        return low + (high - low) * torch.rand(n, generator=self.on_device, device=self.device)

    def skewed(self, n: int, low: float, high: float, power: float) -> Tensor:
        """(n,) float32 on the device: ``low + (high - low) * u ** power``, ``u`` uniform (power 1: :meth:`uniform`)."""
        return low + (high - low) * torch.rand(n, generator=self.on_device, device=self.device).pow(power)

    def chances(self, n: int, probability: float) -> Tensor:
        """(n,) bool on the device."""
        return torch.rand(n, generator=self.on_device, device=self.device) < probability

    def integers(self, n: int, low: int, high: int) -> Tensor:
        """(n,) int64 on the device, in [low, high]."""
        return torch.randint(low, high + 1, (n,), generator=self.on_device, device=self.device)

    def kinds(self, n: int, weights: Mapping[str, float]) -> Tensor:
        """(n,) int64 indices into ``KERNEL_KINDS``, drawn with ``weights``."""
        full = torch.tensor([weights.get(k, 0.0) for k in KERNEL_KINDS], device=self.device)
        return torch.multinomial(full, n, replacement=True, generator=self.on_device)

    def normal(self, shape: Sequence[int]) -> Tensor:
        return torch.randn(*shape, generator=self.on_device, device=self.device)


# -------------------------------------------------------------------------------------------- kernels
def _kernel_grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(x, y) pixel offsets from the centre of a ``size x size`` kernel, each (size, size) float32."""
    axis = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _support_mask(sizes: Tensor, full_size: int) -> Tensor:
    """(B, K, K) bool: the centred ``sizes[b] x sizes[b]`` square inside each ``K x K`` kernel."""
    x, y = _kernel_grid(full_size, sizes.device)
    radius = (sizes // 2).view(-1, 1, 1)
    return (x.abs() <= radius) & (y.abs() <= radius)


def _normalize(kernels: Tensor, mask: Tensor) -> Tensor:
    kernels = kernels * mask
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def gaussian_family_kernels(
    sizes: Tensor,
    full_size: int,
    sigma_x: Tensor,
    sigma_y: Tensor,
    theta: Tensor,
    beta: Tensor,
    kinds: Tensor,
) -> Tensor:
    """Gaussian-family blur kernels, one per sample, zero outside each sample's own support.

    ``q = v^T S^-1 v`` with ``S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T``; the kernel is
    ``exp(-q/2)`` (gaussian), ``exp(-q^beta/2)`` (generalized) or ``1 / (1 + q^beta)`` (plateau); ``kinds``
    indexes :data:`KERNEL_KINDS` (isotropic kinds should get ``sigma_y = sigma_x``, ``theta = 0``).

    Args: sizes (B,) odd int64; sigma_x, sigma_y, theta, beta, kinds (B,). Returns (B, K, K) float32, each
    summing to 1, ``K = full_size``.
    """
    x, y = _kernel_grid(full_size, sizes.device)
    cos, sin = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1)
    inv_x, inv_y = (1 / sigma_x.square()).view(-1, 1, 1), (1 / sigma_y.square()).view(-1, 1, 1)
    # S^-1 = R diag(1/sx^2, 1/sy^2) R^T, written out.
    a = cos * cos * inv_x + sin * sin * inv_y
    b = cos * sin * (inv_x - inv_y)
    d = sin * sin * inv_x + cos * cos * inv_y
    q = a * x * x + 2 * b * x * y + d * y * y
    beta = beta.view(-1, 1, 1)
    family = (kinds // 2).view(-1, 1, 1)  # 0 gaussian, 1 generalized, 2 plateau (KERNEL_KINDS order)
    gaussian = torch.exp(-0.5 * q)
    generalized = torch.exp(-0.5 * q.pow(beta))
    plateau = 1 / (q.pow(beta) + 1)
    kernels = torch.where(family == 0, gaussian, torch.where(family == 1, generalized, plateau))
    return _normalize(kernels, _support_mask(sizes, full_size))


def sinc_kernels(sizes: Tensor, full_size: int, cutoff: Tensor) -> Tensor:
    """Circular low-pass (2-D sinc, ``omega J1(omega r) / (2 pi r)``) kernels, one per sample.

    Args: sizes (B,) odd int64; cutoff (B,) radians per pixel. Returns (B, K, K) float32 summing to 1.
    """
    x, y = _kernel_grid(full_size, sizes.device)
    radius = torch.sqrt(x * x + y * y)
    omega = cutoff.view(-1, 1, 1)
    safe = torch.where(radius > 0, radius, torch.ones_like(radius))
    kernels = omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe)
    kernels = torch.where(radius > 0, kernels, omega.square() / (4 * math.pi))  # the limit at r = 0
    return _normalize(kernels, _support_mask(sizes, full_size))


def identity_kernels(n: int, full_size: int, device: torch.device) -> Tensor:
    """(n, K, K): a 1 at the centre."""
    kernels = torch.zeros(n, full_size, full_size, device=device)
    kernels[:, full_size // 2, full_size // 2] = 1.0
    return kernels


def _random_sinc_cutoff(rand: _Randomness, sizes: Tensor) -> Tensor:
    """Real-ESRGAN's cutoff: uniform in [pi/3, pi] for kernels under 13 pixels, else [pi/5, pi]."""
    low = torch.where(sizes < 13, math.pi / 3, math.pi / 5)
    return low + (math.pi - low) * rand.uniform(len(sizes), 0.0, 1.0)


def random_blur_kernels(step: BlurStep, n: int, rand: _Randomness) -> Tensor:
    """(n, K, K) kernels drawn as ``step`` says (K = the largest kernel size)."""
    low, high = step.kernel_size
    full = high
    sizes = 2 * rand.integers(n, low // 2, high // 2) + 1
    kinds = rand.kinds(n, step.kind_weights)
    isotropic = kinds % 2 == 0  # KERNEL_KINDS alternates iso, aniso
    sigma_x = rand.uniform(n, *step.sigma)
    sigma_y = torch.where(isotropic, sigma_x, rand.uniform(n, *step.sigma))
    theta = torch.where(isotropic, torch.zeros_like(sigma_x), rand.uniform(n, -math.pi, math.pi))
    # Shape: half the draws below 1 (sharper peak, heavier tails), half above (flatter top), as Real-ESRGAN.
    below = rand.chances(n, 0.5)
    generalized = torch.where(
        below,
        rand.uniform(n, min(step.generalized_beta[0], 1.0), 1.0),
        rand.uniform(n, 1.0, max(step.generalized_beta[1], 1.0)),
    )
    plateau = torch.where(
        below,
        rand.uniform(n, min(step.plateau_beta[0], 1.0), 1.0),
        rand.uniform(n, 1.0, max(step.plateau_beta[1], 1.0)),
    )
    beta = torch.where(kinds >= 4, plateau, generalized)
    kernels = gaussian_family_kernels(sizes, full, sigma_x, sigma_y, theta, beta, kinds)
    sinc = sinc_kernels(sizes, full, _random_sinc_cutoff(rand, sizes))
    kernels = torch.where(rand.chances(n, step.sinc_probability).view(-1, 1, 1), sinc, kernels)
    blurred = rand.chances(n, step.probability).view(-1, 1, 1)
    return torch.where(blurred, kernels, identity_kernels(n, full, kernels.device))


def apply_kernels(images: Tensor, kernels: Tensor) -> Tensor:
    """Filter each image with its own kernel: (B, C, H, W), (B, K, K) -> (B, C, H, W).

    Borders are reflected (``torch``'s ``reflect``: no edge repeat); images too small for that are
    replicated instead.
    """
    radius = kernels.shape[-1] // 2
    border = "reflect" if radius < min(images.shape[-2:]) else "replicate"
    return kornia.filters.filter2d(images, kernels, border_type=border)


# ---------------------------------------------------------------------------------------- other steps
def resize(images: Tensor, size: tuple[int, int], mode: str, antialias: bool) -> Tensor:
    """(B, C, H, W) -> (B, C, size) with one of :data:`RESIZE_MODES`."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode == "matlab":
        return imresize(images, size=size)
    if mode == "area":
        return F.interpolate(images, size=size, mode="area")
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=antialias and shrinking)


def add_noise(images: Tensor, step: NoiseStep, rand: _Randomness) -> Tensor:
    """Gaussian or Poisson noise per sample, clamped to [0, 1]. (B, 3, H, W) -> (B, 3, H, W)."""
    n = images.shape[0]
    per_sample = (n, 1, 1, 1)
    gray = rand.chances(n, step.gray_probability).view(per_sample)

    sigma = rand.skewed(n, *step.gaussian_sigma, step.strength_power).view(per_sample) / 255.0
    colour_noise = rand.normal(images.shape)
    gaussian = torch.where(gray, colour_noise[:, :1].expand_as(images), colour_noise) * sigma

    # Shot noise: counts ~ Poisson(256 * level), on the uint8-quantized image (Real-ESRGAN's model).
    photons = 256.0
    quantized = snap_to_uint8_levels(images)
    gray_levels = kornia.color.rgb_to_grayscale(quantized).expand_as(images)
    source = torch.where(gray, gray_levels, quantized)
    shot = torch.poisson(source * photons, generator=rand.on_device) / photons - source
    poisson = shot * rand.skewed(n, *step.poisson_scale, step.strength_power).view(per_sample)

    noise = torch.where(rand.chances(n, step.gaussian_probability).view(per_sample), gaussian, poisson)
    noisy = rand.chances(n, step.probability).view(per_sample)
    return torch.where(noisy, images + noise, images).clamp(0, 1)


def jpeg_compress(images: Tensor, qualities: Sequence[int]) -> Tensor:
    """JPEG-compress each image with its own quality through libjpeg (torchvision's CPU codec).

    A real codec rather than :func:`kornia.enhance.jpeg_codec_differentiable`, by measurement on the 14
    Set14 images at x4 LR size, quality 50, against Pillow's defaults: torchvision's CPU output is
    bit-identical to Pillow's (both are libjpeg-turbo with the same tables and 4:2:0 subsampling), kornia's
    differentiable JPEG differs by 2.5 grey levels RMS (40.0 dB), as it smooths the rounding and resamples
    chroma its own way; it also needs sides that are multiples of 16. No gradient is needed here, so the
    artefacts the network learns to remove are the ones real files carry.

    CUDA batches are compressed on the CPU too: torchvision's CUDA encoder (nvJPEG) differed from libjpeg
    by 6.6 grey levels on average at quality 50 on an H200 (8.8 at quality 30), i.e. it does not make the
    artefacts of the files people have; LR patches are small, so the round trip costs little.

    Args: images (B, 3, H, W) float in [0, 1]; qualities: B integers in [1, 100].
    Returns (B, 3, H, W) float32 in [0, 1] at uint8 levels, on the images' device.
    """
    levels = to_uint8(images).cpu()
    decoded = [decode_jpeg(encode_jpeg(image, quality=int(q))) for image, q in zip(levels, qualities, strict=True)]
    return torch.stack(decoded).to(images.device).float().div(255.0)


def random_jpeg(images: Tensor, step: JPEGStep, rand: _Randomness) -> Tensor:
    """:func:`jpeg_compress` with per-sample qualities and per-sample chance, as ``step`` says."""
    n = images.shape[0]
    qualities = rand.integers(n, *step.quality)
    chosen = rand.chances(n, step.probability)
    if not bool(chosen.any()):
        return images
    compressed = jpeg_compress(images, qualities.tolist())
    return torch.where(chosen.view(n, 1, 1, 1), compressed, images)


# ------------------------------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class RealWorldDegradation:
    """The full random pipeline: ``rounds`` in order, then the :class:`FinalStep`.

    Args:
        scale: the SR factor; HR (B, 3, H, W) with H and W multiples of it becomes (B, 3, H/s, W/s).
        rounds: the degradation orders (Real-ESRGAN: two); mappings are accepted for each.
        final: resize to the LR size + sinc, and the last JPEG.
        clean_probability: chance (per sample) that the LR is instead the plain MATLAB bicubic downscale
            of the HR at uint8 levels (the classical LR), so the model keeps its quality on clean inputs.
        seed: base seed; the training module mixes in the step and the rank.
    """

    scale: int
    rounds: Sequence[DegradationRound] = field(default_factory=lambda: [DegradationRound()])
    final: FinalStep = field(default_factory=FinalStep)
    clean_probability: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {self.scale}")
        object.__setattr__(self, "scale", int(self.scale))
        object.__setattr__(self, "rounds", tuple(_coerce(r, DegradationRound) for r in self.rounds))
        object.__setattr__(self, "final", _coerce(self.final, FinalStep))
        _probability(self.clean_probability, "clean_probability")

    @torch.no_grad()
    def __call__(self, hr: Tensor, seed: int) -> Tensor:
        """Degrade HR ``(B, 3, H, W)`` float in [0, 1] -> LR ``(B, 3, H/s, W/s)`` float32 at uint8 levels.

        The same ``seed`` on the same device gives the same LR.
        """
        if hr.dim() != 4 or hr.shape[1] != 3:
            raise ValueError(f"expected HR batches (B, 3, H, W), got shape {tuple(hr.shape)}")
        height, width = hr.shape[-2:]
        if height % self.scale or width % self.scale:
            raise ValueError(f"HR size {height}x{width} is not a multiple of the scale {self.scale}")
        target = (height // self.scale, width // self.scale)
        rand = _Randomness(int(seed), hr.device)
        # fp32 even inside a bf16-autocast training step: bf16 cannot hold uint8 levels near 1.0.
        with torch.autocast(device_type=hr.device.type, enabled=False):
            out = hr.float()
            for round_ in self.rounds:
                if rand.chance(round_.probability):
                    out = self._round(out, round_, target, rand)
            out = self._final(out, target, rand)
            clean = rand.chances(hr.shape[0], self.clean_probability).view(-1, 1, 1, 1)
            if bool(clean.any()):
                out = torch.where(clean, imresize(hr.float(), size=target), out)
            return snap_to_uint8_levels(out)

    def _round(self, images: Tensor, settings: DegradationRound, target: tuple[int, int], rand: _Randomness) -> Tensor:
        n = images.shape[0]
        images = apply_kernels(images, random_blur_kernels(settings.blur, n, rand))
        step = settings.resize
        direction = rand.pick(step.up_down_keep)  # 0 up, 1 down, 2 keep
        factor = 1.0
        if direction == 0:
            factor = rand.uniform_scalar(*step.up_range)
        elif direction == 1:
            factor = rand.uniform_scalar(*step.down_range)
        base = images.shape[-2:] if step.relative_to == "input" else target
        size = (max(2, int(base[0] * factor)), max(2, int(base[1] * factor)))
        images = resize(images, size, str(rand.pick(step.mode_weights)), step.antialias).clamp(0, 1)
        images = add_noise(images, settings.noise, rand)
        return random_jpeg(images, settings.jpeg, rand)

    def _final(self, images: Tensor, target: tuple[int, int], rand: _Randomness) -> Tensor:
        step = self.final
        n = images.shape[0]
        low, high = step.sinc_kernel_size
        sizes = 2 * rand.integers(n, low // 2, high // 2) + 1
        sinc = sinc_kernels(sizes, high, math.pi / 3 + (math.pi - math.pi / 3) * rand.uniform(n, 0.0, 1.0))
        use_sinc = rand.chances(n, step.sinc_probability).view(-1, 1, 1)
        kernels = torch.where(use_sinc, sinc, identity_kernels(n, high, images.device))
        mode = str(rand.pick(step.mode_weights))

        def resize_and_sinc(x: Tensor) -> Tensor:
            return apply_kernels(resize(x, target, mode, step.antialias), kernels)

        if rand.chance(step.jpeg_first_probability):
            return resize_and_sinc(random_jpeg(images, step.jpeg, rand))
        return random_jpeg(resize_and_sinc(images).clamp(0, 1), step.jpeg, rand)


def step_seed(base_seed: int, step: int, rank: int = 0) -> int:
    """The seed of one training batch: distinct per (base seed, step, rank), stable across runs."""
    return (base_seed * 1_000_003 + step * 7919 + rank) % (2**62)
