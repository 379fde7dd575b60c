"""DINO's multi-crop augmentation, batched on tensors.

The reference code runs a PIL pipeline per image in data-loader workers. On two CPU cores that
costs more than the training step (256 images x 6 crops), and on a GPU it starves the device, so
here the photometric ops (colour jitter, greyscale, blur, solarisation, normalisation) work on a
whole uint8 batch at once, on whatever device the batch lives on, with per-sample random
parameters applied through masks (``torch.where``) instead of Python branches.

The geometric part depends on the input. ImageFolder views arrive already cropped and flipped
per image from the full photo, exactly as the reference crops them (``core.crops``, in the
loader workers), since photos of different sizes cannot be cropped as one batch. In-memory
images of one size (Fashion-MNIST) arrive whole, so a batched crop here sees the full image as
the reference's would, and their loader stays a plain tensor index.

Where this differs from the reference's per-image PIL pipeline:

- batched crops only: boxes are continuous (sub-pixel) and resampled with bicubic
  ``grid_sample``, which does not antialias: a crop much larger than its output size aliases a
  little where PIL would average; a box that would leave the image is clamped by trading aspect
  ratio for area, so the sampled area scale is always kept (torchvision retries 10 times, then
  falls back to a centre crop);
- colour jitter applies brightness, contrast, saturation, hue in this fixed order (torchvision
  shuffles the order per image), and hue is a rotation of the chroma plane in YIQ space rather
  than a shift in HSV, a close linear approximation that needs no per-pixel branching;
- Gaussian blur is an exact separable Gaussian truncated at 3 sigma (PIL approximates it with box
  blurs), sigma in pixels of the output view.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from core.config import CropsConfig
from core.crops import view_crops

_LUMA = torch.tensor([0.299, 0.587, 0.114])
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.5959, -0.2746, -0.3213],
                            [0.2115, -0.5227, 0.3112]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_N_CROP = 5  # uniform numbers per sample and view for the batched crop and flip
_N_PHOTOMETRIC = 9  # and for the photometric ops (see _photometric)


class MultiCropAugmentation(torch.nn.Module):
    """uint8 images -> [global 1, global 2, local 1, ..., local n], float, normalised.

    ``forward`` takes either one uncropped batch (B, C, H, W), cropped here, or the list of
    already cropped views, one (B, C, s, s) batch per view in the output's order (what
    ``core.crops.MultiCropImages`` collates to), which only get the photometric ops.

    Every random number comes from the CPU ``generator`` passed to ``forward`` (one draw per view,
    then moved to the images' device), so a generator state fixes the views bit for bit on a given
    device, independently of any global RNG that models or loaders also consume.
    """

    def __init__(self, crops: CropsConfig, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.crops = crops
        # (blur probability, solarisation probability) per view, as in the reference.
        probabilities = [(1.0, 0.0), (0.1, 0.2)] + [(0.5, 0.0)] * crops.n_local
        self.views = [(*crop, *p) for crop, p in zip(view_crops(crops), probabilities)]
        # Consecutive views of one size and scale (the globals, the locals) are augmented as one
        # batch: the same per-sample math in a third of the operator calls, whose fixed cost is
        # most of this module's time on CPU at 8 small views, and fewer kernel launches on a GPU.
        self.groups = [_ViewGroup(size, scale, [v[2:] for v in views])
                       for (size, scale), views in itertools.groupby(self.views, key=lambda v: v[:2])]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, images: Tensor | Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
        if isinstance(images, Tensor):
            x = images.float().div_(255)
            return [view for group in self.groups for view in self._crop_group(x, generator, group)]
        shapes = [tuple(view.shape[-2:]) for view in images]
        if shapes != [(size, size) for size, *_ in self.views]:
            raise ValueError(f"views of sizes {shapes} do not match the crops config "
                             f"{[size for size, *_ in self.views]}")
        views, out = list(images), []
        for group in self.groups:
            batch, views = views[:group.count], views[group.count:]
            u = self._uniforms(_N_PHOTOMETRIC, batch[0], group.count, generator)
            out.extend(self._photometric(torch.cat(batch).float().div_(255), u, group).chunk(group.count))
        return out

    def _crop_group(self, x: Tensor, generator: torch.Generator, group: _ViewGroup) -> tuple[Tensor, ...]:
        u = self._uniforms(_N_CROP + _N_PHOTOMETRIC, x, group.count, generator)
        u_area, u_ratio, u_x, u_y, u_flip = u[:_N_CROP]
        out = _resized_crop(x.repeat(group.count, 1, 1, 1), group.size, group.scale, u_area, u_ratio, u_x, u_y,
                            u_flip < 0.5)
        return self._photometric(out, u[_N_CROP:], group).chunk(group.count)

    @staticmethod
    def _uniforms(n: int, x: Tensor, views: int, generator: torch.Generator) -> Tensor:
        """``n`` uniforms per sample of each of ``views`` views, drawn view after view (so a view
        sees the same numbers however the views are grouped), side by side: (n, views * batch)."""
        return torch.cat([torch.rand(n, x.shape[0], generator=generator) for _ in range(views)], dim=1).to(x.device)

    def _photometric(self, x: Tensor, u: Tensor, group: _ViewGroup) -> Tensor:
        u_jitter, u_b, u_c, u_s, u_h, u_grey, u_blur, u_sigma, u_solarize = u
        out = _color_jitter(x, self.crops.color_jitter, (u_b, u_c, u_s, u_h), u_jitter < 0.8)
        if out.shape[1] == 3:
            out = torch.where(_mask(u_grey < 0.2), _grey(out).expand_as(out), out)
        sigma = _uniform(u_sigma, *self.crops.blur_sigma)
        out = _gaussian_blur(out, sigma, u_blur < group.per_sample(0, u_blur), self.crops.blur_sigma[1])
        if group.solarizes:
            out = torch.where(_mask(u_solarize < group.per_sample(1, u_solarize)) & (out >= 0.5), 1 - out, out)
        return (out - self.mean.to(out.device)) / self.std.to(out.device)


class _ViewGroup:
    """Consecutive views of one output size and area scale, and each one's (blur, solarisation)
    probabilities."""

    def __init__(self, size: int, scale: tuple[float, float], probabilities: list[tuple[float, float]]):
        self.size, self.scale, self.count = size, scale, len(probabilities)
        self.probabilities = torch.tensor(probabilities, dtype=torch.float32)
        self.solarizes = bool((self.probabilities[:, 1] > 0).any())

    def per_sample(self, which: int, like: Tensor) -> Tensor:
        """Probability ``which`` (0 blur, 1 solarisation) of each sample's view, shaped as ``like``."""
        return self.probabilities[:, which].repeat_interleave(like.shape[0] // self.count).to(like.device)


def eval_views(images: Tensor, size: int, crop_fraction: float,
               mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """The deterministic k-NN input: central square of ``round(crop_fraction * side)`` pixels,
    resized to ``size`` (bicubic, antialiased), scaled to [0, 1] and normalised.

    Centring uses floor division, so an odd margin leaves its extra pixel at the bottom/right.
    """
    height, width = images.shape[-2:]
    side = max(1, round(crop_fraction * min(height, width)))
    top, left = (height - side) // 2, (width - side) // 2
    x = images[..., top:top + side, left:left + side].float() / 255
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True).clamp_(0, 1)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean_t) / std_t


def _mask(flags: Tensor) -> Tensor:
    return flags.view(-1, 1, 1, 1)


def _uniform(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _grey(x: Tensor) -> Tensor:
    """Luma (ITU-R 601, as PIL's "L" mode), shape (B, 1, H, W); a 1-channel image is its own."""
    if x.shape[1] == 1:
        return x
    return torch.einsum("bchw,c->bhw", x, _LUMA.to(x.device)).unsqueeze(1)


def _resized_crop(x: Tensor, size: int, scale: tuple[float, float], u_area: Tensor, u_ratio: Tensor,
                  u_x: Tensor, u_y: Tensor, flip: Tensor) -> Tensor:
    """Random-resized crop and horizontal flip as one affine resampling: a box of area
    ``scale * H * W`` and log-uniform aspect ratio, mapped onto the ``size`` x ``size`` output;
    the flip is the sign of the box's x axis."""
    batch, channels, height, width = x.shape
    area = height * width * _uniform(u_area, *scale)
    ratio = torch.exp(_uniform(u_ratio, *_LOG_RATIO))
    w = torch.sqrt(area * ratio).clamp(max=width)
    h = (area / w).clamp(max=height)
    w = (area / h).clamp(max=width)
    x0, y0 = u_x * (width - w), u_y * (height - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([
        torch.stack([torch.where(flip, -w, w) / width, zero, (2 * x0 + w) / width - 1], dim=1),
        torch.stack([zero, h / height, (2 * y0 + h) / height - 1], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out.clamp_(0, 1)


def _color_jitter(x: Tensor, strengths: tuple[float, float, float, float],
                  uniforms: tuple[Tensor, Tensor, Tensor, Tensor], apply: Tensor) -> Tensor:
    """torchvision's ColorJitter factors, in a fixed order; saturation and hue need colour."""
    (brightness, contrast, saturation, hue), (u_b, u_c, u_s, u_h) = strengths, uniforms

    def factor(u: Tensor, strength: float) -> Tensor:
        return _mask(_uniform(u, max(0.0, 1 - strength), 1 + strength))

    out = (x * factor(u_b, brightness)).clamp_(0, 1)
    mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * factor(u_c, contrast) + mean).clamp_(0, 1)
    if x.shape[1] == 3:
        grey = _grey(out)
        out = ((out - grey) * factor(u_s, saturation) + grey).clamp_(0, 1)
        angle = -2 * math.pi * _uniform(u_h, -hue, hue)  # YIQ's chroma angle runs against HSV hue
        cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
        rotation = torch.stack([torch.stack([one, zero, zero], 1),
                                torch.stack([zero, cos, -sin], 1),
                                torch.stack([zero, sin, cos], 1)], 1)
        matrix = _YIQ_TO_RGB.to(x.device) @ rotation @ _RGB_TO_YIQ.to(x.device)
        out = torch.einsum("bij,bjhw->bihw", matrix, out).clamp_(0, 1)
    return torch.where(_mask(apply), out, x)


def _gaussian_blur(x: Tensor, sigma: Tensor, apply: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian with one kernel per sample (a grouped convolution over B*C channels).

    The kernel width is fixed by the largest sigma the config allows (3 sigma, at most the view's
    size - 1 so reflect padding is defined), so its shape never depends on the random draw.
    """
    batch, channels, height, width = x.shape
    radius = min(math.ceil(3 * max_sigma), height - 1, width - 1)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-taps ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    out = x.reshape(1, batch * channels, height, width)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"),
                   kernel.view(batch * channels, 1, 1, -1), groups=batch * channels)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"),
                   kernel.view(batch * channels, 1, -1, 1), groups=batch * channels)
    return torch.where(_mask(apply), out.view_as(x), x)
