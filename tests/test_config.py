"""Config composition: every group option, presets, and readable errors for bad overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from radnerf.config import RadNerfConfig, conf_dir, config_from_dict, load_config, to_container
from radnerf.errors import ConfigError

CONF = Path(conf_dir())
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def test_conf_has_the_designed_groups():
    for group in ["paths", "ingest", "preprocess", "model", "train", "eval", "render", "preset"]:
        assert group in GROUPS


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))],
)
def test_every_group_option_composes(group, option):
    cfg = load_config([f"{group}={option}"])
    assert isinstance(cfg, RadNerfConfig)


def test_presets_change_what_they_say():
    tiny = load_config(["preset=cpu_tiny"])
    paper = load_config(["preset=paper"])
    assert tiny.preset == "cpu_tiny" and paper.preset == "paper"
    assert tiny.train.device == "cpu" and paper.train.device == "cuda"
    assert tiny.ingest.size == 256 and paper.ingest.size == 512
    assert tiny.train.head_iters < paper.train.head_iters
    assert tiny.model.spatial_grid.log2_hashmap_size < paper.model.spatial_grid.log2_hashmap_size
    smoke = load_config(["preset=smoke"])
    assert smoke.preset == "smoke" and smoke.train.device == "cpu"
    assert smoke.train.head_iters < tiny.train.head_iters and smoke.render.grid_size < tiny.render.grid_size
    # The paper's grid (Appendix A.2): 16 levels x 2 features.
    assert (paper.model.spatial_grid.num_levels, paper.model.spatial_grid.level_dim) == (16, 2)


def test_overrides_are_typed():
    cfg = load_config(["person=alice", "ingest.size=320", "ingest.crop=center", "overwrite=true"])
    assert cfg.person == "alice" and cfg.ingest.size == 320 and cfg.overwrite is True


@pytest.mark.parametrize(
    "override,expected",
    [
        ("ingest.fsp=30", "unknown config key 'ingest.fsp'; did you mean 'ingest.fps'?"),
        ("persn=bob", "did you mean 'person'"),
        ("ingest.fps=fast", "bad value for 'ingest.fps': 'fast' is not a valid integer"),
        ("overwrite=maybe", "'maybe' is not a valid bool"),
        ("preset=gpu_huge", "no option 'preset/gpu_huge' in config group 'preset' (available: cpu_tiny, paper, smoke)"),
        ("preprocess.landmarks=openpose", "preprocess.landmarks='openpose' is not one of fan, dlib, mediapipe"),
        ("model.encoding=cuda", "is not one of auto, tcnn, torch"),
        ("render.max_steps=0", "render.max_steps=0 must be at least 1"),
        ("render.grid_size=1", "render.grid_size=1 must be at least 2"),
        ("render.min_transmittance=1", "render.min_transmittance=1.0 must lie in [0, 1)"),
        ("render.grid_decay=1.5", "render.grid_decay=1.5 must lie in [0, 1]"),
        ("+extra=1", "fixed schema"),
    ],
)
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config([override])
    assert expected in str(e.value)


def test_dict_round_trip_for_prefect():
    cfg = load_config(["person=alice", "preset=cpu_tiny"])
    data = to_container(cfg)
    assert isinstance(data, dict) and data["model"]["spatial_grid"]["log2_hashmap_size"] == 14
    assert config_from_dict(data) == cfg


def test_one_frame_rate_and_window_the_copies_follow():
    """ingest.fps and audio_features.window are set once; the copies follow by interpolation."""
    from radnerf.config import load_config
    from radnerf.errors import ConfigError

    cfg = load_config(["ingest.fps=50", "audio_features.window=8"])
    assert cfg.audio_features.fps == cfg.render.fps == 50 and cfg.model.audio_window == 8
    with pytest.raises(ConfigError, match="render.fps=30 differs from ingest.fps=25") as e:
        load_config(["render.fps=30"])
    assert "set ingest.fps only" in e.value.hint


def test_grid_type_default_agrees_with_the_model_config():
    from radnerf.config import GridConfig, load_config

    cfg = load_config([])
    assert GridConfig().grid_type == cfg.model.spatial_grid.grid_type == cfg.model.audio_grid.grid_type == "hash"


def test_every_preset_composes_and_the_head_settings_are_checked():
    from radnerf.config import load_config

    for preset in ("cpu_tiny", "paper", "smoke"):
        assert load_config([f"preset={preset}"]).preset == preset
    for bad, match in (("model.backbone=nerf", "model.backbone='nerf' is not one of"),
                       ("model.ambient_dim=4", "model.ambient_dim=4 is not supported"),
                       ("train.ema_decay=1.0", "train.ema_decay=1.0 must be below 1"),
                       ("train.lr_net=0", "train.lr_net=0.0 must be positive")):
        with pytest.raises(ConfigError, match=match):
            load_config([bad])
