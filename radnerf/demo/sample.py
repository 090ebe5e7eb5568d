"""The embedded sample: a short talking clip made from material that ships in our dependencies.

The face is the portrait photo scikit-image ships (``skimage.data.astronaut``,
Eileen Collins, public domain, NASA), cropped to head and shoulders. The voice
is eSpeak NG speaking ``DemoConfig.text``. The head moves a little (rotation,
translation, scale, smooth and seeded) in front of a static background, and
the jaw opens with the loudness of the speech, so every preprocessing stage
has a real face, a moving head and aligned speech to work on.
"""

from __future__ import annotations

import logging
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radnerf.config import DemoConfig
from radnerf.errors import RadNerfError
from radnerf.media import ffmpeg_exe, write_wav

log = logging.getLogger(__name__)

FPS = 25
SAMPLE_RATE = 16000

# Head-and-shoulders crop of the 512x512 astronaut photo (x0, y0, side): the
# face spans about 40% of it, as in talking-head datasets, and the second
# "face" a detector finds on her suit's patch stays outside.
_CROP = (95, 20, 260)
# Landmarks of the photo (dlib, 68-point layout), in photo pixels; the lip
# line is the lower inner lip, below her teeth, so the jaw drops under them.
_MOUTH_CENTRE = (223.0, 147.0)
_MOUTH_HALF_WIDTH = 26.0
_LIP_LINE_Y = 150.0
_CHIN_Y = 178.0
_NECK_PIVOT = (224.0, 200.0)


@dataclass(frozen=True)
class Sample:
    video: Path
    frames: int
    duration: float


def _portrait(size: int) -> np.ndarray:
    """``[size, size, 3]`` uint8 head-and-shoulders crop of the astronaut photo."""
    import cv2
    from skimage import data

    x0, y0, side = _CROP
    crop = data.astronaut()[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _to_crop(point: tuple[float, float], size: int) -> tuple[float, float]:
    x0, y0, side = _CROP
    s = size / side
    return ((point[0] - x0) * s, (point[1] - y0) * s)


def _person_mask(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 soft person mask from MediaPipe selfie segmentation (ships in the wheel)."""
    from radnerf.native_logs import silence_stderr

    with silence_stderr():
        import mediapipe as mp

        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            mask = seg.process(image).segmentation_mask
    if mask is None:
        raise RadNerfError("could not segment the demo portrait")
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def _envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """``[frames]`` mouth opening in [0, 1] from the speech loudness around each frame."""
    hop = SAMPLE_RATE // FPS
    padded = np.pad(audio, (hop, hop + frames * hop))
    rms = np.array([np.sqrt(np.mean(padded[i * hop : i * hop + 2 * hop] ** 2)) for i in range(frames)])
    ref = np.percentile(rms[rms > 0], 95) if np.any(rms > 0) else 1.0
    opening = np.clip(rms / max(ref, 1e-6), 0.0, 1.0) ** 0.7
    kernel = np.array([0.25, 0.5, 0.25])
    return np.convolve(opening, kernel, mode="same")


def _open_mouth(image: np.ndarray, amount: float, size: int) -> np.ndarray:
    """Drop the lower lip and jaw by up to 4.5% of the frame and darken the gap."""
    import cv2

    if amount <= 0.02:
        return image
    h, w = image.shape[:2]
    cx, _ = _to_crop(_MOUTH_CENTRE, size)
    _, lip = _to_crop((0.0, _LIP_LINE_Y), size)
    _, chin = _to_crop((0.0, _CHIN_Y), size)
    half = _MOUTH_HALF_WIDTH * size / _CROP[2]
    opening = amount * 0.045 * size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    across = np.exp(-(((xs - cx) / (1.1 * half)) ** 2) * 2.0)
    below = ys - lip
    # Full displacement right under the lip line, fading to nothing past the chin.
    down = np.where(below > 0, np.exp(-np.clip(below - opening, 0, None) / max(chin - lip, 1.0) * 1.5), 0.0)
    shift = opening * across * down
    out = cv2.remap(image, xs, ys - shift.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gap = (below > 0) & (below < shift) & (np.abs(xs - cx) < half * (1.0 - below / (2.5 * opening + 1e-3)))
    inside = np.array([60, 20, 25], np.float32)
    out = out.astype(np.float32)
    out[gap] = out[gap] * 0.15 + inside * 0.85
    return out.astype(np.uint8)


def _head_motion(frames: int, seed: int) -> np.ndarray:
    """``[frames, 4]`` (angle deg, dx px, dy px, scale): smooth, seeded, a few degrees."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    out = np.zeros((frames, 4), np.float32)
    for k, amp in enumerate((4.0, 5.0, 3.0, 0.02)):
        phases = rng.uniform(0, 2 * math.pi, 3)
        freqs = rng.uniform(0.1, 0.45, 3)
        out[:, k] = amp * sum(np.sin(2 * math.pi * f * t + p) for f, p in zip(freqs, phases)) / 2.0
    out[:, 3] += 1.0
    return out


def make_sample(out: Path, cfg: DemoConfig) -> Sample:
    """Write a talking clip (H.264 + AAC in MP4) to ``out``.

    Returns:
        The clip's path, frame count and duration.
    """
    import cv2

    from radnerf.demo.tts import synthesize

    speech, rate = synthesize(cfg.text)
    # Resample to 16 kHz by linear interpolation: plenty for speech, no extra dependency.
    n16 = int(len(speech) * SAMPLE_RATE / rate)
    speech = np.interp(np.arange(n16) * rate / SAMPLE_RATE, np.arange(len(speech)), speech).astype(np.float32)
    lead = int(0.4 * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(lead, np.float32)])
    frames = int(math.ceil(len(audio) / SAMPLE_RATE * FPS))
    audio = np.pad(audio, (0, frames * SAMPLE_RATE // FPS - len(audio)))

    size = cfg.size - cfg.size % 2
    portrait = _portrait(size)
    mask = _person_mask(portrait)
    hard = (mask > 0.5).astype(np.uint8)
    dilated = cv2.dilate(hard, np.ones((15, 15), np.uint8))
    background = cv2.inpaint(portrait, dilated * 255, 9, cv2.INPAINT_TELEA)
    mouth = _envelope(audio, frames)
    motion = _head_motion(frames, cfg.seed)
    pivot = _to_crop(_NECK_PIVOT, size)

    out.parent.mkdir(parents=True, exist_ok=True)
    wav = out.with_suffix(".wav")
    write_wav(wav, audio, SAMPLE_RATE)
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(FPS), "-i", "-",
        "-i", str(wav),
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(out),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in range(frames):
            angle, dx, dy, scale = (float(v) for v in motion[i])
            face = _open_mouth(portrait, float(mouth[i]), size)
            m = cv2.getRotationMatrix2D(pivot, angle, scale)
            m[:, 2] += (dx, dy)
            moved = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            alpha = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR)[..., None]
            frame = (moved * alpha + background * (1.0 - alpha)).astype(np.uint8)
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise RadNerfError(f"ffmpeg could not encode the demo sample: {err.strip().splitlines()[-1] if err.strip() else '?'}")
    wav.unlink(missing_ok=True)
    log.info("demo sample: %d frames (%.1f s) of the astronaut portrait speaking -> %s", frames, frames / FPS, out)
    return Sample(video=out, frames=frames, duration=frames / FPS)
