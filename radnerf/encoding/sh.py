"""Spherical-harmonics encoding of directions, tiny-cuda-nn's basis and order.

tiny-cuda-nn's ``SphericalHarmonics`` (``encodings/spherical_harmonics.h``)
with ``degree`` bands gives ``degree**2`` outputs from the real SH basis in
Sloan's sign convention; torch-ngp's ``SHEncoder`` (RAD-NeRF's
``get_encoder('spherical_harmonics')``, degree 4) uses the same polynomials.
This module takes unit directions in [-1, 1]^3 like torch-ngp; tiny-cuda-nn
takes ``(d + 1) / 2`` and undoes the mapping inside, so the outputs agree.
"""

from __future__ import annotations

import torch
from torch import nn

from radnerf.errors import ConfigError

MAX_DEGREE = 4


def sh_basis(d: torch.Tensor, degree: int) -> torch.Tensor:
    """d: [..., 3] unit directions -> [..., degree**2] SH values (tcnn order and signs)."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xy, yz, xz, x2, y2, z2 = x * y, y * z, x * z, x * x, y * y, z * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * z2 - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * x2 - 0.54627421529603959 * y2,
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * x2 + y2),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * z2),
            0.3731763325901154 * z * (5.0 * z2 - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * z2),
            1.4453057213202769 * z * (x2 - y2),
            0.59004358992664352 * x * (-x2 + 3.0 * y2),
        ]
    return torch.stack(out, dim=-1)


class SHEncoder(nn.Module):
    """d: [..., 3] unit directions -> [..., degree**2] spherical harmonics.

    Args:
        degree: number of bands, 1 to 4 (tiny-cuda-nn's ``degree``; 4 gives 16 outputs).
    """

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= MAX_DEGREE:
            raise ConfigError(f"Spherical-harmonics degree must be 1..{MAX_DEGREE}, not {degree}.")
        self.degree = degree
        self.input_dim = 3
        self.output_dim = degree * degree

    def extra_repr(self) -> str:
        return f"degree={self.degree}"

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """d: [..., 3] -> [..., degree**2]."""
        return sh_basis(d, self.degree)
