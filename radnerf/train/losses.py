"""The head's losses (paper Eqs. 4-6, RAD-NeRF's ``train_step``) and PSNR.

All take per-ray tensors of one batch of ``N`` rays.
"""

from __future__ import annotations

import math

import torch


def photometric(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean squared error of ``[N, 3]`` colours in [0, 1] -> ``[]``."""
    return (rgb - target).square().mean()


def opacity_entropy(opacity: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Eq. 5: mean binary entropy (bits) of ``[N]`` accumulated opacities, pushing each to 0 or 1 -> ``[]``."""
    a = opacity.clamp(eps, 1.0 - eps)
    return (-(a * torch.log2(a) + (1.0 - a) * torch.log2(1.0 - a))).mean()


def ambient_outside_face(ambient: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Eq. 6: mean over all rays of the accumulated ``|audio coordinate|`` ``[N]`` of rays outside the face
    (``face [N]`` False) -> ``[]``: audio may change the lower face, nothing else (hair, ears)."""
    return (ambient * (~face).to(ambient.dtype)).mean()


def lpips_patch(network: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor, min_side: int = 64) -> torch.Tensor:
    """LPIPS between two ``[h, w, 3]`` patches in [0, 1] -> ``[]`` (RAD-NeRF's lip loss, paper Section 3.3).

    Patches with a side under ``min_side`` are upsampled first (bilinear, both alike): AlexNet's first
    layer strides by 4 and two poolings follow, so a 40-pixel lip patch at 256 px would reach its last
    layers as a single pixel.
    """
    import torch.nn.functional as F

    device = next(network.parameters()).device
    x = torch.stack([pred, target]).to(device).permute(0, 3, 1, 2).float() * 2.0 - 1.0
    h, w = x.shape[-2:]
    if min(h, w) < min_side:
        scale = min_side / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
    return network(x[:1], x[1:]).mean()


def ramp(step: int, length: float) -> float:
    """RAD-NeRF's weight schedule for Eq. 6: ``min(step / length, 1)`` (1 at once when ``length`` is 0)."""
    return 1.0 if length <= 0 else min(step / length, 1.0)


def psnr(mse: float) -> float:
    """``-10 log10(mse)`` for colours in [0, 1] (inf for a perfect match)."""
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def psnr_images(a, b) -> float:
    """PSNR of two images of one shape: uint8 arrays are read as ``[0, 255]``, float ones as ``[0, 1]``."""
    import numpy as np

    a, b = (np.asarray(x) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    a, b = (x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64) for x in (a, b))
    return psnr(float(np.mean((a - b) ** 2)))
