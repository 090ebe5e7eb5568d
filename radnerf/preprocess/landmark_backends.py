"""68-point face landmark detectors behind one interface: ``fan``, ``dlib``, ``mediapipe``.

All backends return every face they find in an image as :class:`Face`, with
points in the iBUG 300-W 68-point layout that FAN and dlib share (jaw 0-16,
brows 17-26, nose 27-35, eyes 36-47, lips 48-67), in pixel coordinates of the
full image. Choosing the person's face among them is the stage's job
(:mod:`radnerf.preprocess.landmarks`).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from radnerf.errors import ConfigError, RadNerfError

LANDMARK_BACKENDS = ("fan", "dlib", "mediapipe")


@dataclass
class Face:
    """One detected face."""

    box: np.ndarray
    """``[4]`` x0, y0, x1, y1 in pixels."""
    points: np.ndarray
    """``[68, 2]`` x, y in pixels (iBUG 68-point layout)."""
    score: float
    """Detector confidence (backend-specific scale; higher is surer)."""

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


class LandmarkBackend(Protocol):
    """Finds faces and their 68 landmarks in one RGB image."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """``image``: ``[H, W, 3]`` uint8 RGB. Returns every face found, any order."""
        ...


def make_backend(name: str, *, device: str = "cpu", detect_scale: float = 1.0, weights_dir: str | None = None) -> LandmarkBackend:
    """The landmark backend called ``name``.

    Args:
        detect_scale: image scale at which ``dlib`` runs its face detector (the
            landmarks are always fitted at full resolution).
        weights_dir: radnerf's weights cache, searched before torch hub's for ``fan``.

    Raises:
        ConfigError: unknown backend.
        MissingWeightsError: ``fan`` without its weight files.
    """
    if name == "dlib":
        return DlibLandmarks(detect_scale=detect_scale)
    if name == "fan":
        return FanLandmarks.from_weights(device=device, weights_dir=weights_dir)
    if name == "mediapipe":
        return MediapipeLandmarks()
    check_backend(name)
    raise AssertionError(name)


def check_backend(name: str, weights_dir: str | None = None) -> None:
    """Fail early, in the calling process, on an unknown backend or missing weights.

    Raises:
        ConfigError: unknown backend.
        MissingWeightsError: ``fan`` without its weight files.
    """
    if name not in LANDMARK_BACKENDS:
        raise ConfigError(
            f"preprocess.landmarks={name!r} is not a landmark backend",
            hint=f"use one of {', '.join(LANDMARK_BACKENDS)}",
        )
    if name == "fan":
        from radnerf.weights import require

        require("fan", weights_dir)
        require("s3fd", weights_dir)


def face_recognition_models_dir() -> Path:
    """Folder of the model files in the ``face_recognition_models`` package.

    Found through the import system without importing the package, whose
    ``__init__`` needs ``pkg_resources`` (gone from recent setuptools).

    Raises:
        RadNerfError: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RadNerfError(
            "the dlib landmark models are not installed",
            hint="pip install face-recognition-models, or use preprocess.landmarks=mediapipe",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any]:
    """dlib's detector and 68-point predictor, loaded once per process (the predictor takes 2 s)."""
    import dlib

    model = face_recognition_models_dir() / "shape_predictor_68_face_landmarks.dat"
    if not model.exists():
        raise RadNerfError(f"{model} is missing", hint="pip install --force-reinstall face-recognition-models")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


class DlibLandmarks:
    """dlib's HOG face detector and its 68-point shape predictor (models ship in pip packages)."""

    name = "dlib"

    def __init__(self, detect_scale: float = 1.0):
        import dlib

        self.detector, self.predictor = _dlib_models()
        self.scale = float(detect_scale)
        self._dlib = dlib

    def detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        s = self.scale
        small = image
        if abs(s - 1.0) > 1e-3:
            h, w = image.shape[:2]
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
        rects, scores, _ = self.detector.run(small, 0, 0.0)
        faces = []
        for r, score in zip(rects, scores):
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / s
            rect = self._dlib.rectangle(*(round(v) for v in box))
            shape = self.predictor(image, rect)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            faces.append(Face(box=box, points=pts, score=float(score)))
        return faces


class FanLandmarks:
    """face-alignment's 2D FAN with a face detector (S3FD by default), as RAD-NeRF runs it.

    The networks are passed in, so tests can run this exact code path with
    randomly initialised networks of the same architecture.
    """

    name = "fan"

    def __init__(self, net: Any, detector: Any, device: str = "cpu"):
        import torch
        from face_alignment.api import FaceAlignment, LandmarksType

        # FaceAlignment.__init__ downloads weights and compiles; we only need
        # its inference path, so build it around networks we loaded ourselves.
        fa = FaceAlignment.__new__(FaceAlignment)
        fa.device = device
        fa.flip_input = False
        fa.landmarks_type = LandmarksType.TWO_D
        fa.verbose = False
        fa.dtype = torch.float32
        fa.max_batch_size = 4
        fa.face_detector = detector
        fa.face_alignment_net = net.to(device).eval()
        self.fa = fa

    @classmethod
    def from_weights(cls, device: str = "cpu", weights_dir: str | None = None) -> FanLandmarks:
        """Load 2DFAN-4 and S3FD from the weights cache (:mod:`radnerf.weights` names ``fan``, ``s3fd``).

        Raises:
            MissingWeightsError: either file is missing.
        """
        import torch
        from face_alignment.models import FAN

        from radnerf.weights import require

        fan_path = require("fan", weights_dir)
        sfd_path = require("s3fd", weights_dir)
        net = FAN(4)
        net.load_state_dict(torch.load(fan_path, map_location="cpu", weights_only=True))
        detector = sfd_detector(torch.load(sfd_path, map_location="cpu", weights_only=True), device)
        return cls(net, detector, device)

    def detect(self, image: np.ndarray) -> list[Face]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face-alignment warns on every frame without a face
            lms, _, boxes = self.fa.get_landmarks_from_image(image, return_bboxes=True, return_landmark_score=True)
        if lms is None:
            return []
        faces = []
        for pts, box in zip(lms, boxes):
            box = np.asarray(box, np.float64)
            faces.append(Face(box=box[:4].copy(), points=np.asarray(pts, np.float64)[:, :2], score=float(box[4]) if len(box) > 4 else 1.0))
        return faces


def sfd_detector(state_dict: dict | None, device: str = "cpu", filter_threshold: float = 0.5) -> Any:
    """face-alignment's S3FD detector around an ``s3fd`` network (random when ``state_dict`` is None)."""
    from face_alignment.detection.core import FaceDetector
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    det = SFDDetector.__new__(SFDDetector)
    FaceDetector.__init__(det, device, False)
    net = s3fd()
    if state_dict is not None:
        net.load_state_dict(state_dict)
    det.face_detector = net.to(device).eval()
    det.filter_threshold = filter_threshold
    return det


# Face-mesh vertex (or the mean of two) for each of the 68 iBUG points, after
# the correspondence published in PeizhiYan/Mediapipe_2_Dlib_Landmarks.
MEDIAPIPE_TO_68: Sequence[Sequence[int]] = (
    # jaw 0-16
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows 17-26
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose 27-35
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eyes 36-47
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """``mesh``: ``[468 or 478, 2]`` face-mesh points -> ``[68, 2]`` iBUG points."""
    return np.stack([mesh[list(ids)].mean(0) for ids in MEDIAPIPE_TO_68])


class MediapipeLandmarks:
    """mediapipe's face mesh (model ships in the wheel), mapped to the 68-point layout."""

    name = "mediapipe"

    def __init__(self, max_faces: int = 3):
        from radnerf.native_logs import silence_stderr

        with silence_stderr():  # TF Lite's start-up chatter, printed from C++
            import mediapipe as mp

            # Static mode: every frame is detected afresh, so a second face that
            # appears mid-clip is seen and the stage can judge ambiguity.
            self.mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False, min_detection_confidence=0.5
            )
            self.mesh.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        res = self.mesh.process(np.ascontiguousarray(image))
        faces = []
        for lm in res.multi_face_landmarks or []:
            mesh = np.array([[p.x * w, p.y * h] for p in lm.landmark], np.float64)
            pts = mesh_to_68(mesh)
            box = np.array([mesh[:, 0].min(), mesh[:, 1].min(), mesh[:, 0].max(), mesh[:, 1].max()])
            faces.append(Face(box=box, points=pts, score=1.0))
        return faces
