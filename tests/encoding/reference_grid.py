"""A deliberately plain float64 grid encoder, written from the references' text.

Point by point, level by level, corner by corner, with Python integers; it
shares no code with radnerf.encoding so the tests compare two independent
readings of tiny-cuda-nn's grid.h and torch-ngp's gridencoder.cu.
"""

from __future__ import annotations

import math

import numpy as np

PRIMES = [1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737]
U32 = 2**32


def level_sizes(dim, num_levels, base, log2_size, pls, grid_type):
    """[(scale, resolution, size)] per level, as each reference computes them."""
    out = []
    if grid_type == "hash":
        log2_scale = np.log2(np.float32(pls), dtype=np.float32)
    else:
        log2_scale = np.float32(math.log2(pls))
    for level in range(num_levels):
        scale = np.float32(
            np.exp2(np.float32(level) * log2_scale, dtype=np.float32) * np.float32(base)
        ) - np.float32(1)
        resolution = math.ceil(float(scale)) + 1
        if grid_type == "hash":
            size = min(math.ceil(resolution**dim / 8) * 8, 2**log2_size)
        else:
            size = math.ceil(min(2**log2_size, (resolution + 1) ** dim) / 8) * 8
        out.append((float(scale), resolution, size))
    return out


def vertex_index(v, resolution, size, grid_type):
    """Table entry of integer vertex v (list of uint32) in one level."""
    stride_res = resolution if grid_type == "hash" else resolution + 1
    stride, index = 1, 0
    for d in range(len(v)):
        if stride > size:
            break
        index = (index + v[d] * stride) % U32
        stride = (stride * stride_res) % U32
    if grid_type != "tiled" and size < stride:
        index = 0
        for d in range(len(v)):
            index ^= (v[d] * PRIMES[d]) % U32
    return index % size


def reference_encode(x, params, dim, num_levels, level_dim, base, log2_size, pls, grid_type):
    """x: [N, D] in (around) [0, 1], params: flat -> [N, L * F] float64."""
    x = np.asarray(x, dtype=np.float64)
    params = np.asarray(params, dtype=np.float64)
    levels = level_sizes(dim, num_levels, base, log2_size, pls, grid_type)
    out = np.zeros((x.shape[0], num_levels * level_dim))
    for n, point in enumerate(x):
        outside = any(p < 0 or p > 1 for p in point)
        offset = 0
        for level, (scale, resolution, size) in enumerate(levels):
            if not (outside and grid_type != "hash"):
                pos = [p * scale + 0.5 for p in point]
                low = [math.floor(p) for p in pos]
                frac = [p - f for p, f in zip(pos, low)]
                for corner in range(2**dim):
                    weight = 1.0
                    v = []
                    for d in range(dim):
                        up = (corner >> d) & 1
                        weight *= frac[d] if up else 1 - frac[d]
                        v.append((low[d] + up) % U32)
                    entry = offset + vertex_index(v, resolution, size, grid_type)
                    for f in range(level_dim):
                        out[n, level * level_dim + f] += weight * params[entry * level_dim + f]
            offset += size
    return out
