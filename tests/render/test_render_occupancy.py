"""The maximum occupancy grid: max over conditions, decay, threshold, unseen cells, state."""

from __future__ import annotations

import pytest
import torch

from radnerf.errors import InputError
from radnerf.render import OccupancyGrid, from_morton, morton3d, to_morton
from tests.render.render_scenes import ellipsoid_density


def _constant_field(values: dict):
    """A density that is ``values[condition]`` everywhere."""
    return lambda xyz, c: torch.full((xyz.shape[0],), float(values[c]))


def test_morton_golden_and_round_trip():
    codes = morton3d(
        torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0, 0], [3, 5, 6]])
    )
    # x is bit 0, y bit 1, z bit 2, then the next bit of each: (3,5,6) ->
    # x=011 y=101 z=110 -> bits z2y2x2 z1y1x1 z0y0x0 = 110 101 011.
    assert codes.tolist() == [1, 2, 4, 7, 8, 0b110101011]
    grid = torch.randn(8, 8, 8)
    flat = to_morton(grid)
    assert flat[0] == grid[0, 0, 0] and flat[1] == grid[1, 0, 0] and flat[2] == grid[0, 1, 0]
    assert torch.equal(from_morton(flat), grid)


def test_update_keeps_max_over_conditions_and_decays():
    grid = OccupancyGrid(size=4, bound=1.0, density_thresh=10.0)
    conditions = iter(["low", "high", "low"])
    field = _constant_field({"low": 2.0, "high": 7.0})
    grid.update(field, lambda: next(conditions), decay=0.5, num_conditions=3)
    torch.testing.assert_close(grid.density, torch.full((4, 4, 4), 7.0))
    # Later updates under the low condition only: max(7 * 0.5, 2) then max(3.5 * 0.5, 2).
    grid.update(field, lambda: "low", decay=0.5)
    torch.testing.assert_close(grid.density, torch.full((4, 4, 4), 3.5))
    grid.update(field, lambda: "low", decay=0.5)
    torch.testing.assert_close(grid.density, torch.full((4, 4, 4), 2.0))
    assert int(grid.updates) == 3


def test_condition_only_blob_survives_in_max_grid():
    # The "mouth" blob exists for conditions > 0.5: one update under each
    # keeps it occupied; an update under the closed mouth alone does not.
    centre = torch.tensor([[0.0, 0.0, -0.85]])
    both = OccupancyGrid(size=32, bound=1.0)
    conditions = iter([0.9, 0.1])
    both.update(ellipsoid_density, lambda: next(conditions), num_conditions=2)
    closed = OccupancyGrid(size=32, bound=1.0)
    closed.update(ellipsoid_density, lambda: 0.1)
    assert bool(both.is_occupied(centre)) and not bool(closed.is_occupied(centre))


def test_threshold_is_min_of_mean_and_density_thresh():
    grid = OccupancyGrid(size=8, bound=1.0, density_thresh=10.0)
    with torch.no_grad():
        grid.density.zero_()
        grid.density[:2] = 4.0  # mean 1.0
        grid.refresh()
    assert grid.threshold == pytest.approx(1.0)
    assert grid.occupancy_rate == pytest.approx(0.25)
    with torch.no_grad():
        grid.density.fill_(50.0)
        grid.density[0, 0, 0] = 5.0
        grid.refresh()
    assert grid.threshold == 10.0
    assert not bool(grid.occupied[0, 0, 0]) and bool(grid.occupied[1, 1, 1])


def test_update_dilates_a_point():
    # A density spike in one cell marks its 3x3x3 neighbourhood (RAD-NeRF's dilation).
    grid = OccupancyGrid(size=16, bound=1.0)
    target = torch.tensor([5, 9, 7])

    def spike(xyz, c):
        cell = ((xyz + 1.0) * 8.0).long().clamp(0, 15)
        return 100.0 * (cell == target).all(dim=-1).float()

    grid.update(spike, lambda: None, generator=torch.Generator().manual_seed(0))
    occupied = grid.occupied.nonzero()
    assert occupied.shape[0] == 27
    assert torch.equal(occupied.amin(0), target - 1) and torch.equal(occupied.amax(0), target + 1)


def test_cell_index_and_occupied_box():
    grid = OccupancyGrid(size=4, bound=2.0)
    with torch.no_grad():
        grid.density[1, 2, 3] = 100.0
        grid.refresh()
    # Cells are 1.0 wide over [-2, 2]: cell (1, 2, 3) spans [-1,0] x [0,1] x [1,2].
    assert bool(grid.is_occupied(torch.tensor([[-0.5, 0.5, 1.5]])))
    assert not bool(grid.is_occupied(torch.tensor([[0.5, 0.5, 1.5]])))
    assert grid.cell_index(torch.tensor([[5.0, 5.0, 5.0]])).item() == 63  # clamped
    torch.testing.assert_close(grid.occupied_box(), torch.tensor([-1.0, 0.0, 1.0, 0.0, 1.0, 2.0]))


def test_empty_distance_is_chessboard_and_cached():
    grid = OccupancyGrid(size=8, bound=1.0)
    with torch.no_grad():
        grid.density[2, 2, 2] = 100.0
        grid.refresh()
    dist = grid.empty_distance().view(8, 8, 8)
    assert dist[2, 2, 2] == 0 and dist[3, 3, 3] == 1 and dist[2, 7, 4] == 5
    with torch.no_grad():
        grid.density[7, 7, 7] = 100.0
        grid.refresh()
    assert grid.empty_distance().view(8, 8, 8)[6, 7, 7] == 1  # recomputed after the change


def test_mark_unseen_keeps_cells_out_of_updates():
    # One camera at z = -3 looking down +z with a narrow frustum sees only the
    # middle; cells outside stay -1 and unoccupied after updates.
    grid = OccupancyGrid(size=16, bound=1.0)
    pose = torch.eye(4)
    pose[2, 3] = -3.0
    marked = grid.mark_unseen(pose[None], (100.0, 100.0, 10.0, 10.0))
    assert 0 < marked < 16**3
    corner = torch.tensor([[0.95, 0.95, 0.0]])
    centre = torch.tensor([[0.0, 0.0, 0.0]])
    grid.update(_constant_field({None: 50.0}), lambda: None)
    assert grid.density.view(-1)[grid.cell_index(corner)].item() == -1.0
    assert bool(grid.is_occupied(centre)) and not bool(grid.is_occupied(corner))
    # The mean reads unseen cells as 0 density.
    seen = (grid.density >= 0).float().mean().item()
    assert float(grid.mean_density) == pytest.approx(50.0 * seen, rel=1e-5)
    # Unseen cells are not even probed: the field is asked for the seen cells' points only.
    asked = []

    def counting(xyz, condition):
        asked.append(xyz.shape[0])
        return torch.full((xyz.shape[0],), 50.0)

    grid.update(counting, lambda: None)
    assert sum(asked) == int((grid.density >= 0).sum()) == 16**3 - marked


def test_mark_unseen_refuses_unusable_cameras_and_marks_nothing():
    # A NaN pose used to mark every cell unseen (training then never fills the
    # grid) and a zero focal raised ZeroDivisionError.
    grid = OccupancyGrid(size=8, bound=1.0)
    good = torch.eye(4)
    good[2, 3] = -3.0
    bad = good.clone()
    bad[0, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        grid.mark_unseen(torch.stack([good, bad]), (100.0, 100.0, 10.0, 10.0))
    with pytest.raises(InputError, match="positive focal"):
        grid.mark_unseen(good[None], (0.0, 100.0, 10.0, 10.0))
    with pytest.raises(InputError, match="4x4"):
        grid.mark_unseen(good[None, :3], (100.0, 100.0, 10.0, 10.0))
    assert bool((grid.density >= 0).all())
    # One [4, 4] pose is still taken as a batch of one.
    assert grid.mark_unseen(good, (100.0, 100.0, 10.0, 10.0)) > 0


def test_state_dict_round_trip_and_radnerf_import():
    grid = OccupancyGrid(size=8, bound=1.0)
    grid.update(lambda x, c: 20.0 * (x[:, 0] > 0).float(), lambda: None)
    state = grid.state_dict()
    assert set(state) == {"density", "occupied", "mean_density", "updates"}
    other = OccupancyGrid(size=8, bound=1.0)
    other.load_state_dict(state)
    assert torch.equal(other.occupied, grid.occupied) and int(other.updates) == 1
    assert torch.equal(other.empty_distance(), grid.empty_distance())
    third = OccupancyGrid(size=8, bound=1.0)
    third.load_radnerf(to_morton(grid.density)[None])
    assert torch.equal(third.density, grid.density) and torch.equal(third.occupied, grid.occupied)
