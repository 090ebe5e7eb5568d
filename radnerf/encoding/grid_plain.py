"""The grid encoding in plain PyTorch: one pass per level, autograd does the rest.

This path runs anywhere PyTorch runs (CPU, CUDA, any float dtype), gives
gradients with respect to both the table and the input points, and is the
fallback when the fused CPU kernel cannot be built. It is slow on CPU
(one gather and one scatter per corner and level through the dispatcher);
:mod:`radnerf.encoding.grid_fused` is the fast CPU path with the same numbers.
"""

from __future__ import annotations

import torch

from radnerf.encoding.layout import PRIMES, GridLayout

_U32 = 0xFFFFFFFF


def grid_encode_plain(x: torch.Tensor, params: torch.Tensor, layout: GridLayout) -> torch.Tensor:
    """Encode points with the grid, differentiably, in plain PyTorch.

    Args:
        x: [N, D] points in the grid's unit cube [0, 1]^D.
        params: [n_params] flat table (level-major, then entry, then feature).
        layout: the grid's :class:`GridLayout`.

    Returns:
        [N, L * F] features, level-major (level ``l`` in columns ``l*F:(l+1)*F``).
    """
    dim = x.shape[1]
    assert dim == layout.input_dim, f"expected [N, {layout.input_dim}] points, got {tuple(x.shape)}"
    feat = layout.level_dim
    table = params.view(-1, feat)
    if layout.zero_out_of_bounds:
        inside = ((x >= 0) & (x <= 1)).all(dim=1, keepdim=True).to(x.dtype)
    corners = torch.arange(1 << dim, device=x.device)
    # bits[c, d]: whether corner c takes the upper vertex in dimension d (tcnn's order).
    bits = ((corners.unsqueeze(1) >> torch.arange(dim, device=x.device)) & 1).bool()
    outputs = []
    for level in layout.levels:
        # tiny-cuda-nn rounds x * scale + 0.5 once (fmaf); in float64 the product
        # and sum are (nearly always) exact, so one cast gives the same float32.
        pos = (x.to(torch.float64) * level.scale + layout.pos_offset).to(x.dtype)
        floor = torch.floor(pos)
        frac = pos - floor  # floor has zero gradient: d frac / d x = scale
        # (uint32)(int)floor as in the CUDA code, in int64 with explicit 32-bit wrap.
        low = floor.detach().to(torch.int64) & _U32
        mul = torch.tensor(PRIMES[:dim] if level.hashed else level.strides, device=x.device)
        part_lo = (low * mul) & _U32  # [N, D] index contribution of the lower vertex
        part_hi = ((low + 1) * mul) & _U32
        parts = torch.where(bits.unsqueeze(0), part_hi.unsqueeze(1), part_lo.unsqueeze(1))
        if level.hashed:
            index = parts[..., 0]
            for d in range(1, dim):
                index = index ^ parts[..., d]
            index = index & (level.size - 1)  # hashed levels have power-of-two tables
        else:
            index = (parts.sum(-1) & _U32) % level.size  # [N, C]
        # Weight of corner c: product over dims of frac or 1 - frac, multiplied
        # dimension by dimension like tcnn so float32 rounding matches.
        factors = torch.where(bits.unsqueeze(0), frac.unsqueeze(1), (1 - frac).unsqueeze(1))
        weight = factors[..., 0]
        for d in range(1, dim):
            weight = weight * factors[..., d]
        level_table = table[level.offset : level.offset + level.size]
        values = level_table[index]  # [N, C, F]
        outputs.append((weight.unsqueeze(-1) * values).sum(1))
    result = torch.cat(outputs, dim=1)
    if layout.zero_out_of_bounds:
        result = result * inside
    return result
