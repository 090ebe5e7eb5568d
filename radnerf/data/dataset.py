"""PersonDataset: one split of a person's processed files, checked, as arrays and images.

What it reads (RAD-NeRF's names, through :class:`~radnerf.paths.PersonPaths`)::

    transforms_<split>.json   the split's frames: img_id, aud_id, 4x4 camera-to-head, eye_ratio?;
                              focal_len, cx, cy
    gt_imgs/<img_id>.jpg      frame on the background             -> image(i)  [H, W, 3] uint8
    torso_imgs/<img_id>.png   RGBA torso, neck in-painted         -> torso(i)  [H, W, 4] uint8
    bc.jpg                    the static background               -> background [H, W, 3] uint8
    regions.csv               eye area, face and lip rectangles   -> eye, face_rects, lips_rects
    aud_<name>.npy            [N_audio, 16, C] audio windows      -> audio (memory-mapped), auds

Per-frame arrays are in the order of the split's frames (``i`` below), not
indexed by ``img_id``; ``img_ids[i]`` and ``aud_ids[i]`` say which image and
audio window frame ``i`` uses.

Images are read lazily, one file per call, and stay uint8: a 5-minute clip at
512x512 holds 7500 ground-truth images of 786 kB (5.9 GB) and as many RGBA
torso images (7.9 GB), more than a training machine should keep in memory for
a trainer that looks at one random frame per step; decoding one 512x512 JPEG
or PNG takes a few milliseconds, well under a training step. Only the
background is read on load. Files are checked on load (existence and counts),
so a missing or short input fails before training starts, naming the file
and the stage to re-run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radnerf.errors import InputError
from radnerf.formats.regions import read_regions
from radnerf.formats.transforms import SPLITS, read_transforms
from radnerf.media.images import image_size, read_rgb, read_rgba
from radnerf.paths import PersonPaths

# The `radnerf audio` override that writes aud_<name>.npy (for hints only; the
# audio room owns the mapping, and this room does not import it).
_AUDIO_OVERRIDE = {"ph": "", "eo": " audio_features=wav2vec2", "w2v": " audio_features=wav2vec2",
                   "hu": " audio_features=hubert"}

_FACE = ("face_row0", "face_row1", "face_col0", "face_col1")
_LIPS = ("lips_row0", "lips_row1", "lips_col0", "lips_col1")


@dataclass(frozen=True, eq=False)
class PersonDataset:
    """One split of a person, checked on load (:meth:`load`); images are read on demand.

    ``N`` is the number of frames in the split, ``H, W`` the image size.
    """

    paths: PersonPaths
    split: str
    """'train' or 'val'."""
    audio_features: str
    """``<name>`` of the ``aud_<name>.npy`` in use ('ph', 'eo', 'hu', ...)."""
    img_ids: np.ndarray
    """``[N]`` int64: frame ``i``'s image number (``gt_imgs/<img_id>.jpg``)."""
    aud_ids: np.ndarray
    """``[N]`` int64: frame ``i``'s audio window (row of :attr:`audio`)."""
    poses: np.ndarray
    """``[N, 4, 4]`` float32 camera-to-world in RAD-NeRF's normalised space (``nerf_to_ngp_pose``)."""
    intrinsics: np.ndarray
    """``[4]`` float32 ``fx, fy, cx, cy`` in pixels (``focal_len`` for both focals)."""
    eye: np.ndarray
    """``[N]`` float32 eye-area ratio (the transforms' ``eye_ratio``, else ``regions.csv``'s ``eye_area``)."""
    face_rects: np.ndarray
    """``[N, 4]`` int64 face rectangle ``row0, row1, col0, col1`` (RAD-NeRF's ``face_rect``)."""
    lips_rects: np.ndarray
    """``[N, 4]`` int64 lip rectangle ``row0, row1, col0, col1`` (RAD-NeRF's ``lips_rect``)."""
    audio: np.ndarray
    """``[N_audio, 16, C]`` every audio window of the clip, memory-mapped as stored (float32 for ours).

    The audio attention of the head looks at the windows around ``aud_ids[i]``,
    so the whole file is kept, not only the split's rows.
    """
    background: np.ndarray
    """``[H, W, 3]`` uint8 ``bc.jpg``."""

    @classmethod
    def load(
        cls,
        paths: PersonPaths,
        split: str,
        audio_features: str = "ph",
        scale: float = 4.0,
        offset: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> PersonDataset:
        """Read and check one split of a person.

        Args:
            paths: the person's folder.
            split: 'train' or 'val'.
            audio_features: ``<name>`` of ``aud_<name>.npy``: 'ph' (offline), 'eo' (wav2vec2), 'hu' (HuBERT).
            scale, offset: ``ModelConfig.pose_scale`` / ``pose_offset`` (RAD-NeRF's ``--scale`` 4 and
                ``--offset`` 0), passed to :func:`radnerf.render.rays.nerf_to_ngp_pose`.

        Raises:
            InputError: a file is missing or unreadable, or the files disagree (an ``img_id`` without
                its ground-truth or torso image or regions row, an ``aud_id`` past the audio windows,
                a pose that is not finite, images of different sizes). The message names the file,
                the hint the stage to re-run.
        """
        import torch

        from radnerf.render.rays import nerf_to_ngp_pose

        if split not in SPLITS:
            raise ValueError(f"split={split!r}: use one of {', '.join(SPLITS)}")
        person = paths.root.name
        tf_path = paths.transforms(split)
        track_hint = f"re-run `radnerf track person={person}`"
        data = read_transforms(tf_path)
        frames = data["frames"]
        if not frames:
            raise InputError(f"{tf_path} has no frames", hint=track_hint)

        try:
            img_ids = np.array([int(f["img_id"]) for f in frames], np.int64)
            # RAD-NeRF's files may leave aud_id out; ours write aud_id = img_id.
            aud_ids = np.array([int(f.get("aud_id", f["img_id"])) for f in frames], np.int64)
            focal, cx, cy = float(data["focal_len"]), float(data["cx"]), float(data["cy"])
            matrices = np.array([f["transform_matrix"] for f in frames], np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(f"{tf_path} holds a value that is not a number ({e})", hint=track_hint) from None
        if img_ids.min() < 0 or aud_ids.min() < 0:
            raise InputError(f"{tf_path} holds a negative img_id or aud_id", hint=track_hint)
        bad = np.flatnonzero(~np.isfinite(matrices).all(axis=(1, 2)))
        if len(bad):
            raise InputError(
                f"{tf_path}: the transform_matrix of img_id {int(img_ids[bad[0]])} is not finite "
                f"({len(bad)} frame{'s' if len(bad) > 1 else ''} in all)",
                hint=track_hint,
            )
        if not (math.isfinite(focal) and focal > 0 and math.isfinite(cx) and math.isfinite(cy)):
            raise InputError(f"{tf_path}: focal_len {focal}, cx {cx}, cy {cy} are not a camera", hint=track_hint)
        poses = nerf_to_ngp_pose(torch.from_numpy(matrices), scale=scale, offset=offset).numpy()

        # Images: present for every frame, all of one size (headers only; pixels are read on demand).
        torso_hint = f"re-run `radnerf torso person={person}`"
        for i in img_ids:
            for path in (paths.gt_image(int(i)), paths.torso_image(int(i))):
                if not path.is_file():
                    raise InputError(f"{path} is missing ({tf_path.name} uses img_id {int(i)})", hint=torso_hint)
        background = read_rgb(paths.background_image)
        height, width = background.shape[:2]
        for path in (paths.gt_image(int(img_ids[0])), paths.torso_image(int(img_ids[0]))):
            if image_size(path) != (width, height):
                w, h = image_size(path)
                raise InputError(
                    f"{path} is {w}x{h} but {paths.background_image.name} is {width}x{height}",
                    hint=f"re-run `radnerf background person={person}` and `radnerf torso person={person}`",
                )

        # Regions: a row for every img_id.
        regions_hint = f"re-run `radnerf regions person={person}`"
        rows = read_regions(paths.regions)
        if rows and (missing := {"frame", "eye_area", *_FACE, *_LIPS} - set(rows[0])):
            raise InputError(f"{paths.regions} lacks the columns {', '.join(sorted(missing))}", hint=regions_hint)
        by_frame = {r["frame"]: r for r in rows}
        uncovered = [int(i) for i in img_ids if int(i) not in by_frame]
        if uncovered:
            raise InputError(
                f"{paths.regions} has {len(rows)} rows but {tf_path.name} uses img_id {uncovered[0]} "
                f"({len(uncovered)} img_id{'s' if len(uncovered) > 1 else ''} without a row, up to {max(uncovered)})",
                hint=regions_hint,
            )
        picked = [by_frame[int(i)] for i in img_ids]
        face_rects = np.array([[r[k] for k in _FACE] for r in picked], np.int64).reshape(-1, 4)
        lips_rects = np.array([[r[k] for k in _LIPS] for r in picked], np.int64).reshape(-1, 4)
        # RAD-NeRF's provider takes eye_ratio from the transforms when it is there.
        eye = np.array(
            [float(f["eye_ratio"]) if f.get("eye_ratio") is not None else r["eye_area"] for f, r in zip(frames, picked)],
            np.float32,
        )

        # Audio windows: one for every aud_id.
        audio_path = paths.audio_features(audio_features)
        audio_hint = f"re-run `radnerf audio person={person}{_AUDIO_OVERRIDE.get(audio_features, '')}`"
        audio = _load_audio(audio_path, audio_hint)
        if int(aud_ids.max()) >= len(audio):
            raise InputError(
                f"{audio_path.name} has {len(audio)} windows but {tf_path.name} uses aud_id up to {int(aud_ids.max())}",
                hint=audio_hint,
            )

        return cls(
            paths=paths, split=split, audio_features=audio_features, img_ids=img_ids, aud_ids=aud_ids,
            poses=poses, intrinsics=np.array([focal, focal, cx, cy], np.float32), eye=eye,
            face_rects=face_rects, lips_rects=lips_rects, audio=audio, background=background,
        )

    def __len__(self) -> int:
        return len(self.img_ids)

    @property
    def height(self) -> int:
        return int(self.background.shape[0])

    @property
    def width(self) -> int:
        return int(self.background.shape[1])

    @property
    def auds(self) -> np.ndarray:
        """``[N, 16, C]`` the split's audio windows, ``audio[aud_ids]`` (a copy: index :attr:`audio` for one frame)."""
        return np.asarray(self.audio[self.aud_ids])

    def image(self, i: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 ground truth of frame ``i`` (``gt_imgs/<img_id>.jpg``)."""
        path = self.paths.gt_image(int(self.img_ids[i]))
        return self._checked(read_rgb(path), path)

    def torso(self, i: int) -> np.ndarray:
        """``[H, W, 4]`` uint8 RGBA torso of frame ``i`` (``torso_imgs/<img_id>.png``)."""
        path = self.paths.torso_image(int(self.img_ids[i]))
        return self._checked(read_rgba(path), path)

    def head_background(self, i: int) -> np.ndarray:
        """``[H, W, 3]`` uint8: frame ``i``'s torso composited over the background.

        This is the colour behind the head while the head trains: RAD-NeRF's
        provider composites ``torso_img[..., :3] * a + bg_img * (1 - a)`` and
        passes it as the renderer's ``bg_color``, so the head learns only what
        lies in front of the torso and the background. Computed in integers,
        ``(rgb * a + bg * (255 - a) + 127) // 255``: RAD-NeRF's float value
        rounded to the nearest level (within 0.5/255 of it).
        """
        rgba = self.torso(i).astype(np.uint16)
        alpha = rgba[..., 3:]
        out = (rgba[..., :3] * alpha + self.background.astype(np.uint16) * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)

    def _checked(self, image: np.ndarray, path: Path) -> np.ndarray:
        if image.shape[:2] != (self.height, self.width):
            raise InputError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but {self.paths.background_image.name} is "
                f"{self.width}x{self.height}",
                hint=f"re-run `radnerf torso person={self.paths.root.name}`",
            )
        return image


def _load_audio(path: Path, hint: str) -> np.ndarray:
    """``[N_audio, W, C]`` memory-mapped windows from ``aud_<name>.npy``."""
    if not path.is_file():
        raise InputError(f"{path} does not exist", hint=hint.replace("re-run", "run"))
    try:
        audio = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} ({e})", hint=hint) from None
    if audio.ndim != 3 or len(audio) == 0:
        raise InputError(f"{path} holds an array of shape {tuple(audio.shape)}, not [N, 16, C] windows", hint=hint)
    return audio
