"""A generic 3D face in the 68-point iBUG layout, and which of its points to trust.

Source: the 68 points are vertices of MediaPipe's canonical face mesh
(``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, Apache-2.0,
metric, in centimetres), picked with the widely used MediaPipe-to-dlib index
map ``MEDIAPIPE_INDICES`` below. The map is exactly left-right symmetric on
the mesh (``MIRROR`` maps each point to its mirror image), which is how it was
checked. No licensed morphable model (BFM, FLAME) is involved.

Coordinates of :data:`MEAN_SHAPE` are metres in the head frame used by every
tracking output: x to the image's right for a frontal face, y up, z out of the
face toward the camera (the OpenGL / NeRF convention, as RAD-NeRF's tracker).
The origin is moved from MediaPipe's (just behind the nose) to about the
middle of the skull, so the bounding cube of RAD-NeRF's renderer (centred on
the origin) holds the whole head and not just the face.
"""

from __future__ import annotations

import numpy as np

# Vertex of the canonical MediaPipe mesh for each iBUG point 0..67.
MEDIAPIPE_INDICES = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)

# The canonical mesh's vertices at MEDIAPIPE_INDICES, centimetres, verbatim.
_CANONICAL_CM = np.array([
    [-7.743095, 2.364999, -2.005167], [-7.664182, 0.673132, -2.435867], [-7.542244, -1.049282, -2.431321], [-7.270895, -2.890917, -2.252455],
    [-6.719682, -4.788645, -1.745401], [-5.085276, -7.178590, 0.714711], [-4.068926, -7.993109, 1.925119], [-2.308977, -8.974196, 3.609070],
    [0.000000, -9.403378, 4.264492], [2.308977, -8.974196, 3.609070], [4.068926, -7.993109, 1.925119], [5.085276, -7.178590, 0.714711],
    [6.719682, -4.788645, -1.745401], [7.270895, -2.890917, -2.252455], [7.542244, -1.049282, -2.431321], [7.664182, 0.673132, -2.435867],
    [7.743095, 2.364999, -2.005167], [-5.720968, 4.254584, 2.830852], [-4.985894, 4.802461, 3.751977], [-3.986562, 5.109487, 4.466315],
    [-2.760292, 5.100971, 5.015990], [-1.395634, 5.011963, 5.316032], [1.395634, 5.011963, 5.316032], [2.760292, 5.100971, 5.015990],
    [3.986562, 5.109487, 4.466315], [4.985894, 4.802461, 3.751977], [5.720968, 4.254584, 2.830852], [0.000000, 3.271027, 5.236015],
    [0.000000, 1.728369, 6.316750], [0.000000, 0.365669, 7.242870], [0.000000, -0.463170, 7.586580], [-1.043625, -1.464973, 5.662455],
    [-0.597442, -2.013686, 5.866456], [0.000000, -2.089024, 6.058267], [0.597442, -2.013686, 5.866456], [1.043625, -1.464973, 5.662455],
    [-4.445859, 2.663991, 3.173422], [-3.670075, 2.927714, 3.724325], [-2.724032, 2.961810, 3.871767], [-1.856432, 2.585245, 3.757904],
    [-2.724032, 2.315802, 3.777151], [-3.670075, 2.360153, 3.635230], [1.856432, 2.585245, 3.757904], [2.724032, 2.961810, 3.871767],
    [3.670075, 2.927714, 3.724325], [4.445859, 2.663991, 3.173422], [3.670075, 2.360153, 3.635230], [2.724032, 2.315802, 3.777151],
    [-2.456206, -4.342621, 4.283884], [-1.431615, -3.500953, 5.496189], [-0.711452, -3.329355, 5.877044], [0.000000, -3.406404, 5.979507],
    [0.711452, -3.329355, 5.877044], [1.431615, -3.500953, 5.496189], [2.456206, -4.342621, 4.283884], [1.325085, -5.106507, 5.205010],
    [0.699606, -5.291850, 5.448304], [0.000000, -5.365123, 5.535441], [-0.699606, -5.291850, 5.448304], [-1.325085, -5.106507, 5.205010],
    [-2.153084, -4.276322, 4.038093], [-0.533422, -3.993222, 5.138202], [0.000000, -3.994436, 5.219482], [0.533422, -3.993222, 5.138202],
    [2.153084, -4.276322, 4.038093], [0.583218, -4.517982, 5.339869], [0.000000, -4.542400, 5.404754], [-0.583218, -4.517982, 5.339869],
])

# Head centre in MediaPipe's frame (cm): about 9.5 cm behind the nose tip and a
# little above it, where a skull's centre sits; puts hair and chin inside +-0.25 m.
_HEAD_CENTRE_CM = np.array([0.0, 1.5, -2.0])

MEAN_SHAPE: np.ndarray = ((_CANONICAL_CM - _HEAD_CENTRE_CM) / 100.0).astype(np.float64)
"""``[68, 3]`` generic face, metres, head frame (x right, y up, z toward the camera)."""

# iBUG groups.
JAW = tuple(range(17))
BROWS = tuple(range(17, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
EYE_CORNERS = (36, 39, 42, 45)
EYELIDS = (37, 38, 40, 41, 43, 44, 46, 47)
LIPS = tuple(range(48, 68))
RIGID = EYE_CORNERS + NOSE_BRIDGE + NOSE_BASE
"""Points that move with the skull: they carry the pose fit."""

MIRROR = (
    tuple(range(16, -1, -1)) + tuple(range(26, 16, -1)) + (27, 28, 29, 30) + (35, 34, 33, 32, 31)
    + (45, 44, 43, 42, 47, 46) + (39, 38, 37, 36, 41, 40)
    + (54, 53, 52, 51, 50, 49, 48) + (59, 58, 57, 56, 55) + (64, 63, 62, 61, 60) + (67, 66, 65)
)
"""Index of each point's mirror image across the face's midline."""

# Half-extents of a head around the landmarks, metres, for the renderer's box:
# skull behind the ears, forehead and hair above the brows, a margin at the chin.
_BACK_OF_HEAD = 0.20
_ABOVE_BROWS = 0.11
_BELOW_CHIN = 0.03
_SIDE_MARGIN = 0.015


def point_weights(rigid: float, brows: float, eyelids: float, jaw: float, lips: float) -> np.ndarray:
    """``[68]`` per-point weights from weights of the iBUG groups.

    The jaw outline is a silhouette that slides over the face as it turns and
    the lips and chin move with speech; weighted like the rigid points they are
    absorbed as fake perspective and bias the focal.
    """
    w = np.empty(68)
    w[list(RIGID)] = rigid
    w[list(BROWS)] = brows
    w[list(EYELIDS)] = eyelids
    w[list(JAW)] = jaw
    w[list(LIPS)] = lips
    return w


def head_box(shape: np.ndarray) -> np.ndarray:
    """``[2, 3]`` (min, max) corners of a box holding the whole head, head frame, metres.

    Args:
        shape: ``[68, 3]`` landmark shape in the head frame.
    """
    lo = shape.min(axis=0).copy()
    hi = shape.max(axis=0).copy()
    lo[0] -= _SIDE_MARGIN
    hi[0] += _SIDE_MARGIN
    lo[1] = shape[list(JAW)][:, 1].min() - _BELOW_CHIN
    hi[1] = shape[list(BROWS)][:, 1].max() + _ABOVE_BROWS
    lo[2] = shape[30, 2] - _BACK_OF_HEAD
    hi[2] = shape[30, 2] + _SIDE_MARGIN
    return np.stack([lo, hi])
