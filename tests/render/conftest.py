"""Fixtures for the renderer tests."""

from __future__ import annotations

import pytest
import torch

from radnerf.render import OccupancyGrid
from tests.render.render_scenes import ellipsoid_density


@pytest.fixture
def head_grid() -> OccupancyGrid:
    """A 32^3 grid updated once from the ellipsoid head."""
    grid = OccupancyGrid(size=32, bound=1.0, density_thresh=10.0)
    g = torch.Generator().manual_seed(0)
    grid.update(lambda x, c: ellipsoid_density(x), lambda: None, generator=g)
    return grid
