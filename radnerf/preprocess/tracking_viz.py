"""Pictures of a tracking fit: the projected shape with an axis gizmo, and pose curves over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radnerf.geometry import EULER_CONVENTION, euler_deg
from radnerf.preprocess.tracking_ba import Tracking

_GIZMO_M = 0.08  # axis length, metres


def _project_points(tr: Tracking, i: int, pts: np.ndarray) -> np.ndarray:
    """``[M, 3]`` head-frame points -> ``[M, 2]`` pixels in frame ``i``."""
    cam = pts @ tr.R[i].T + tr.t[i]
    return np.stack([tr.cx + tr.focal * cam[:, 0] / -cam[:, 2], tr.cy - tr.focal * cam[:, 1] / -cam[:, 2]], 1)


def overlay(rgb: np.ndarray, tr: Tracking, i: int, landmarks: np.ndarray | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8: frame ``i`` with the projected shape (green), landmarks (red) and the head axes.

    Axes from the head origin: x red, y green, z (out of the face) blue.
    """
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    if landmarks is not None and np.isfinite(landmarks).all():
        for x, y in landmarks:
            cv2.circle(img, (int(np.rint(x)), int(np.rint(y))), 2, (255, 60, 60), -1, cv2.LINE_AA)
    for x, y in _project_points(tr, i, tr.shape):
        cv2.circle(img, (int(np.rint(x)), int(np.rint(y))), 2, (60, 255, 60), -1, cv2.LINE_AA)
    origin_axes = _project_points(tr, i, np.vstack([np.zeros(3), np.eye(3) * _GIZMO_M]))
    o = tuple(int(np.rint(v)) for v in origin_axes[0])
    for k, color in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        cv2.arrowedLine(img, o, tuple(int(np.rint(v)) for v in origin_axes[k + 1]), color, 2, cv2.LINE_AA, tipLength=0.15)
    label = f"frame {i}  f={tr.focal:.0f}px" + ("  FLAGGED" if i in tr.flagged else "")
    cv2.putText(img, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def write_overlay(path: Path, rgb: np.ndarray, tr: Tracking, i: int) -> None:
    """Write :func:`overlay` of frame ``i`` as a JPEG."""
    from radnerf.media.images import write_rgb

    write_rgb(path, overlay(rgb, tr, i), quality=90)


POSE_LABELS = (
    "yaw (+: face turns to image right)",
    "pitch (+: chin down)",
    "roll (+: counter-clockwise in image)",
)
"""Legend of the three angle curves: :func:`radnerf.geometry.euler_deg`'s signs."""
POSE_TITLE = f"head pose seen from the camera: {EULER_CONVENTION}"
"""Which convention the angle curves plot."""


def plot_pose_curves(path: Path, tr: Tracking, fps: float = 25.0) -> None:
    """Yaw, pitch, roll (degrees) and camera-space position (cm) over time; filled and flagged frames marked.

    The angles are :func:`radnerf.geometry.euler_deg` of the head-to-camera rotations, the
    same numbers as ``track/report.json``'s ``pose_deg``; the figure names the convention.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ang = euler_deg(tr.R)
    time_s = np.arange(len(ang)) / fps
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.4), sharex=True)
    for j, name in enumerate(POSE_LABELS):
        axes[0].plot(time_s, ang[:, j], lw=1, label=name)
    axes[0].set_ylabel("degrees")
    axes[0].set_title(POSE_TITLE, fontsize=9)
    for j, name in enumerate(("x (right)", "y (up)", "z + mean depth (toward the camera)")):
        v = tr.t[:, j] - (tr.t[:, 2].mean() if j == 2 else 0.0)
        axes[1].plot(time_s, 100 * v, lw=1, label=name)
    axes[1].set_ylabel("cm (OpenGL camera frame)")
    axes[1].set_xlabel("seconds")
    for ax in axes:
        for i in np.flatnonzero(~tr.used):
            ax.axvspan(time_s[i] - 0.5 / fps, time_s[i] + 0.5 / fps, color="0.85", lw=0)
        for i in tr.flagged:
            ax.axvline(time_s[i], color="red", lw=0.8)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"head pose, focal {tr.focal:.0f} px (grey: filled from neighbours, red: flagged jumps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
