"""The image and landmark metrics of RAD-NeRF / ER-NeRF evaluation, as plain functions on arrays.

- PSNR: ``-10 log10 MSE`` of colours in [0, 1] over the whole frame, or a rectangle of it.
- LPIPS: AlexNet-LPIPS of images in [0, 1] (the ``lpips`` package's ``normalize=True``: scaled to [-1, 1]).
- LMD: the mouth's 20 landmarks (48-67) of render and ground truth, each set centred on its own mean,
  mean point distance in pixels; averaged over the frames where both faces were found.
"""

from __future__ import annotations

import numpy as np
import torch

from radnerf.train.losses import psnr_images as psnr  # noqa: F401  (the one PSNR; training reports it too)

MOUTH = slice(48, 68)
"""The iBUG-68 mouth points (outer lip 48-59, inner lip 60-67)."""


def crop(image: np.ndarray, rect) -> np.ndarray:
    """``image[row0:row1, col0:col1]`` of a rectangle ``(row0, row1, col0, col1)`` clipped to the image."""
    h, w = image.shape[:2]
    r0, r1, c0, c1 = (int(v) for v in rect)
    return image[min(max(r0, 0), h):min(max(r1, 0), h), min(max(c0, 0), w):min(max(c1, 0), w)]


def lmd(pred: np.ndarray, target: np.ndarray) -> tuple[float, int]:
    """Mouth landmark distance of ``[N, 68, 2]`` landmark sets (NaN rows: no face found).

    Returns:
        (mean distance in pixels over points and frames, frames used); (NaN, 0) when no frame has both.
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must both be [N, 68, 2], got {pred.shape} and {target.shape}")
    a, b = pred[:, MOUTH], target[:, MOUTH]
    ok = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2))
    if not ok.any():
        return float("nan"), 0
    a = a[ok] - a[ok].mean(axis=1, keepdims=True)  # position of the mouth is the pose's business, not the lips'
    b = b[ok] - b[ok].mean(axis=1, keepdims=True)
    return float(np.linalg.norm(a - b, axis=-1).mean()), int(ok.sum())



@torch.no_grad()
def lpips(network: torch.nn.Module, pred: np.ndarray, target: np.ndarray) -> float:
    """AlexNet-LPIPS of two ``[H, W, 3]`` uint8 images (:func:`radnerf.models.perceptual.load_lpips`), in [0, 1]
    scaled to [-1, 1] as ``lpips``' ``normalize=True``; an image under 64 px a side is upsampled first, as the
    lip loss does (AlexNet's strides leave nothing of it otherwise)."""
    from radnerf.train.losses import lpips_patch

    a, b = (torch.from_numpy(np.ascontiguousarray(x)).float() / 255.0 for x in (pred, target))
    return float(lpips_patch(network, a, b))
