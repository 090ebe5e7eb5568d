"""Stage ``parse``: head / neck / torso / background per frame, as RAD-NeRF's ``parsing/<i>.png``.

Backends behind one interface (:class:`ParsingBackend`):

- ``bisenet``: facexlib's 19-class BiSeNet (CelebAMask-HQ labels, the network
  RAD-NeRF runs), its classes merged as RAD-NeRF's ``face_parsing/test.py``
  merges them: 1-13 and 17-18 head, 14-15 neck, 16 torso, 0 background.
- ``offline``: mediapipe's selfie segmentation (model inside the wheel) for
  person against background; the 68 landmarks split the person into head
  (face polygon, and everything above the jaw line: hair, ears, hat), neck
  (skin-coloured pixels under the chin, skin learnt from the cheeks) and torso
  (the rest of the person).

On disk each frame is a PNG in RAD-NeRF's colours (what its ``process.py``
tests with ``cv2.imread``, i.e. BGR): head (255,0,0), neck (0,255,0), torso
(0,0,255), background (255,255,255). In RGB: head blue, neck green, torso red.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from radnerf.config import RadNerfConfig
from radnerf.errors import ConfigError
from radnerf.formats.frames import frame_count
from radnerf.formats.landmarks import load_landmarks
from radnerf.media import images
from radnerf.paths import PersonPaths
from radnerf.preprocess import common
from radnerf.stage_io import StagePlan, StageResult, StageWriter, run_stage

log = logging.getLogger(__name__)

STAGE = "parse"
PARSING_BACKENDS = ("bisenet", "offline")

BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3
# RGB colours of the labels in parsing/<i>.png (RAD-NeRF's BGR colours, read as RGB).
COLOURS = np.array([[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)
# CelebAMask-HQ class -> our label, as RAD-NeRF's face_parsing/test.py merges them.
BISENET_TO_LABEL = np.array([BACKGROUND] + [HEAD] * 13 + [NECK] * 2 + [TORSO] + [HEAD] * 2, np.uint8)


class ParsingBackend(Protocol):
    """Labels every pixel of one frame."""

    name: str

    def parse(self, image: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        """``image``: ``[H, W, 3]`` uint8 RGB; ``points``: ``[68, 2]`` landmarks (None if unused).

        Returns:
            ``[H, W]`` uint8 labels: BACKGROUND, HEAD, NECK or TORSO.
        """
        ...


def make_backend(name: str, *, device: str = "cpu", weights_dir: str | None = None) -> ParsingBackend:
    """The parsing backend called ``name``.

    Raises:
        ConfigError: unknown backend.
        MissingWeightsError: ``bisenet`` without its weights.
    """
    if name == "offline":
        return OfflineParsing()
    if name == "bisenet":
        return BiSeNetParsing.from_weights(device=device, weights_dir=weights_dir)
    raise ConfigError(
        f"preprocess.parsing={name!r} is not a parsing backend", hint=f"use one of {', '.join(PARSING_BACKENDS)}"
    )


def colourise(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` labels -> ``[H, W, 3]`` uint8 RGB parsing image."""
    return COLOURS[labels]


def decode(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` RGB parsing image (ours or RAD-NeRF's) -> ``[H, W]`` labels.

    Exact colour matches, as RAD-NeRF's ``process.py`` tests them; any other
    colour (none in a PNG we wrote) counts as background.
    """
    # One packed 24-bit key per pixel: three integer compares instead of
    # three [H, W, 3] compares and reductions (5x faster per frame).
    key = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    labels = np.zeros(rgb.shape[:2], np.uint8)
    for label in (HEAD, NECK, TORSO):
        r, g, b = (int(c) for c in COLOURS[label])
        labels[key == ((r << 16) | (g << 8) | b)] = label
    return labels


def read_parsing(path: Path) -> np.ndarray:
    """``[H, W]`` labels from ``parsing/<i>.png`` (our indexed PNGs, or RAD-NeRF's RGB ones)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P":
            palette = np.frombuffer(im.palette.tobytes(), np.uint8).reshape(-1, 3)
            if len(palette) >= 4 and (palette[:4] == COLOURS).all():
                return np.asarray(im, np.uint8)  # our own file: the indices are the labels
        return decode(np.asarray(im.convert("RGB")))


class BiSeNetParsing:
    """facexlib's BiSeNet (19 CelebAMask-HQ classes) at 512x512, merged to our four labels.

    The network is passed in, so tests can run this code path with a randomly
    initialised BiSeNet.
    """

    name = "bisenet"

    def __init__(self, net: Any, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.device = device

    @classmethod
    def from_weights(cls, device: str = "cpu", weights_dir: str | None = None) -> BiSeNetParsing:
        """Load facexlib's ``parsing_bisenet.pth`` from the weights cache (:mod:`radnerf.weights` name ``bisenet``).

        Raises:
            MissingWeightsError: the file is missing.
        """
        import torch
        from facexlib.parsing.bisenet import BiSeNet

        from radnerf.weights import require

        path = require("bisenet", weights_dir)
        net = BiSeNet(num_class=19)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return cls(net, device)

    def parse(self, image: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        import cv2
        import torch

        h, w = image.shape[:2]
        x = cv2.resize(image, (512, 512), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        t = torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0).to(self.device)
        with torch.no_grad():
            out = self.net(t)[0]  # [1, 19, 512, 512]
        classes = out[0].argmax(0).cpu().numpy().astype(np.uint8)
        classes = cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)
        return BISENET_TO_LABEL[classes]


class OfflineParsing:
    """Person segmentation from mediapipe plus landmark geometry (no downloaded weights)."""

    name = "offline"

    def __init__(self):
        from radnerf.native_logs import silence_stderr

        with silence_stderr():  # TF Lite's start-up chatter, printed from C++
            import mediapipe as mp

            # Model 0 ("general", 256x256 input) follows hair far better than the
            # 144x256 landscape model on a portrait.
            self.segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            self.segmenter.process(np.zeros((64, 64, 3), np.uint8))

    def person_mask(self, image: np.ndarray) -> np.ndarray:
        """``[H, W]`` float32 in [0, 1]: probability that a pixel is the person."""
        return self.segmenter.process(np.ascontiguousarray(image)).segmentation_mask

    def parse(self, image: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        if points is None:
            raise ValueError("the offline parser needs the frame's landmarks")
        return split_person(image, self.person_mask(image) > 0.5, points)


def _face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Origin (chin), unit right and unit down axes of the face, its width and height (px)."""
    right = points[16] - points[0]
    face_w = float(np.linalg.norm(right))
    right = right / max(face_w, 1e-6)
    down = np.array([-right[1], right[0]])
    if np.dot(points[8] - points[27], down) < 0:  # keep "down" pointing from the eyes to the chin
        down = -down
    face_h = float(np.dot(points[8] - points[27], down))
    return points[8], right, down, face_w, max(face_h, 1.0)


def face_polygon(points: np.ndarray) -> np.ndarray:
    """``[27, 2]`` outline of the face: the jaw, then the brows raised to an estimated hairline."""
    _, _, down, _, face_h = _face_frame(points)
    forehead = points[26:16:-1] - down * 0.45 * face_h
    return np.concatenate([points[:17], forehead])


def split_person(image: np.ndarray, person: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Split a person mask into head, neck and torso with the landmarks.

    In the face's own frame (``u`` along the jaw ends, ``v`` down towards the
    chin): head is everything above the jaw line, and beside the jaw down to
    just above the chin (hair, ears); below the jaw, skin-coloured pixels within
    a neck-wide band are neck (with everything between them and the jaw); the
    rest of the person is torso.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        person: ``[H, W]`` bool.
        points: ``[68, 2]`` landmarks.

    Returns:
        ``[H, W]`` uint8 labels.
    """
    import cv2

    h, w = person.shape
    chin, right, down, face_w, face_h = _face_frame(points)
    jaw = points[:17] - chin
    ju, jv = jaw @ right, jaw @ down
    order = np.argsort(ju)
    ju, jv = ju[order], jv[order]
    side_v = -0.15 * face_h  # beside the jaw, head reaches down to just above the chin
    far = float(h + w)  # reaches past every pixel from a chin inside the frame
    # "Below the jaw line" as one polygon in face coordinates (u, v): rasterising
    # it costs a fraction of evaluating the boundary at every pixel.
    below_uv = np.concatenate([
        [[ju[0] - far, side_v], [ju[0], side_v]],
        np.stack([ju, jv], 1),
        [[ju[-1], side_v], [ju[-1] + far, side_v], [ju[-1] + far, far], [ju[0] - far, far]],
    ])
    band_uv = np.array([[-0.36 * face_w, -far], [0.36 * face_w, -far], [0.36 * face_w, 0.75 * face_h],
                        [-0.36 * face_w, 0.75 * face_h]])
    below = _fill(below_uv, chin, right, down, (h, w))
    band = below & _fill(band_uv, chin, right, down, (h, w)) & person

    # Person above the jaw line is head, below it torso: uint8 arithmetic
    # (BACKGROUND is 0) rather than nested np.where, 10x slower at 512x512.
    labels = person.astype(np.uint8) * (HEAD + (TORSO - HEAD) * below.astype(np.uint8))
    skin = _skin_like(image, points, band)
    # Neck runs from the jaw down to the lowest skin in each column: the
    # shadow under the chin is neck even where its colour fails the skin
    # test, so the neck always meets the head and its in-painting closes the gap.
    lowest = np.where(skin.any(0), h - 1 - np.argmax(skin[::-1], axis=0), -1)
    labels[band & (np.arange(h)[:, None] <= lowest[None, :])] = NECK
    cv2.fillPoly(labels, [np.round(face_polygon(points) * 16).astype(np.int32)], int(HEAD), cv2.LINE_8, 4)
    return labels


def _fill(uv: np.ndarray, origin: np.ndarray, right: np.ndarray, down: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` bool mask of a polygon given in face coordinates ``uv`` (``[K, 2]``)."""
    import cv2

    xy = origin + uv[:, :1] * right + uv[:, 1:] * down
    mask = np.zeros(size, np.uint8)
    # Sub-pixel vertices (4 fractional bits); clipped far outside so the fixed-point values fit.
    xy = np.clip(xy, -4 * max(size), 4 * max(size))
    cv2.fillPoly(mask, [np.round(xy * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _skin_like(image: np.ndarray, points: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels in ``where`` whose chroma matches the cheeks' (Mahalanobis in CrCb)."""
    import cv2

    out = np.zeros(where.shape, bool)
    if not where.any():
        return out
    # Cheeks: between the jaw and the nose, below the eyes, above the mouth corners.
    cheeks = np.zeros(where.shape, np.uint8)
    for ids in ((1, 2, 3, 48, 31, 39), (15, 14, 13, 54, 35, 42)):
        cv2.fillPoly(cheeks, [np.round(points[list(ids)]).astype(np.int32)], 1)
    x0, y0, bw, bh = cv2.boundingRect(cheeks)
    cheek_ycc = cv2.cvtColor(image[y0:y0 + bh, x0:x0 + bw], cv2.COLOR_RGB2YCrCb)
    sample = cheek_ycc[cheeks[y0:y0 + bh, x0:x0 + bw].astype(bool)][:, 1:].astype(np.float64)
    if len(sample) < 20:
        return where.copy()
    mean = sample.mean(0)
    cov = np.cov(sample.T) + np.eye(2) * 4.0  # floor: a flat-lit cheek must not give a needle-thin model
    inv = np.linalg.inv(cov).astype(np.float32)
    # Only the band's bounding box (plus the closing's reach) is tested.
    x0, y0, bw, bh = cv2.boundingRect(where.astype(np.uint8))
    ycc = cv2.cvtColor(image[y0:y0 + bh, x0:x0 + bw], cv2.COLOR_RGB2YCrCb).astype(np.float32)
    d0, d1 = ycc[..., 1] - np.float32(mean[0]), ycc[..., 2] - np.float32(mean[1])
    m2 = inv[0, 0] * d0 * d0 + 2 * inv[0, 1] * d0 * d1 + inv[1, 1] * d1 * d1
    roi = (m2 < 16.0).astype(np.uint8)
    # Close pin-holes (specular highlights, stubble) inside the neck.
    roi = cv2.morphologyEx(roi, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    out[y0:y0 + bh, x0:x0 + bw] = roi.astype(bool)
    return out & where


def parse(cfg: RadNerfConfig) -> StageResult:
    """Label every frame head / neck / torso / background; write ``parsing/<i>.png``.

    Returns:
        The stage's result; its ``output`` is the ``parsing`` folder.

    Raises:
        InputError: no frames or (offline backend) no landmarks.
        MissingWeightsError: ``bisenet`` without its weights.
        StageOutputExistsError: a ``parsing`` folder radnerf did not write that
            lacks some frames, without ``overwrite``.
    """
    paths = PersonPaths.for_person(cfg.paths.artifacts, cfg.person)
    opts = cfg.preprocess
    backend = opts.parsing
    if backend not in PARSING_BACKENDS:
        make_backend(backend)  # raises ConfigError with the list
    if backend == "bisenet":
        from radnerf.weights import require

        require("bisenet", cfg.paths.weights)
    n = frame_count(paths)

    def upstream() -> dict[str, str]:
        inputs = {"ingest": common.stage_fingerprint(paths, "ingest")}
        if backend == "offline":
            inputs["landmarks"] = common.stage_fingerprint(paths, "landmarks")
        return inputs

    plan = StagePlan(STAGE, [paths.rel(paths.parsing)], settings={"backend": backend}, upstream=upstream)

    def work(w: StageWriter) -> dict:
        points = load_landmarks(paths, n) if backend == "offline" else None
        w.staged.parsing.mkdir()
        device = "cpu"
        workers = common.worker_count(opts.workers)
        dask = common.dask_target(opts)
        if backend == "bisenet":
            from radnerf.devices import resolve_device  # imports torch: only for the torch backend

            device = resolve_device(opts.device, "preprocess.device")
            # BiSeNet runs on torch, which already uses every core (or the GPU): one process.
            workers, dask = 1, None
        shares = common.map_chunks(
            _parse_chunk, n, workers, backend, device, cfg.paths.weights, str(paths.root), str(w.staged.root), points,
            stage=STAGE, dask=dask,
        )
        share = np.concatenate(shares)  # [N, 4] share of pixels per label
        log.info("parse: %d frames with %s", n, backend)
        return {
            "backend": backend,
            "frames": n,
            "mean_share": {k: float(share[:, i].mean()) for i, k in enumerate(("background", "head", "neck", "torso"))},
            "frames_without_head": [int(i) for i in np.flatnonzero(share[:, HEAD] == 0)],
        }

    def overlays() -> None:
        from radnerf.preprocess.overlays import parsing_overlay, write_overlay

        for i in common.overlay_indices(n, opts.overlay_frames):
            colours = images.read_rgb(paths.parsing_image(i))
            write_overlay(paths, STAGE, i, parsing_overlay(images.read_rgb(paths.frame(i)), colours))

    return run_stage(
        paths, plan, work, overwrite=cfg.overwrite, after=overlays,
        accept_foreign=common.all_frames_present(n, {"parsing/<i>.png": paths.parsing_image}),
    )


def _parse_chunk(
    frames: range, backend: str, device: str, weights_dir: str | None, root: str, staged: str,
    points: np.ndarray | None,
) -> np.ndarray:
    parser = make_backend(backend, device=device, weights_dir=weights_dir)
    paths, out = PersonPaths(Path(root)), PersonPaths(Path(staged))
    shares = np.zeros((len(frames), 4))
    for k, i in enumerate(frames):
        labels = parser.parse(images.read_rgb(paths.frame(i)), None if points is None else points[i])
        shares[k] = np.bincount(labels.ravel(), minlength=4)[:4] / labels.size
        # Indexed PNG: readers (cv2.imread in RAD-NeRF) see the RGB colours.
        out.parsing_image(i).write_bytes(images.png_bytes(labels, palette=COLOURS))
    return shares
