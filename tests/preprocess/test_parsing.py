"""Parsing: RAD-NeRF's colours on disk, the offline and BiSeNet backends, the stage."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from radnerf.errors import ConfigError, InputError, MissingWeightsError
from radnerf.preprocess import parsing
from radnerf.preprocess.landmark_backends import DlibLandmarks
from radnerf.preprocess.landmarks import landmarks
from radnerf.preprocess.parsing import BACKGROUND, HEAD, NECK, TORSO
from tests.preprocess.faces import astronaut, config, make_person


@pytest.fixture(scope="module")
def astronaut_points():
    return DlibLandmarks().detect(astronaut())[0].points


@pytest.fixture(scope="module")
def offline():
    return parsing.OfflineParsing()


def test_files_use_radnerf_colours_as_its_process_py_reads_them(tmp_path):
    labels = np.array([[BACKGROUND, HEAD, NECK, TORSO]], np.uint8)
    from radnerf.media.images import write_rgb

    write_rgb(tmp_path / "0.png", parsing.colourise(labels))
    seg = cv2.imread(str(tmp_path / "0.png"))  # BGR, as RAD-NeRF's extract_torso_and_gt reads it
    assert seg[0, 0].tolist() == [255, 255, 255]  # bg_part
    assert seg[0, 1].tolist() == [255, 0, 0]  # head_part: seg[..., 0] == 255
    assert seg[0, 2].tolist() == [0, 255, 0]  # neck_part
    assert seg[0, 3].tolist() == [0, 0, 255]  # torso_part: seg[..., 2] == 255
    np.testing.assert_array_equal(parsing.read_parsing(tmp_path / "0.png"), labels)


def test_bisenet_classes_merge_as_radnerf_merges_them():
    m = parsing.BISENET_TO_LABEL
    assert m[0] == BACKGROUND
    assert set(m[1:14]) == {HEAD}  # skin, brows, eyes, glasses, ears, earring, nose, mouth, lips
    assert m[14] == m[15] == NECK  # neck, necklace
    assert m[16] == TORSO  # cloth
    assert m[17] == m[18] == HEAD  # hair, hat


def test_offline_parses_the_astronaut(offline, astronaut_points):
    labels = offline.parse(astronaut(), astronaut_points)
    assert labels.shape == (512, 512)

    def y(x, yy):
        return labels[yy, x]

    assert y(225, 120) == HEAD  # face
    assert y(225, 40) == HEAD  # hair above the forehead
    assert y(165, 110) == HEAD  # hair beside the temple
    assert y(222, 185) == NECK  # under the chin
    assert y(100, 350) == TORSO  # the suit
    assert y(10, 10) == BACKGROUND and y(400, 100) == BACKGROUND  # sky, rocket
    # The hair is not lost to the background: the person mask reaches above the brows.
    top_of_head = np.flatnonzero(labels[:, 225] == HEAD)[0]
    assert top_of_head < 30


def test_split_person_geometry_on_a_synthetic_face():
    from tests.preprocess.test_landmarks import synthetic_points

    pts = synthetic_points(cx=100, cy=80, width=80)
    image = np.full((200, 200, 3), 180, np.uint8)  # one skin tone everywhere
    labels = parsing.split_person(image, np.ones((200, 200), bool), pts)
    assert labels[80, 100] == HEAD  # face centre
    assert labels[20, 100] == HEAD  # above the brows (hair)
    assert labels[60, 20] == HEAD  # beside the face, above the chin
    assert labels[135, 100] == NECK  # under the chin (chin at y = 120)
    assert labels[190, 30] == TORSO  # shoulder
    # A shadow under the chin, whatever its colour, still joins the neck to the head.
    shaded = image.copy()
    shaded[121:127] = (20, 10, 60)
    labels = parsing.split_person(shaded, np.ones((200, 200), bool), pts)
    assert labels[123, 100] == NECK and labels[135, 100] == NECK
    # A neck of another colour than the cheeks is clothing (a collar), not neck.
    image[125:, :] = (30, 60, 160)
    labels = parsing.split_person(image, np.ones((200, 200), bool), pts)
    assert labels[135, 100] == TORSO


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"), pytest.mark.gpu]),
])
def test_bisenet_code_path_with_a_random_network(device):
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(0)
    parser = parsing.BiSeNetParsing(BiSeNet(num_class=19), device=device)
    labels = parser.parse(astronaut()[:300, :200].copy())
    assert labels.shape == (300, 200)
    assert set(np.unique(labels)) <= {BACKGROUND, HEAD, NECK, TORSO}


class _Constant(torch.nn.Module):
    """A 'network' whose argmax is class 16 (cloth) left and 17 (hair) right."""

    def forward(self, x):
        out = torch.zeros(1, 19, *x.shape[2:])
        w = x.shape[3]
        out[0, 16, :, : w // 2] = 1
        out[0, 17, :, w // 2:] = 1
        return out, out, out


def test_bisenet_output_is_resized_back_and_merged():
    labels = parsing.BiSeNetParsing(_Constant()).parse(np.zeros((100, 60, 3), np.uint8))
    assert labels.shape == (100, 60)
    assert (labels[:, :29] == TORSO).all() and (labels[:, 31:] == HEAD).all()


def test_bisenet_without_weights_names_the_fetch_command():
    with pytest.raises(MissingWeightsError, match="radnerf weights fetch bisenet"):
        parsing.make_backend("bisenet")


def test_unknown_parsing_backend():
    with pytest.raises(ConfigError, match="offline"):
        parsing.make_backend("sam")


def test_parse_stage_writes_parsing_pngs_and_skips_a_rerun(tmp_path):
    make_person(tmp_path / "alice", [astronaut()] * 2)
    cfg = config(tmp_path, "alice")
    with pytest.raises(InputError, match="landmarks"):
        parsing.parse(cfg)  # the offline parser needs the landmarks first
    landmarks(cfg)
    first = parsing.parse(cfg)
    out = first.output
    assert not first.skipped
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png"]
    labels = parsing.read_parsing(out / "1.png")
    assert labels[120, 225] == HEAD and labels[10, 10] == BACKGROUND
    manifest = json.loads((tmp_path / "alice" / "manifests" / "parse.json").read_text())
    assert manifest["backend"] == "offline" and manifest["frames_without_head"] == []
    assert (tmp_path / "alice" / "overlays" / "parse_0.jpg").exists()
    stamp = (out / "0.png").stat().st_mtime_ns
    again = parsing.parse(cfg)
    assert (out / "0.png").stat().st_mtime_ns == stamp
    assert again.skipped and not again.adopted and again.metrics == first.metrics
    assert again.metrics["mean_share.head"] > 0


def test_a_parsing_folder_radnerf_did_not_write_missing_frames_is_refused_then_replaced_with_overwrite(tmp_path):
    """Only some parsing/*.png in a folder radnerf did not write: refused, nothing deleted; overwrite=true redoes it."""
    from radnerf.errors import StageOutputExistsError
    from radnerf.media.images import write_rgb

    root = make_person(tmp_path / "half", [astronaut()] * 2)
    cfg = config(tmp_path, "half")
    landmarks(cfg)
    (root / "parsing").mkdir()
    theirs = parsing.colourise(np.full((512, 512), TORSO, np.uint8))
    write_rgb(root / "parsing" / "0.png", theirs)
    before = (root / "parsing" / "0.png").read_bytes()
    with pytest.raises(StageOutputExistsError, match=r"parsing that radnerf did not write \(no parsing/<i>.png for frames 1 "):
        parsing.parse(cfg)
    assert sorted(p.name for p in (root / "parsing").iterdir()) == ["0.png"]
    assert (root / "parsing" / "0.png").read_bytes() == before
    assert not (root / "manifests" / "parse.json").exists()
    cfg.overwrite = True
    result = parsing.parse(cfg)
    assert not result.skipped and not result.adopted
    assert sorted(p.name for p in result.output.iterdir()) == ["0.png", "1.png"]
    assert parsing.read_parsing(result.output / "0.png")[120, 225] == HEAD
    assert "imported" not in json.loads((root / "manifests" / "parse.json").read_text())


def test_parse_stage_with_bisenet_and_no_weights_fails_clearly(tmp_path):
    make_person(tmp_path / "b", [astronaut()])
    with pytest.raises(MissingWeightsError, match="radnerf weights fetch bisenet"):
        parsing.parse(config(tmp_path, "b", parsing="bisenet"))


def per_pixel_regions(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The geometry of :func:`parsing.split_person` evaluated at every pixel: ``below``, ``band``."""
    h, w = size
    chin, right, down, face_w, face_h = parsing._face_frame(points)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx - chin[0]) * right[0] + (yy - chin[1]) * right[1]
    v = (xx - chin[0]) * down[0] + (yy - chin[1]) * down[1]
    jaw = points[:17] - chin
    ju, jv = jaw @ right, jaw @ down
    order = np.argsort(ju)
    side_v = -0.15 * face_h
    below = v > np.interp(u, ju[order], jv[order], left=side_v, right=side_v)
    band = below & (np.abs(u) < 0.36 * face_w) & (v < 0.75 * face_h)
    return below, band


@pytest.mark.parametrize("tilt", [0.0, 0.3])
def test_rasterised_geometry_matches_the_per_pixel_definition(astronaut_points, tilt):
    c, s = np.cos(tilt), np.sin(tilt)
    centre = astronaut_points.mean(0)
    pts = (astronaut_points - centre) @ np.array([[c, s], [-s, c]]) + centre
    below, band = per_pixel_regions(pts, (512, 512))
    labels = parsing.split_person(np.full((512, 512, 3), 128, np.uint8), np.ones((512, 512), bool), pts)
    face = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(face, [np.round(parsing.face_polygon(pts)).astype(np.int32)], 1)
    outside_face = ~face.astype(bool)
    agree = ((labels != HEAD) == below)[outside_face].mean()
    assert agree > 0.998
    neck = labels == NECK  # a flat grey image is all "skin": the neck is the whole band
    assert (neck == (band & outside_face)).mean() > 0.998
