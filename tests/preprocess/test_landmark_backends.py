"""Landmark backends on the astronaut portrait, on no face, on two faces; FAN with random networks."""

from __future__ import annotations

import numpy as np
import pytest

from radnerf.errors import ConfigError, MissingWeightsError
from radnerf.preprocess import landmark_backends as lb
from tests.preprocess.faces import astronaut, noise, two_faces


def interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


@pytest.fixture(scope="module")
def dlib_backend():
    return lb.DlibLandmarks(detect_scale=1.0)


@pytest.fixture(scope="module")
def mediapipe_backend():
    return lb.MediapipeLandmarks()


def test_dlib_finds_the_astronaut_face_where_it_is(dlib_backend):
    faces = dlib_backend.detect(astronaut())
    assert len(faces) == 1
    pts = faces[0].points
    assert pts.shape == (68, 2)
    # Golden landmarks of this photo (dlib 20 with face_recognition_models 0.3), 3 px tolerance:
    # chin, nose tip, outer eye corners, mouth corners.
    golden = np.array([[221, 178], [225, 127], [195, 101], [255, 104], [201, 140], [245, 141]], float)
    np.testing.assert_allclose(pts[[8, 30, 36, 45, 48, 54]], golden, atol=3)


def test_dlib_detects_at_a_reduced_scale(dlib_backend):
    small = lb.DlibLandmarks(detect_scale=0.8)
    full = dlib_backend.detect(astronaut())[0]
    reduced = small.detect(astronaut())[0]
    # Landmarks are fitted at full resolution whatever scale the detector ran at.
    assert np.abs(full.points - reduced.points).mean() < 0.05 * interocular(full.points)


def test_mediapipe_maps_the_mesh_onto_the_68_point_layout(dlib_backend, mediapipe_backend):
    ref = dlib_backend.detect(astronaut())[0].points
    faces = mediapipe_backend.detect(astronaut())
    assert len(faces) == 1
    err = np.linalg.norm(faces[0].points - ref, axis=1) / interocular(ref)
    # Eyes, nose and lips agree closely with dlib (a wrong index in the map is off by >0.3).
    assert err[27:68].max() < 0.15
    assert err.mean() < 0.1


@pytest.mark.parametrize("backend", ["dlib_backend", "mediapipe_backend"])
def test_no_face_in_noise(backend, request):
    assert request.getfixturevalue(backend).detect(noise()) == []


@pytest.mark.parametrize("backend", ["dlib_backend", "mediapipe_backend"])
def test_two_faces_are_both_found(backend, request):
    faces = request.getfixturevalue(backend).detect(two_faces())
    assert len(faces) == 2
    centres = sorted(f.points[30, 0] for f in faces)
    assert centres[0] < 240 < centres[1]


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="dlib"):
        lb.make_backend("openface")


def test_fan_without_weights_names_the_file_and_the_fetch_command():
    with pytest.raises(MissingWeightsError) as e:
        lb.make_backend("fan")
    assert "2DFAN4" in str(e.value) and "radnerf weights fetch fan" in str(e.value)


class _BoxDetector:
    """A face detector that returns one fixed box (S3FD's output format)."""

    reference_scale = 195

    def __init__(self, box):
        self.box = box

    def detect_from_image(self, image):
        return [np.array([*self.box, 0.99])]


@pytest.fixture
def no_numba_compile(monkeypatch):
    """face-alignment's heatmap decoding as plain Python: the same code, without numba's
    30-second first-call compilation (its JIT functions are not cached)."""
    import face_alignment.utils as fa_utils

    for name in ("_get_preds_fromhm", "transform_np"):
        monkeypatch.setattr(fa_utils, name, getattr(fa_utils, name).py_func)


CUDA = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[CUDA, pytest.mark.gpu])])
def test_fan_code_path_with_a_random_network(no_numba_compile, device):
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(0)
    net = FAN(1)  # the 2D-FAN architecture with one hourglass instead of four
    backend = lb.FanLandmarks(net, _BoxDetector([170, 70, 275, 185]), device=device)
    faces = backend.detect(astronaut())
    assert len(faces) == 1
    f = faces[0]
    assert f.points.shape == (68, 2) and np.isfinite(f.points).all()
    # Heatmap maxima land inside the crop face-alignment takes around the box.
    assert (f.points[:, 0] > 100).all() and (f.points[:, 0] < 350).all()
    assert (f.points[:, 1] > 0).all() and (f.points[:, 1] < 260).all()
    np.testing.assert_allclose(f.box, [170, 70, 275, 185])


def test_fan_with_random_s3fd_detector_finds_nothing_when_it_is_sure_of_nothing():
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(0)
    det = lb.sfd_detector(None)
    # A random S3FD scores every anchor near 0.5 and its Python post-processing
    # then takes minutes; a network sure that nothing is a face keeps the real
    # path (VGG-16 forward, decoding, filtering) and returns quickly.
    for name, module in det.face_detector.named_modules():
        if name.endswith("mbox_conf"):
            torch.nn.init.zeros_(module.weight)
            with torch.no_grad():
                module.bias.zero_()
                module.bias[0] = 10.0
    backend = lb.FanLandmarks(FAN(1), det, device="cpu")
    assert backend.detect(astronaut()[::4, ::4].copy()) == []
