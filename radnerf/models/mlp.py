"""The small MLPs of the head and the truncated exponential of its density.

:class:`MLP` is RAD-NeRF's (``nerf/network.py``): bias-free ``Linear`` layers
with ReLU between, parameters named ``net.<i>.weight``, so a RAD-NeRF state
dict's MLP entries load as they are.

On a CPU with bfloat16 matrix units (AMX, AVX512-BF16) an MLP can multiply in
bfloat16 (:func:`set_low_precision`; the trainer's ``train.amp`` and the
renderer's ``render.amp``), as tiny-cuda-nn's fully fused MLP multiplies in
float16 on a GPU: the weights stay float32 (checkpoints do not change), the
products and the activations between layers are bfloat16, the output float32.
On the 2-core Xeon this project is measured on, a training step's MLP products
take 2.3x less time.
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

        self.low_precision = False
        """Multiply in bfloat16 (CPU only; see :func:`set_low_precision`)."""

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
        if self.low_precision and w0.device.type == "cpu":
            width = sum(widths)
            shift = None if const is None else F.linear(const.to(w0.dtype), w0[:, width:])
            return _Bfloat16MLP.apply(len(parts), shift, *parts, w0[:, :width], *(layer.weight for layer in self.net[1:]))
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


_ROW_BUCKET = 1024
"""Rows are padded to a multiple of this in bfloat16: oneDNN compiles a kernel for every new matrix shape
(milliseconds each), and the point count changes every step; bucketed, a run meets a few dozen shapes."""


class _Bfloat16MLP(torch.autograd.Function):
    """The MLP's forward and backward with bfloat16 products (float32 accumulation inside oneDNN).

    Inputs: the number of parts ``P``, the constant's first-layer term ``[1, hidden]`` (or None),
    the ``P`` parts ``[N, d_k]`` (float32), then the layers' weights (the first one without the constant's
    columns). Returns ``[N, dim_out]`` float32. The ReLU masks come from the saved activations.
    """

    @staticmethod
    def forward(ctx, num_parts: int, shift: torch.Tensor | None, *tensors: torch.Tensor) -> torch.Tensor:
        parts, weights = tensors[:num_parts], [w.to(torch.bfloat16) for w in tensors[num_parts:]]
        n = parts[0].shape[0]
        padded = -(-n // _ROW_BUCKET) * _ROW_BUCKET
        widths = [p.shape[-1] for p in parts]
        x = torch.empty((padded, sum(widths)), dtype=torch.bfloat16, device=parts[0].device)
        start = 0
        for part, width in zip(parts, widths):
            x[:n, start : start + width] = part  # converts as it copies: no float32 concatenation
            start += width
        x[n:] = 0
        inputs = [x]
        h = F.linear(x, weights[0])
        if shift is not None:
            h = h.add_(shift.to(torch.bfloat16))
        for w in weights[1:]:
            inputs.append(torch.relu(h))
            h = F.linear(inputs[-1], w)
        ctx.save_for_backward(*inputs, *weights)
        ctx.rows, ctx.widths, ctx.has_shift = n, widths, shift is not None
        return h[:n].float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        saved = ctx.saved_tensors
        layers = len(saved) // 2
        inputs, weights = saved[:layers], saved[layers:]
        n = ctx.rows
        g = torch.empty((inputs[0].shape[0], grad.shape[-1]), dtype=torch.bfloat16, device=grad.device)
        g[:n] = grad
        g[n:] = 0  # padded rows add nothing to the weights' gradients
        weight_grads: list[torch.Tensor | None] = [None] * layers
        for i in range(layers - 1, 0, -1):
            weight_grads[i] = (g.t() @ inputs[i]).float()
            g = torch.ops.aten.threshold_backward(g @ weights[i], inputs[i], 0)
        weight_grads[0] = (g.t() @ inputs[0]).float()
        part_grads: list[torch.Tensor | None] = [None] * len(ctx.widths)
        if any(ctx.needs_input_grad[2 : 2 + len(ctx.widths)]):
            gx = (g @ weights[0])[:n].float()  # the padded product: its shape is a bucket's
            start = 0
            for k, width in enumerate(ctx.widths):
                part_grads[k] = gx[:, start : start + width]
                start += width
        shift_grad = g.sum(0, keepdim=True, dtype=torch.float32) if ctx.has_shift and ctx.needs_input_grad[1] else None
        return (None, shift_grad, *part_grads, *weight_grads)


def set_low_precision(module: nn.Module, enabled: bool) -> None:
    """Every :class:`MLP` in ``module`` multiplies in bfloat16 (``enabled``) or float32; CPU only."""
    for m in module.modules():
        if isinstance(m, MLP):
            m.low_precision = bool(enabled)


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
