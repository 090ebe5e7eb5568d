"""What a rendered video borrows from the person's training clip: head poses, eye ratios, the background,
the camera, and (when there is no trained torso) the torso images.

A :class:`Clip` comes from a person's artifacts (:meth:`Clip.from_splits`) or from a model package
(:mod:`radnerf.talk.package`, which carries everything but the torso images), so rendering needs
neither the training frames nor the person's folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from radnerf.data import PersonDataset
from radnerf.talk.controls import over


@dataclass(frozen=True, eq=False)
class Clip:
    """The training clip as rendering sees it; ``K`` frames (train then val), images ``H x W``."""

    poses: np.ndarray
    """``[K, 4, 4]`` float32 camera-to-head poses in the head's normalised space (``nerf_to_ngp_pose``)."""
    eyes: np.ndarray
    """``[K]`` float32 eye-area ratios."""
    background: np.ndarray
    """``[H, W, 3]`` uint8 ``bc.jpg``."""
    intrinsics: np.ndarray
    """``[4]`` float32 ``fx, fy, cx, cy`` in pixels."""
    torso_image: Callable[[int], np.ndarray] | None = None
    """``k -> [H, W, 4]`` uint8 RGBA torso image of clip frame ``k``; None where the images are not at hand
    (a model package, which renders with the trained torso)."""

    @classmethod
    def from_splits(cls, sets: tuple[PersonDataset, ...]) -> Clip:
        """The clip of a person's ``(train, val)`` splits (:func:`radnerf.train.head.person_splits`)."""
        frames = [(s, i) for s in sets for i in range(len(s))]
        return cls(poses=np.stack([s.poses[i] for s, i in frames]).astype(np.float32),
                   eyes=np.array([s.eye[i] for s, i in frames], np.float32),
                   background=sets[0].background, intrinsics=np.asarray(sets[0].intrinsics, np.float32),
                   torso_image=lambda k: frames[k][0].torso(frames[k][1]))

    def __len__(self) -> int:
        return len(self.poses)

    @property
    def height(self) -> int:
        return int(self.background.shape[0])

    @property
    def width(self) -> int:
        return int(self.background.shape[1])

    def behind_head(self, k: int, background: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8: clip frame ``k``'s torso image over ``background`` (with ``bc.jpg``, the colour
        behind the head while it trained, :meth:`PersonDataset.head_background`)."""
        if self.torso_image is None:
            raise ValueError("this clip carries no torso images (render with the trained torso)")
        return over(self.torso_image(k), background)
