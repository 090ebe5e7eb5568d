"""The small MLPs of the head and the truncated exponential of its density.

:class:`MLP` is RAD-NeRF's (``nerf/network.py``): bias-free ``Linear`` layers
with ReLU between, parameters named ``net.<i>.weight``, so a RAD-NeRF state
dict's MLP entries load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` bias-free linear layers with ReLU between (none after the last).

    ``forward(x, const)`` computes the same as ``forward(cat([x, const.expand(N, -1)], -1))``
    for inputs whose last ``k`` features are the same for every row (the audio
    code, the eye ratio, the appearance code of the one frame a step renders):
    their share of the first layer is one ``[1, k] x [k, hidden]`` product instead
    of ``N`` of them, and nothing of size ``[N, k]`` is built. With RAD-NeRF's
    sizes this is about a third of the ambient MLP's work per sample.
    """

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, num_layers: int):
        super().__init__()
        self.dim_in = dim_in
        self.dim_out = dim_out
        self.dim_hidden = dim_hidden
        self.num_layers = num_layers
        self.net = nn.ModuleList(
            nn.Linear(dim_in if i == 0 else dim_hidden, dim_out if i == num_layers - 1 else dim_hidden, bias=False)
            for i in range(num_layers)
        )

    def extra_repr(self) -> str:
        return f"{self.dim_in} -> {self.dim_hidden} x {self.num_layers - 1} -> {self.dim_out}"

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor], const: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``[N, d]`` or a list of ``[N, d_k]`` parts (read as their concatenation, without building it),
        const: ``[1, k]`` or None -> ``[N, dim_out]``."""
        parts = [x] if isinstance(x, torch.Tensor) else list(x)
        if const is not None and const.shape[-1] == 0:
            const = None
        k = 0 if const is None else const.shape[-1]
        widths = [p.shape[-1] for p in parts]
        if sum(widths) + k != self.dim_in:
            raise ValueError(f"MLP takes {self.dim_in} inputs, got {' + '.join(map(str, widths))} + {k} constant")
        w0 = self.net[0].weight
        h = None
        start = 0
        for part, width in zip(parts, widths):
            term = F.linear(part, w0[:, start : start + width])
            h = term if h is None else h.add_(term)
            start += width
        if const is not None:
            h = h.add_(F.linear(const.to(h.dtype), w0[:, start:]))
        for layer in self.net[1:]:
            # In place: a linear layer's backward needs its input, not its output.
            h = layer(F.relu(h, inplace=True))
        return h


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient is taken at ``min(x, 15)`` (instant-ngp's truncated exponential)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # A density that overflows in the forward pass still gets a finite gradient.
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Density activation: ``exp(x)`` with the gradient clamped at ``x = 15``; ``[...] -> [...]``."""
    return _TruncExp.apply(x)
