"""The embedded sample: a short talking clip made from material that ships in our dependencies.

The face is the portrait photo scikit-image ships (``skimage.data.astronaut``,
Eileen Collins, public domain, NASA), cropped to head and shoulders. The voice
is eSpeak NG speaking ``DemoConfig.text``. The head moves a little (rotation,
translation, scale, smooth and seeded) in front of a static background, and
the jaw opens with the loudness of the speech, so every preprocessing stage
has a real face, a moving head and aligned speech to work on.

The clip is byte-reproducible: the same config gives the same file in one
process, in two processes and with any number of cores (``dvc repro`` keys on
its hash). What that takes, each explained where it is done:

- eSpeak NG speaks in a fresh process (:func:`radnerf.demo.tts.synthesize`);
- x264 encodes on one thread, and ffmpeg writes no version strings or dates;
- ffmpeg and OpenCV run their baseline code, and numpy's exp, power, sin and
  BLAS sums are replaced by libm and written-out sums: the AVX2 / AVX-512
  paths these libraries pick by CPU round differently in the last bits;
- the head motion comes from a seeded generator.

MediaPipe's segmentation (TFLite) picks its kernels by CPU too and cannot be
told otherwise, so machines of different CPU families may still differ.
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
from collections.abc import Iterator
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


@contextlib.contextmanager
def _baseline_opencv() -> Iterator[None]:
    """OpenCV without its CPU-specific code while the clip is drawn.

    OpenCV dispatches AVX2 / AVX-512 variants (compiled with fused
    multiply-add) and Intel IPP by the CPU it runs on; their float results
    differ from the baseline SSE code in the last bits, enough to move a few
    pixels from one machine to the next. The baseline is the same on every
    x86-64 machine, and fast enough for a few hundred small frames.
    """
    import cv2

    was = cv2.useOptimized()
    cv2.setUseOptimized(False)
    try:
        yield
    finally:
        cv2.setUseOptimized(was)


def _envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """``[frames]`` mouth opening in [0, 1] from the speech loudness around each frame."""
    hop = SAMPLE_RATE // FPS
    padded = np.pad(audio, (hop, hop + frames * hop))
    rms = np.array([np.sqrt(np.mean(padded[i * hop : i * hop + 2 * hop] ** 2)) for i in range(frames)])
    ref = float(np.percentile(rms[rms > 0], 95)) if np.any(rms > 0) else 1.0
    # Python's ``**`` (libm) rather than numpy's, which uses SVML on AVX-512
    # machines and libm elsewhere: the two differ in the last bit.
    opening = np.array([min(max(float(r) / max(ref, 1e-6), 0.0), 1.0) ** 0.7 for r in rms])
    # [0.25, 0.5, 0.25] smoothing written out, zero beyond the ends (np.convolve's
    # mode="same"): np.convolve sums through BLAS, whose kernels vary by CPU.
    padded_open = np.pad(opening, 1)
    return 0.25 * padded_open[:-2] + 0.5 * padded_open[1:-1] + 0.25 * padded_open[2:]


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
    below = ys - lip
    # The displacement is a column profile times a row profile; each is
    # computed with math.exp (libm), as numpy's exp differs by CPU (see _envelope).
    # Across: a Gaussian around the mouth centre. Down: full right under the
    # lip line, fading to nothing past the chin.
    across = np.array([math.exp(-(((x - cx) / (1.1 * half)) ** 2) * 2.0) for x in range(w)], np.float32)
    fade = max(chin - lip, 1.0)
    down = np.array(
        [math.exp(-max(y - lip - opening, 0.0) / fade * 1.5) if y - lip > 0 else 0.0 for y in range(h)], np.float32
    )
    shift = opening * across[None, :] * down[:, None]
    out = cv2.remap(image, xs, ys - shift.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gap = (below > 0) & (below < shift) & (np.abs(xs - cx) < half * (1.0 - below / (2.5 * opening + 1e-3)))
    inside = np.array([60, 20, 25], np.float32)
    out = out.astype(np.float32)
    out[gap] = out[gap] * 0.15 + inside * 0.85
    return out.astype(np.uint8)


def _head_motion(frames: int, seed: int) -> np.ndarray:
    """``[frames, 4]`` (angle deg, dx px, dy px, scale): smooth, seeded, a few degrees."""
    rng = np.random.default_rng(seed)  # PCG64: the same numbers on every machine
    out = np.zeros((frames, 4), np.float32)
    for k, amp in enumerate((4.0, 5.0, 3.0, 0.02)):
        phases = rng.uniform(0, 2 * math.pi, 3).tolist()
        freqs = rng.uniform(0.1, 0.45, 3).tolist()
        # math.sin (libm), not numpy's CPU-dispatched sin (see _envelope).
        out[:, k] = [
            amp * sum(math.sin(2 * math.pi * f * (i / FPS) + p) for f, p in zip(freqs, phases)) / 2.0
            for i in range(frames)
        ]
    out[:, 3] += 1.0
    return out


def make_sample(out: Path, cfg: DemoConfig) -> Sample:
    """Write a talking clip (H.264 + AAC in MP4) to ``out``, the same bytes on every build.

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

    out.parent.mkdir(parents=True, exist_ok=True)
    wav = out.with_suffix(".wav")
    write_wav(wav, audio, SAMPLE_RATE)
    size = cfg.size - cfg.size % 2
    cmd = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y",
        # ffmpeg's plain C code only: its SIMD (swscale's RGB to YUV, the AAC
        # encoder's float DSP) is picked by CPU and rounds differently.
        "-cpuflags", "0",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(FPS), "-i", "-",
        "-i", str(wav),
        # x264 splits work by its thread count (1.5 x cores by default), which
        # changes its decisions, and writes that count into the stream.
        "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k",
        # No encoder and muxer version strings, no dates, no tags copied from the inputs.
        "-flags", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1",
        "-shortest", str(out),
    ]
    with _baseline_opencv():
        portrait = _portrait(size)
        mask = _person_mask(portrait)
        hard = (mask > 0.5).astype(np.uint8)
        dilated = cv2.dilate(hard, np.ones((15, 15), np.uint8))
        background = cv2.inpaint(portrait, dilated * 255, 9, cv2.INPAINT_TELEA)
        mouth = _envelope(audio, frames)
        motion = _head_motion(frames, cfg.seed)
        pivot = _to_crop(_NECK_PIVOT, size)

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
