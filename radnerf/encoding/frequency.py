"""Frequency (positional) encoding, in tiny-cuda-nn's or torch-ngp's convention.

``tcnn`` (tiny-cuda-nn ``Frequency``): for each input dimension ``d`` and
frequency ``i`` in ``0..n-1`` the pair ``sin(2**i * pi * x_d)``,
``cos(2**i * pi * x_d)``, ordered dimension-major: output
``[d * 2n + 2i + {0: sin, 1: cos}]``; no copy of the input. tiny-cuda-nn
expects inputs in [0, 1]; this module encodes whatever it is given.

``ngp`` (torch-ngp ``FreqEncoder``, RAD-NeRF's ``get_encoder('frequency',
multires=n)``): ``[x, sin(2**0 x), cos(2**0 x), ..., sin(2**(n-1) x),
cos(2**(n-1) x)]`` where each term spans all dimensions and there is no pi.

Parameter-free and elementwise, so one PyTorch implementation serves every
device; autograd gives input gradients.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from radnerf.errors import ConfigError


class FrequencyEncoder(nn.Module):
    """x: [..., D] -> [..., output_dim] sines and cosines at octave frequencies.

    Args:
        input_dim: D.
        n_frequencies: number of octaves n.
        convention: 'tcnn' or 'ngp' (see the module docstring).
        include_input: prepend x itself (torch-ngp does by default; tcnn never).
    """

    def __init__(
        self,
        input_dim: int,
        n_frequencies: int,
        convention: str = "tcnn",
        include_input: bool | None = None,
    ):
        super().__init__()
        if convention not in ("tcnn", "ngp"):
            raise ConfigError(f"Unknown frequency convention {convention!r}.", "use tcnn or ngp")
        if n_frequencies < 1 or input_dim < 1:
            raise ConfigError("A frequency encoding needs input_dim >= 1 and n_frequencies >= 1.")
        self.input_dim = input_dim
        self.n_frequencies = n_frequencies
        self.convention = convention
        self.include_input = (convention == "ngp") if include_input is None else include_input
        self.output_dim = input_dim * 2 * n_frequencies + (input_dim if self.include_input else 0)
        scale = math.pi if convention == "tcnn" else 1.0
        self.register_buffer(
            "freqs",
            scale * 2.0 ** torch.arange(n_frequencies, dtype=torch.float32),
            persistent=False,
        )

    def extra_repr(self) -> str:
        return f"D={self.input_dim}, n={self.n_frequencies}, convention={self.convention}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., D] -> [..., output_dim]."""
        freqs = self.freqs.to(x.dtype)
        if self.convention == "tcnn":
            arg = x.unsqueeze(-1) * freqs  # [..., D, n]
            enc = torch.stack([torch.sin(arg), torch.cos(arg)], dim=-1)  # [..., D, n, 2]
        else:
            arg = x.unsqueeze(-2) * freqs.unsqueeze(-1)  # [..., n, D]
            enc = torch.stack([torch.sin(arg), torch.cos(arg)], dim=-2)  # [..., n, 2, D]
        enc = enc.flatten(-3)
        if self.include_input:
            enc = torch.cat([x, enc], dim=-1)
        return enc
