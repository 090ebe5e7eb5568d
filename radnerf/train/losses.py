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
