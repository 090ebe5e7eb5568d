"""Grid layouts against tiny-cuda-nn's and RAD-NeRF's numbers."""

import pytest

from radnerf.encoding.layout import grid_layout, per_level_scale_from
from radnerf.errors import ConfigError
from tests.encoding.reference_grid import level_sizes


def test_tcnn_layout_golden_parameter_count():
    # tiny-cuda-nn's own layout test: base 32, log2 table 16, 20 levels, F=2, scale 1.5.
    layout = grid_layout(
        3,
        num_levels=20,
        level_dim=2,
        base_resolution=32,
        log2_hashmap_size=16,
        per_level_scale=1.5,
        grid_type="hash",
    )
    assert layout.n_params == 2_555_904
    sizes = [lv.size for lv in layout.levels]
    assert sizes == [32**3] + [2**16] * 19
    assert [lv.resolution for lv in layout.levels[:3]] == [32, 48, 72]
    assert [lv.hashed for lv in layout.levels] == [False] + [True] * 19
    assert [lv.offset for lv in layout.levels[:3]] == [0, 32768, 32768 + 65536]


def test_issue_benchmark_grid_levels():
    # 16 levels x 2 features, 2^19 table, 16 -> 2048: five dense levels, then hashed.
    layout = grid_layout(3, 16, 2, 16, 19, desired_resolution=2048)
    assert [lv.resolution for lv in layout.levels] == [
        16,
        23,
        31,
        43,
        59,
        81,
        112,
        154,
        213,
        295,
        407,
        562,
        777,
        1073,
        1483,
        2048,
    ]
    assert [lv.size for lv in layout.levels[:5]] == [4096, 12168, 29792, 79512, 205384]
    assert all(lv.size == 2**19 and lv.hashed for lv in layout.levels[5:])
    assert layout.n_params == 12_196_240
    assert layout.output_dim == 32


def test_radnerf_tiled_spatial_grid_count():
    # RAD-NeRF's spatial tiledgrid (bound 1): (R+1)^3 per level, capped at 2^16, multiple of 8.
    layout = grid_layout(3, 16, 2, 16, 16, desired_resolution=2048, grid_type="tiled")
    assert [lv.size for lv in layout.levels[:4]] == [4920, 13824, 32768, 65536]
    assert layout.n_params == 1_806_960
    assert not any(lv.hashed for lv in layout.levels)
    assert layout.zero_out_of_bounds


@pytest.mark.parametrize("grid_type", ["hash", "tiled", "hash_ngp"])
@pytest.mark.parametrize("dim,pls", [(2, 1.5), (3, 2.0), (3, 1.3819)])
def test_layout_matches_plain_reference(grid_type, dim, pls):
    layout = grid_layout(dim, 12, 2, 16, 14, per_level_scale=pls, grid_type=grid_type)
    expected = level_sizes(dim, 12, 16, 14, pls, grid_type)
    assert [(lv.scale, lv.resolution, lv.size) for lv in layout.levels] == expected


def test_per_level_scale_from_desired_resolution():
    assert per_level_scale_from(16, 2048, 16) == pytest.approx(128 ** (1 / 15))
    assert per_level_scale_from(16, 2048, 1) == 1.0
    layout = grid_layout(2, 16, 2, 16, 19, desired_resolution=2048)
    assert layout.levels[-1].resolution == 2048


def test_bad_layouts_are_config_errors():
    with pytest.raises(ConfigError):
        grid_layout(3, grid_type="dense")
    with pytest.raises(ConfigError):
        grid_layout(8)
    with pytest.raises(ConfigError):
        grid_layout(3, per_level_scale=None, desired_resolution=None)
