"""The paper's maximum occupancy grid (Section 3.4, "Maximum Occupancy Grid Pruning").

One 3D grid of densities over ``[-bound, bound]^3`` serves every audio
condition: each update samples the density at every cell under random
conditions and keeps, per cell, ``max(old * decay, new)``, so a cell stays
occupied if the mouth or eyes reach it under *some* condition, and decays away
once no condition does. Cells above ``min(mean density, density_thresh)`` are
occupied; ray marching (:mod:`radnerf.render.marching`) samples only those.

Semantics follow RAD-NeRF's ``update_extra_state`` with one cascade (``bound
<= 1``, the head's setting): cell ``(i, j, k)`` is probed at
``(2 * (i, j, k) / (H - 1) - 1) * (bound - h)`` plus uniform jitter in
``[-h, h]`` (``h = bound / H``), the probes are dilated by a 3x3x3 max, and cells
no training camera sees are marked ``-1``, never probed and never updated
(:meth:`OccupancyGrid.mark_unseen`).

Layout: ``density[i, j, k]`` is the cell at x index ``i``, y ``j``, z ``k`` (a
plain dense grid; RAD-NeRF stores the same numbers in Morton order,
:func:`to_morton` / :func:`from_morton` convert a checkpoint's
``density_grid[0]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from radnerf.render.rays import check_camera

if TYPE_CHECKING:
    from radnerf.config import RenderConfig

DensityFn = Callable[[torch.Tensor, Any], torch.Tensor]
"""``density_fn(xyz [N, 3], condition) -> sigma [N]`` (or ``[N, 1]``)."""


def _expand_bits(v: torch.Tensor) -> torch.Tensor:
    v = (v * 0x00010001) & 0xFF0000FF
    v = (v * 0x00000101) & 0x0F00F00F
    v = (v * 0x00000011) & 0xC30C30C3
    v = (v * 0x00000005) & 0x49249249
    return v


def morton3d(coords: torch.Tensor) -> torch.Tensor:
    """Morton (z-order) code of integer cell coordinates, x in the lowest bit (torch-ngp's ``__morton3D``).

    Args:
        coords: ``[N, 3]`` integer ``(x, y, z)``, each in ``[0, 1024)``.

    Returns:
        ``[N]`` int64.
    """
    c = coords.to(torch.int64)
    return _expand_bits(c[:, 0]) | (_expand_bits(c[:, 1]) << 1) | (_expand_bits(c[:, 2]) << 2)


def _dense_coords(size: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """``[size ** 3, 3]`` cell coordinates ``(i, j, k)`` in dense flat order ``(i * H + j) * H + k``."""
    r = torch.arange(size, device=device, dtype=dtype)
    ii, jj, kk = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([ii.reshape(-1), jj.reshape(-1), kk.reshape(-1)], dim=-1)


def _morton_order(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[size ** 3]`` Morton code of each dense flat index ``(i * H + j) * H + k``."""
    return morton3d(_dense_coords(size, device, torch.int64))


def to_morton(grid: torch.Tensor) -> torch.Tensor:
    """A dense ``[H, H, H]`` grid as RAD-NeRF's flat Morton-ordered ``[H ** 3]``."""
    size = grid.shape[0]
    out = torch.empty(size**3, dtype=grid.dtype, device=grid.device)
    out[_morton_order(size, grid.device)] = grid.reshape(-1)
    return out


def from_morton(flat: torch.Tensor) -> torch.Tensor:
    """RAD-NeRF's flat Morton-ordered ``[H ** 3]`` grid as a dense ``[H, H, H]``."""
    size = round(flat.shape[0] ** (1.0 / 3.0))
    if size**3 != flat.shape[0]:
        raise ValueError(f"{flat.shape[0]} cells is not a cube")
    return flat[_morton_order(size, flat.device)].reshape(size, size, size)


def _cell_centres(size: int, bound: float, device: torch.device | str) -> torch.Tensor:
    """``[H ** 3, 3]`` RAD-NeRF's probe points (before jitter), dense flat order."""
    coords = _dense_coords(size, device, torch.float32)
    half_cell = bound / size
    # RAD-NeRF's spacing: 2 / (H - 1) shrunk by half a cell, not exact cell centres.
    return (2.0 * coords / (size - 1) - 1.0) * (bound - half_cell)


class OccupancyGrid(nn.Module):
    """Maximum occupancy grid; all state is in buffers, so it rides in ``state_dict``.

    Args:
        size: cells per side (``RenderConfig.grid_size``, 128).
        bound: half side of the cube the grid covers (``ModelConfig.bound``).
        density_thresh: a cell is occupied when its density exceeds
            ``min(mean density, density_thresh)`` (``RenderConfig.density_thresh``).

    Buffers:
        density: ``[H, H, H]`` float32, decayed maximum density; ``-1`` marks
            cells no training camera sees.
        occupied: ``[H, H, H]`` bool, the cells ray marching samples.
        mean_density: ``[]`` mean of ``density`` with ``-1`` read as 0.
        updates: ``[]`` int64, number of updates so far.
    """

    def __init__(self, size: int = 128, bound: float = 1.0, density_thresh: float = 10.0):
        super().__init__()
        if size < 2:
            raise ValueError(f"grid size must be at least 2, got {size}")
        self.size = int(size)
        self.bound = float(bound)
        self.density_thresh = float(density_thresh)
        self.register_buffer("density", torch.zeros(size, size, size))
        self.register_buffer("occupied", torch.zeros(size, size, size, dtype=torch.bool))
        self.register_buffer("mean_density", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    @classmethod
    def from_config(cls, render_cfg: RenderConfig, bound: float) -> OccupancyGrid:
        """A grid sized by ``render.grid_size`` and ``render.density_thresh`` for ``model.bound``."""
        return cls(render_cfg.grid_size, float(bound), render_cfg.density_thresh)

    @property
    def threshold(self) -> float:
        """Density above which a cell is occupied: ``min(mean density, density_thresh)``."""
        return min(float(self.mean_density), self.density_thresh)

    @property
    def occupancy_rate(self) -> float:
        """Share of cells that are occupied."""
        return float(self.occupied.float().mean())

    def cell_index(self, xyz: torch.Tensor) -> torch.Tensor:
        """Flat dense index of the cell holding each point (points outside clamp to the border).

        Args:
            xyz: ``[..., 3]``.

        Returns:
            ``[...]`` int64 index into ``density.view(-1)``.
        """
        size = self.size
        g = ((xyz / self.bound + 1.0) * (0.5 * size)).clamp(0, size - 1).to(torch.int64)
        return (g[..., 0] * size + g[..., 1]) * size + g[..., 2]

    def is_occupied(self, xyz: torch.Tensor) -> torch.Tensor:
        """``[...]`` bool: whether the cell of each point ``[..., 3]`` is occupied."""
        return self.occupied.view(-1)[self.cell_index(xyz)]

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, recomputed only when ``occupied`` has changed (refresh, ``load_state_dict``)."""
        key = (self.occupied.data_ptr(), self.occupied._version, self.occupied.device)
        cache = self.__dict__.setdefault("_occupancy_cache", {})
        if cache.get("key") != key:
            cache.clear()
            cache["key"] = key
        if name not in cache:
            cache[name] = compute()
        return cache[name]

    def occupied_box(self) -> torch.Tensor | None:
        """``[6]`` world box ``(min xyz, max xyz)`` around all occupied cells, or None if none is."""

        def compute() -> torch.Tensor | None:
            idx = self.occupied.nonzero()
            if idx.numel() == 0:
                return None
            cell = 2.0 * self.bound / self.size
            lo = idx.amin(dim=0).float() * cell - self.bound
            hi = (idx.amax(dim=0).float() + 1.0) * cell - self.bound
            return torch.cat([lo, hi]).to(self.density.device)

        return self._cached("box", compute)

    def empty_distance(self) -> torch.Tensor:
        """``[H ** 3]`` int32 chessboard distance, in cells, from each cell to the nearest occupied one (0 if occupied).

        Ray marching skips ``distance - 1`` cells of empty space at once.
        Computed on the CPU (SciPy) once per change of ``occupied``.
        """

        def compute() -> torch.Tensor:
            from scipy import ndimage

            empty = ~self.occupied.cpu().numpy()
            dist = ndimage.distance_transform_cdt(empty, metric="chessboard")
            return torch.from_numpy(dist.astype("int32")).reshape(-1).to(self.occupied.device)

        return self._cached("distance", compute)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute ``mean_density`` and ``occupied`` from ``density``."""
        self.mean_density.copy_(self.density.clamp(min=0).mean())
        self.occupied.copy_(self.density > self.threshold)

    @torch.no_grad()
    def probe(
        self,
        density_fn: DensityFn,
        condition: Any,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 18,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Density at a jittered point in every cell (or in the ``cells`` mask) under one condition.

        Args:
            cells: ``[H, H, H]`` bool, the cells to probe; the others read 0.

        Returns:
            ``[H, H, H]`` float32 densities.
        """
        device = self.density.device
        points = _cell_centres(self.size, self.bound, device)
        half_cell = self.bound / self.size
        jitter = torch.rand(points.shape, generator=generator, device=device) * 2.0 - 1.0
        points = points + jitter * half_cell
        index = None if cells is None else cells.reshape(-1).nonzero().squeeze(1)
        if index is not None:
            points = points.index_select(0, index)
        values = torch.empty(points.shape[0], device=device)
        for start in range(0, points.shape[0], chunk):
            sigma = density_fn(points[start : start + chunk], condition)
            values[start : start + chunk] = sigma.detach().reshape(-1).to(values.dtype)
        if index is None:
            return values.view(self.size, self.size, self.size)
        out = torch.zeros(self.size**3, device=device)
        return out.index_copy_(0, index, values).view(self.size, self.size, self.size)

    @torch.no_grad()
    def update(
        self,
        density_fn: DensityFn,
        sample_condition: Callable[[], Any],
        decay: float = 0.95,
        num_conditions: int = 1,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 18,
    ) -> None:
        """One update of the maximum occupancy grid.

        ``new = dilate(max over num_conditions random conditions of density)``,
        then ``density = max(density * decay, new)`` on cells that are not
        marked unseen, then the threshold and ``occupied`` are recomputed.
        RAD-NeRF draws one condition per update (every 16 steps), so the
        maximum over conditions builds up across updates while ``decay``
        forgets conditions not seen for a while.

        Args:
            density_fn: ``(xyz [N, 3], condition) -> sigma [N]``, evaluated in
                chunks of ``chunk`` points without gradients.
            sample_condition: ``() -> condition``, e.g. a random training
                frame's audio code (and eye ratio).
            decay: multiplies the old densities (RAD-NeRF 0.95).
            num_conditions: conditions drawn in this update.
        """
        # Cells no training camera sees are never updated: not probing them saves the density
        # of a third of the cells on a typical clip (the dilation below then reads 0 there).
        seen = self.density >= 0
        new = None
        for _ in range(max(1, num_conditions)):
            sigma = self.probe(density_fn, sample_condition(), generator=generator, chunk=chunk, cells=seen)
            new = sigma if new is None else torch.maximum(new, sigma)
        # A 3x3x3 max (RAD-NeRF's morton3D_dilation, which starts from 0) keeps
        # cells next to thin structures, so culling errs on the safe side.
        new = F.max_pool3d(new[None, None], kernel_size=3, stride=1, padding=1)[0, 0].clamp(min=0)
        valid = self.density >= 0
        self.density.copy_(
            torch.where(valid, torch.maximum(self.density * decay, new), self.density)
        )
        self.updates += 1
        self.refresh()

    @torch.no_grad()
    def mark_unseen(
        self,
        poses: torch.Tensor,
        intrinsics: Sequence[float],
        chunk_poses: int = 64,
        chunk_points: int = 1 << 16,
    ) -> int:
        """Mark cells no camera sees as ``-1`` so updates never fill them (RAD-NeRF's ``mark_untrained_grid``).

        A cell counts as seen when its centre is in front of some camera and
        inside its frustum widened by one cell; the frustum's half extents are
        ``cx / fx`` and ``cy / fy`` (the principal point at the image centre).

        Args:
            poses: ``[B, 4, 4]`` training camera-to-world matrices in normalised space.
            intrinsics: ``(fx, fy, cx, cy)``.

        Returns:
            Number of cells marked.

        Raises:
            InputError: a pose or the intrinsics cannot be a camera (a NaN pose
                would otherwise mark every cell unseen).
        """
        device = self.density.device
        poses = torch.as_tensor(poses, dtype=torch.float32, device=device)
        if poses.dim() == 2:
            poses = poses[None]
        fx, fy, cx, cy = check_camera(poses, intrinsics, batch=True)
        points = _cell_centres(self.size, self.bound, device)
        half_cell = self.bound / self.size
        seen = torch.zeros(points.shape[0], dtype=torch.bool, device=device)
        for first in range(0, points.shape[0], chunk_points):
            pts = points[first : first + chunk_points]
            for start in range(0, poses.shape[0], chunk_poses):
                p = poses[start : start + chunk_poses]
                # world -> camera with the transpose of the rotation: [B, n, 3].
                cam = (pts[None] - p[:, None, :3, 3]) @ p[:, :3, :3]
                z = cam[..., 2]
                inside = (
                    (z > 0)
                    & (cam[..., 0].abs() < cx / fx * z + 2 * half_cell)
                    & (cam[..., 1].abs() < cy / fy * z + 2 * half_cell)
                )
                seen[first : first + chunk_points] |= inside.any(dim=0)
        unseen = ~seen.view(self.size, self.size, self.size)
        self.density[unseen] = -1.0
        self.refresh()
        return int(unseen.sum())

    @torch.no_grad()
    def load_radnerf(self, density_grid: torch.Tensor) -> None:
        """Take RAD-NeRF's ``density_grid`` buffer (``[1, H ** 3]`` Morton order) from a checkpoint."""
        flat = density_grid.reshape(-1) if density_grid.dim() == 1 else density_grid[0]
        grid = from_morton(flat.to(self.density))
        if grid.shape[0] != self.size:
            raise ValueError(f"checkpoint grid has {grid.shape[0]}^3 cells, this one {self.size}^3")
        self.density.copy_(grid)
        self.refresh()

    def extra_repr(self) -> str:
        return f"size={self.size}, bound={self.bound}, density_thresh={self.density_thresh}"
