"""Stand-in scenes for the renderer tests: an analytic ellipsoid head (no model needed)."""

from __future__ import annotations

import torch

HEAD_AXES = (0.5, 0.4, 0.55)


def ellipsoid_density(xyz: torch.Tensor, condition=None, peak: float = 60.0) -> torch.Tensor:
    """``[N, 3] -> [N]``: a soft ellipsoid head of density ``peak`` inside, ~0 outside.

    ``condition`` (a float in [0, 1]) opens a "mouth": a blob in front of the
    face around ``z = -0.85`` that exists only for conditions above 0.5, so the
    maximum occupancy grid must keep it while any single condition may not.
    """
    a = torch.tensor(HEAD_AXES, dtype=xyz.dtype, device=xyz.device)
    r = (xyz / a).norm(dim=-1)
    sigma = peak * torch.sigmoid((1.0 - r) * 40.0)
    if condition is not None and float(condition) > 0.5:
        blob = (xyz - torch.tensor([0.0, 0.0, -0.85], dtype=xyz.dtype)).norm(dim=-1)
        sigma = sigma + peak * (blob < 0.15).to(xyz.dtype)
    return sigma


def ellipsoid_field(xyz: torch.Tensor, dirs: torch.Tensor):
    """Radiance field of the ellipsoid: colour varies smoothly with position."""
    return ellipsoid_density(xyz), torch.sigmoid(3.0 * xyz)
