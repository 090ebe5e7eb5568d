"""Ray batches of a person's frames for the head (pixel batches for the torso): what one training step
renders and compares against.

One frame per step, as RAD-NeRF's provider: a random training frame, random
pixels of it (with replacement), and per ray its ground-truth colour, the
colour behind the head (the frame's torso over the background,
:meth:`PersonDataset.head_background`) and whether the pixel lies in the
lower-face box (rays outside it pay the audio-coordinate L1, paper Eq. 6).

Decoded frames stay uint8 in a bounded cache (``train.image_cache_gb``): a
short clip is decoded once, a 5-minute one at 512 px (13.8 GB of ground
truth and head backgrounds) is decoded again when a frame comes round and
its slot has been reused, a few milliseconds against a step.

The torso draws the same way (:class:`TorsoPixels`): pixels, not rays, since
it is a 2D field; per pixel its target and ``bc.jpg`` behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from radnerf.data.dataset import PersonDataset
from radnerf.render.rays import Rays, get_rays, sample_pixels


@dataclass
class HeadBatch:
    """The rays of one frame and what they are compared against.

    ``N`` rays; tensors on the trainer's device.
    """

    index: int
    """Position of the frame in its split (its appearance code in training)."""
    rays: Rays
    """``origins``, ``directions`` ``[N, 3]``, ``pixels`` ``[N]`` flat indices."""
    rgb: torch.Tensor
    """``[N, 3]`` ground-truth colours in [0, 1]."""
    background: torch.Tensor
    """``[N, 3]`` the colour behind the head (torso over background) in [0, 1]."""
    face: torch.Tensor
    """``[N]`` bool: the pixel lies in the frame's lower-face rectangle."""
    eye: float
    """The frame's eye-area ratio."""
    aud_id: int
    """Row of the frame's audio window in the person's audio features."""


class FrameCache:
    """Decoded ``[H, W, 3]`` uint8 images of a dataset, least recently used dropped beyond a byte budget."""

    def __init__(self, dataset: PersonDataset, budget_bytes: float):
        self.dataset = dataset
        self.budget = float(budget_bytes)
        self._images: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self.decoded = 0
        """How many images were decoded (a test counts cache misses)."""

    def get(self, kind: str, i: int) -> np.ndarray:
        """``kind`` 'rgb' (ground truth) or 'bg' (head background) of frame ``i``: ``[H, W, 3]`` uint8."""
        key = (kind, int(i))
        image = self._images.get(key)
        if image is not None:
            self._images.move_to_end(key)
            return image
        image = self.dataset.image(i) if kind == "rgb" else self.dataset.head_background(i)
        self.decoded += 1
        if image.nbytes <= self.budget:
            self._images[key] = image
            self._bytes += image.nbytes
            while self._bytes > self.budget:
                _, old = self._images.popitem(last=False)
                self._bytes -= old.nbytes
        return image


class HeadRays:
    """Draws :class:`HeadBatch` es from one split of a person.

    Args:
        dataset: the split.
        num_rays: rays per batch (``train.num_rays``).
        device: where the batches' tensors go.
        cache_bytes: budget of decoded images kept in memory.
    """

    def __init__(self, dataset: PersonDataset, num_rays: int, device: torch.device | str = "cpu",
                 cache_bytes: float = 2e9):
        self.dataset = dataset
        self.num_rays = int(num_rays)
        self.device = torch.device(device)
        self.cache = FrameCache(dataset, cache_bytes)
        self.poses = torch.from_numpy(dataset.poses).to(self.device)
        self.intrinsics = tuple(float(v) for v in dataset.intrinsics)

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def width(self) -> int:
        return self.dataset.width

    def sample(self, generator: torch.Generator) -> HeadBatch:
        """A random frame's random pixels (frame and pixels drawn from ``generator``, on the CPU)."""
        return self.batch(*draw_pixels(self.dataset, self.num_rays, generator))

    def batch(self, i: int, pixels: torch.Tensor | None = None) -> HeadBatch:
        """Frame ``i``'s rays through ``pixels`` ``[N]`` (None: every pixel, row-major)."""
        if pixels is None:
            pixels = torch.arange(self.height * self.width)
        pixels = pixels.to(torch.int64)
        rows = torch.div(pixels, self.width, rounding_mode="floor")
        cols = pixels % self.width
        r0, r1, c0, c1 = (int(v) for v in self.dataset.face_rects[i])
        face = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
        flat = pixels.numpy()
        rgb = self.cache.get("rgb", i).reshape(-1, 3)[flat]
        bg = self.cache.get("bg", i).reshape(-1, 3)[flat]
        rays = get_rays(self.poses[i], self.intrinsics, self.height, self.width, pixels.to(self.device))
        return HeadBatch(
            index=i,
            rays=rays,
            rgb=_unit(rgb, self.device),
            background=_unit(bg, self.device),
            face=face.to(self.device),
            eye=float(self.dataset.eye[i]),
            aud_id=int(self.dataset.aud_ids[i]),
        )


@dataclass
class TorsoBatch:
    """Pixels of one frame for the torso and what they are compared against.

    ``N`` pixels; tensors on the trainer's device except ``pixels``.
    """

    index: int
    """Position of the frame in its split (its torso code in training)."""
    pixels: torch.Tensor
    """``[N]`` int64 flat pixel indices (CPU)."""
    target: torch.Tensor
    """``[N, 3]`` in [0, 1]: the frame's torso over the background ('torso') or its ground truth ('frame')."""
    background: torch.Tensor
    """``[N, 3]`` ``bc.jpg`` in [0, 1]: what lies behind the torso."""


class TorsoPixels:
    """Draws :class:`TorsoBatch` es from one split of a person.

    Args:
        dataset: the split.
        num_rays: pixels per batch (``train.num_rays``).
        target: 'torso' (the neck in-painted torso image over ``bc.jpg``,
            :meth:`PersonDataset.head_background`) or 'frame' (the ground truth; ``train.torso_target``).
        device: where the batches' tensors go.
        cache_bytes: budget of decoded images kept in memory.
    """

    def __init__(self, dataset: PersonDataset, num_rays: int, target: str = "torso",
                 device: torch.device | str = "cpu", cache_bytes: float = 2e9):
        if target not in ("torso", "frame"):
            raise ValueError(f"target={target!r}: use 'torso' or 'frame'")
        self.dataset = dataset
        self.num_rays = int(num_rays)
        self.kind = "bg" if target == "torso" else "rgb"
        self.device = torch.device(device)
        self.cache = FrameCache(dataset, cache_bytes)
        self.background = dataset.background.reshape(-1, 3)

    def sample(self, generator: torch.Generator) -> TorsoBatch:
        """A random frame's random pixels (frame and pixels drawn from ``generator``, on the CPU)."""
        return self.batch(*draw_pixels(self.dataset, self.num_rays, generator))

    def batch(self, i: int, pixels: torch.Tensor | None = None) -> TorsoBatch:
        """Frame ``i``'s ``pixels`` ``[N]`` (None: every pixel, row-major)."""
        if pixels is None:
            pixels = torch.arange(self.dataset.height * self.dataset.width)
        pixels = pixels.to(torch.int64)
        flat = pixels.numpy()
        target = self.cache.get(self.kind, i).reshape(-1, 3)[flat]
        return TorsoBatch(index=i, pixels=pixels, target=_unit(target, self.device),
                          background=_unit(self.background[flat], self.device))


def draw_pixels(dataset: PersonDataset, num: int, generator: torch.Generator) -> tuple[int, torch.Tensor]:
    """RAD-NeRF's draw: a random frame of ``dataset``, then ``num`` of its pixels ``[num]`` (with replacement)."""
    i = int(torch.randint(0, len(dataset), (1,), generator=generator))
    return i, sample_pixels(dataset.height, dataset.width, num, generator=generator)


def _unit(colours: np.ndarray, device: torch.device) -> torch.Tensor:
    """``[N, 3]`` uint8 -> float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(colours)).to(device=device, dtype=torch.float32).div_(255.0)
