"""Where every level of a multiresolution grid lives in the flat parameter vector.

A grid is described once, here, as a :class:`GridLayout`; the plain PyTorch
path, the fused CPU kernel and the tiny-cuda-nn wrapper all read the same
per-level numbers, so they cannot disagree about a checkpoint.

Three grid types, each matching one reference exactly:

``hash``
    tiny-cuda-nn ``HashGrid`` (``include/tiny-cuda-nn/encodings/grid.h``,
    ``GridType::Hash``), as instant-ngp and nerfstudio use it. Level ``l`` has
    ``scale = exp2f(l * log2f(per_level_scale)) * base_resolution - 1`` and
    ``resolution = ceil(scale) + 1`` vertices per side; a point ``x`` in [0, 1]
    sits at ``fmaf(scale, x, 0.5)``. The level stores
    ``min(next_multiple(resolution**D, 8), 2**log2_hashmap_size)`` entries;
    the vertex index is row-major with stride ``resolution`` while that fits
    the table, else the prime hash ``xor_d(v_d * primes[d])`` with primes
    1 / 2654435761 / 805459861. Indices wrap modulo the level's size. Nothing
    is clamped: points outside [0, 1] wrap like they do in tiny-cuda-nn.
``tiled``
    RAD-NeRF's ``gridtype='tiled'`` (its copy of torch-ngp's
    ``gridencoder``, ``align_corners=False``), which RAD-NeRF uses for the
    spatial, audio and torso grids. Same ``scale``, resolution and +0.5
    offset, but the row-major stride is ``resolution + 1``, a level stores
    ``min(2**log2_hashmap_size, (resolution + 1)**D)`` entries rounded up to a
    multiple of 8, it never hashes (indices wrap modulo the size), and a point
    with any coordinate outside [0, 1] encodes to zero with zero gradients.
``hash_ngp``
    torch-ngp's ``gridtype='hash'``: as ``tiled`` but hashing with the same
    primes once the row-major index outgrows the table.

All three store the table level-major, then vertex, then feature: entry ``i``
of level ``l``, feature ``f`` is ``params[(offsets[l] + i) * F + f]``, which
is tiny-cuda-nn's ``params`` layout and torch-ngp's ``embeddings.view(-1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID_TYPES = ("hash", "tiled", "hash_ngp")

#: tiny-cuda-nn's ``fast_hash`` primes (the first is 1 for memory coherence).
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)

_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class LevelLayout:
    """One resolution level of a grid."""

    scale: float
    """Position multiplier (a float32 value): a point ``x`` sits at ``x * scale + 0.5``."""
    resolution: int
    """Vertices per side, ``ceil(scale) + 1``."""
    offset: int
    """First table entry of this level (in entries of ``F`` features)."""
    size: int
    """Entries in this level's table ("hashmap_size" in tiny-cuda-nn)."""
    strides: tuple
    """Row-major index stride per dimension; 0 where the reference stops adding dimensions."""
    hashed: bool
    """Whether the vertex index is the prime hash rather than the row-major index."""


@dataclass(frozen=True)
class GridLayout:
    """All levels of a grid plus what the kernels need to know."""

    grid_type: str
    """'hash', 'tiled' or 'hash_ngp' (see the module docstring)."""
    input_dim: int
    """Dimensions of the encoded points (D)."""
    num_levels: int
    """Number of levels (L)."""
    level_dim: int
    """Features per level (F)."""
    base_resolution: int
    """Resolution of the coarsest level as configured."""
    per_level_scale: float
    """Growth factor between levels (a float32 value)."""
    log2_hashmap_size: int
    """log2 of the largest table a level may have."""
    levels: tuple
    """The :class:`LevelLayout` of each level, coarse to fine."""

    @property
    def num_entries(self) -> int:
        """Table entries over all levels (rows of the ``[entries, F]`` view)."""
        last = self.levels[-1]
        return last.offset + last.size

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return self.num_entries * self.level_dim

    @property
    def output_dim(self) -> int:
        """Features per encoded point, ``L * F``."""
        return self.num_levels * self.level_dim

    @property
    def zero_out_of_bounds(self) -> bool:
        """torch-ngp zeroes points outside [0, 1]; tiny-cuda-nn lets them wrap."""
        return self.grid_type != "hash"

    @property
    def pos_offset(self) -> float:
        """The +0.5 that staggers the levels (instant-ngp, Appendix A)."""
        return 0.5


def per_level_scale_from(base_resolution: int, desired_resolution: float, num_levels: int) -> float:
    """The growth factor that takes ``base_resolution`` to ``desired_resolution``.

    torch-ngp's (and nerfstudio's) formula:
    ``exp2(log2(desired / base) / (L - 1))``; one level means a factor of 1.
    """
    if num_levels <= 1:
        return 1.0
    return float(np.exp2(np.log2(desired_resolution / base_resolution) / (num_levels - 1)))


def _level_scale(level: int, log2_scale: np.float32, base_resolution: int) -> np.float32:
    # Both references compute this in float32: exp2f(level * log2_scale) * base - 1.0f.
    with np.errstate(over="ignore"):
        grown = np.exp2(np.float32(np.float32(level) * log2_scale), dtype=np.float32)
        return np.float32(grown * np.float32(base_resolution)) - np.float32(1.0)


def _strides_and_hash(
    resolution_stride: int, size: int, input_dim: int, may_hash: bool
) -> tuple[tuple, bool]:
    # Mirrors grid_index()/get_grid_index(): add dimensions while the stride
    # still fits the table (uint32 arithmetic, as in the CUDA code), hash if it
    # outgrew the table.
    strides: list[int] = []
    stride = 1
    for _ in range(input_dim):
        if stride <= size:
            strides.append(stride)
            stride = (stride * resolution_stride) & _U32
        else:
            strides.append(0)
    hashed = may_hash and size < stride
    return tuple(strides), hashed


def grid_layout(
    input_dim: int,
    num_levels: int = 16,
    level_dim: int = 2,
    base_resolution: int = 16,
    log2_hashmap_size: int = 19,
    per_level_scale: float | None = None,
    desired_resolution: float | None = None,
    grid_type: str = "hash",
) -> GridLayout:
    """The layout of a grid, in one of the three reference conventions.

    Args:
        input_dim: D, 1 to 7.
        num_levels: L.
        level_dim: F, features per level.
        base_resolution: resolution of level 0.
        log2_hashmap_size: log2 of the per-level table cap.
        per_level_scale: growth factor between levels; if None it is derived
            from ``desired_resolution``.
        desired_resolution: resolution of the finest level (used when
            ``per_level_scale`` is None).
        grid_type: 'hash', 'tiled' or 'hash_ngp'.
    """
    from radnerf.errors import ConfigError

    if grid_type not in GRID_TYPES:
        raise ConfigError(
            f"Unknown grid type {grid_type!r}.", f"use one of {', '.join(GRID_TYPES)}"
        )
    if not 1 <= input_dim <= len(PRIMES):
        raise ConfigError(f"A grid encodes 1 to 7 dimensions, not {input_dim}.")
    if num_levels < 1 or level_dim < 1 or base_resolution < 1:
        raise ConfigError("num_levels, level_dim and base_resolution must be positive.")
    if not 0 < log2_hashmap_size <= 30:
        raise ConfigError(f"log2_hashmap_size must be in 1..30, not {log2_hashmap_size}.")
    if per_level_scale is None:
        if desired_resolution is None:
            raise ConfigError("Give per_level_scale or desired_resolution for a grid.")
        per_level_scale = per_level_scale_from(base_resolution, desired_resolution, num_levels)
    pls = np.float32(per_level_scale)
    max_table = 1 << log2_hashmap_size

    if grid_type == "hash":
        # grid.h: std::log2 of the float per_level_scale, i.e. a float log2.
        log2_scale = np.float32(np.log2(pls, dtype=np.float32))
    else:
        # grid.py: S = np.log2(per_level_scale) in double, handed to the kernel as float.
        log2_scale = np.float32(np.log2(float(per_level_scale)))

    levels = []
    offset = 0
    for level in range(num_levels):
        scale = _level_scale(level, log2_scale, base_resolution)
        resolution = math.ceil(float(scale)) + 1
        if grid_type == "hash":
            dense = min(resolution**input_dim, _U32 // 2)
            dense = -(-dense // 8) * 8
            size = min(dense, max_table)
            index_stride = resolution
        else:
            # torch-ngp sizes the level from ceil(base * pls**l) in double; that
            # equals the kernel's resolution except at float ties, where torch-ngp
            # itself would be inconsistent.
            index_stride = resolution + 1
            size = min(max_table, index_stride**input_dim)
            size = -(-size // 8) * 8
        strides, hashed = _strides_and_hash(index_stride, size, input_dim, grid_type != "tiled")
        levels.append(
            LevelLayout(
                scale=float(scale),
                resolution=resolution,
                offset=offset,
                size=size,
                strides=strides,
                hashed=hashed,
            )
        )
        offset += size
    return GridLayout(
        grid_type=grid_type,
        input_dim=input_dim,
        num_levels=num_levels,
        level_dim=level_dim,
        base_resolution=base_resolution,
        per_level_scale=float(pls),
        log2_hashmap_size=log2_hashmap_size,
        levels=tuple(levels),
    )
