"""Lip-sync scores LSE-D and LSE-C, computed as syncnet_python and Wav2Lip's scorer compute them.

SyncNet (Chung & Zisserman, "Out of time", 2016) embeds 0.2 s of mouth (5 frames
at 25 fps) and 0.2 s of audio (20 MFCC steps at 100 Hz) into one space; in-sync
pairs lie close. For each video window ``i`` the distance to the audio window
``i + d`` is measured for ``d = -vshift..vshift``; averaged over time:

- LSE-D (lip-sync error, distance): the smallest mean distance; lower is better.
- LSE-C (lip-sync error, confidence): median minus smallest mean distance; higher is better.
- offset: ``vshift - argmin``; ``k > 0`` means video frame ``i`` matches the audio
  window of frame ``i - k`` best.

Everything follows joonson/syncnet_python (``SyncNetModel.S``,
``SyncNetInstance.evaluate``, ``run_pipeline.crop_video``) and Wav2Lip's
``evaluation/scores_LSE`` (which runs the same evaluate with ``vshift=15``), so
``syncnet_v2.model`` loads unchanged and the numbers compare with published ones.
Two differences remain and are not ours to remove: syncnet_python reads crops back
from an XVID video and JPEGs (lossy), and it gets the face boxes from its own S3FD
tracker; callers pass frames and boxes here.
"""

from __future__ import annotations

import decimal
import logging
import math
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radnerf.errors import InputError, MissingWeightsError
from radnerf.weights import require

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Audio rate SyncNet was trained on."""
FPS = 25
"""Video rate SyncNet was trained on: one frame is 640 samples and 4 MFCC steps."""
CROP_SIZE = 224
"""Side of the face crops the lip stream takes."""
WINDOW_FRAMES = 5
"""Video frames per lip window (0.2 s)."""
WINDOW_MFCC = 20
"""MFCC steps per audio window (0.2 s at 100 Hz)."""
VSHIFT = 15
"""Largest offset searched, in frames: Wav2Lip's scorer value (syncnet_python's demo uses 15 too)."""


class SyncNet(nn.Module):
    """syncnet_python's ``SyncNetModel.S``: module names and order kept so ``syncnet_v2.model`` loads strictly.

    Args:
        num_layers_in_fc_layers: embedding size (1024 in the published model).
    """

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()
        # Registration order (aud cnn, aud fc, lip fc, lip cnn) is S's, so state_dict keys come out in its order.
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, num_layers_in_fc_layers),
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, 1, 13, 20]`` MFCC windows -> ``[B, D]`` audio embeddings."""
        mid = self.netcnnaud(x)  # [B, 512, 1, 1]
        return self.netfcaud(mid.flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, 3, 5, 224, 224]`` BGR 0..255 face crops -> ``[B, D]`` lip embeddings."""
        mid = self.netcnnlip(x)  # [B, 512, 1, 1, 1]
        return self.netfclip(mid.flatten(1))


def _round_half_up(x: float) -> int:
    # python_speech_features rounds frame lengths this way; Python's round() would send 0.5 to even.
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


def _hz2mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel: np.ndarray | float) -> np.ndarray | float:
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[nfilt, nfft // 2 + 1]`` triangular filters on 0..sample_rate/2, python_speech_features' ``get_filterbanks``.

    Edges are floored to FFT bins, so neighbouring low filters can share a bin
    edge; that quirk is part of the features SyncNet was trained on.
    """
    melpoints = np.linspace(_hz2mel(0.0), _hz2mel(sample_rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(melpoints) / sample_rate)
    fbank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fbank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fbank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fbank


def mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``python_speech_features.mfcc(audio, sample_rate)`` with its defaults, in numpy.

    25 ms frames every 10 ms, no window (rectangular), pre-emphasis 0.97, 512-point
    FFT, 26 mel filters on 0..sample_rate/2, DCT-II (orthonormal), 13 coefficients,
    lifter 22, coefficient 0 replaced by the log frame energy. The last frame is
    zero-padded, so ``S`` samples give ``1 + ceil((S - 400) / 160)`` frames at 16 kHz.

    Args:
        audio: ``[S]`` samples. The scale matters for coefficient 0 only (log
            energy); SyncNet expects int16 values, as ``scipy.io.wavfile`` reads them.
        sample_rate: Hz.

    Returns:
        ``[T, 13]`` float64.
    """
    from scipy.fft import dct

    nfft, eps = 512, np.finfo(float).eps
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise InputError("cannot compute MFCC of empty audio", hint="pass at least 25 ms of audio")
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    frame_len, step = _round_half_up(0.025 * sample_rate), _round_half_up(0.01 * sample_rate)
    n = 1 if len(x) <= frame_len else 1 + math.ceil((len(x) - frame_len) / step)
    x = np.concatenate([x, np.zeros((n - 1) * step + frame_len - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, frame_len)[::step]
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = pspec @ mel_filterbank(26, nfft, sample_rate).T
    feat = np.where(feat == 0, eps, feat)
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    feat = feat * (1 + 11.0 * np.sin(np.pi * np.arange(13) / 22))
    feat[:, 0] = np.log(energy)
    return feat


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """``[S]`` float audio in [-1, 1] -> ``[S]`` float64 int16 values, as ffmpeg's ``pcm_s16le`` writes them.

    int16 input passes through unchanged.
    """
    a = np.asarray(audio).reshape(-1)
    if a.dtype == np.int16:
        return a.astype(np.float64)
    return np.clip(np.round(a.astype(np.float64) * 32768.0), -32768, 32767)


def face_crops(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4, size: int = CROP_SIZE) -> np.ndarray:
    """syncnet_python's ``crop_video``: square crops around a smoothed face track.

    Box size ``bs`` (half the larger side) and centre are median-filtered over 13
    frames (``scipy.signal.medfilt``, zero-padded as there, so each of the first
    and last 6 frames takes the smallest of the 7 values nearest the end). The crop
    spans ``bs`` above the centre to ``bs (1 + 2 cs)`` below it and ``bs (1 + cs)``
    either side, so the mouth sits in its lower half; outside the frame it is
    grey 110. Then it is resized to ``size`` (bilinear, cv2's default).

    Args:
        frames: ``[N, H, W, 3]`` uint8 (any channel order; it is kept).
        boxes: ``[N, 4]`` face boxes ``x0, y0, x1, y1`` in pixels, one per frame.
        crop_scale: syncnet_python's ``--crop_scale``.
        size: output side.

    Returns:
        ``[N, size, size, 3]`` uint8.

    Raises:
        InputError: shapes disagree, fewer than 7 frames, or a box centre is outside its frame.
    """
    import cv2
    from scipy.signal import medfilt

    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or boxes.shape != (len(frames), 4):
        raise InputError(
            f"face_crops needs frames [N, H, W, 3] and boxes [N, 4]; got {frames.shape} and {boxes.shape}",
            hint="pass one x0, y0, x1, y1 box per frame",
        )
    if len(frames) < 7:
        # With fewer than 7 frames the zero padding outvotes every box: the reference would crop at (0, 0).
        raise InputError(f"face_crops needs at least 7 frames, got {len(frames)}", hint="crop a longer clip")
    h, w = frames.shape[1:3]
    with warnings.catch_warnings():
        # Under 13 frames scipy warns that it zero-pads; the reference smooths exactly so.
        warnings.simplefilter("ignore", UserWarning)
        s = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel_size=13)
        cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13)
        cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        bs = s[i]
        # bs >= 2 also keeps the reference's slice starts non-negative (a negative one would wrap around).
        if not (0 <= cx[i] < w and 0 <= cy[i] < h and bs >= 2):
            raise InputError(
                f"face box of frame {i} (smoothed centre {cx[i]:.0f}, {cy[i]:.0f}, half size {bs:.1f}) "
                f"is not inside the {w}x{h} frame",
                hint="check the boxes are x0, y0, x1, y1 in pixels of these frames",
            )
        # Same integer rounding as the reference, which pads the frame by bsi and slices the padded copy;
        # here only the crop is allocated and filled where it overlaps the frame.
        bsi = int(bs * (1 + 2 * crop_scale))
        my, mx = cy[i] + bsi, cx[i] + bsi
        hp, wp = h + 2 * bsi, w + 2 * bsi
        r0, r1 = int(my - bs), min(int(my + bs * (1 + 2 * crop_scale)), hp)
        c0, c1 = int(mx - bs * (1 + crop_scale)), min(int(mx + bs * (1 + crop_scale)), wp)
        face = np.full((r1 - r0, c1 - c0, 3), 110, np.uint8)
        fr0, fr1 = max(r0 - bsi, 0), min(r1 - bsi, h)
        fc0, fc1 = max(c0 - bsi, 0), min(c1 - bsi, w)
        if fr1 > fr0 and fc1 > fc0:
            face[fr0 + bsi - r0 : fr1 + bsi - r0, fc0 + bsi - c0 : fc1 + bsi - c0] = frame[fr0:fr1, fc0:fc1]
        out[i] = cv2.resize(face, (size, size))
    return out


def offset_distances(
    video_feats: np.ndarray | torch.Tensor, audio_feats: np.ndarray | torch.Tensor, vshift: int = VSHIFT
) -> np.ndarray:
    """syncnet_python's ``calc_pdist``: distance of each video window to the audio windows around it.

    Args:
        video_feats: ``[N, D]`` lip embeddings.
        audio_feats: ``[N, D]`` audio embeddings of the same windows.
        vshift: largest offset, in frames.

    Returns:
        ``[N, 2 vshift + 1]`` float32: column ``j`` of row ``i`` is
        ``|v_i - a_(i + j - vshift) + 1e-6|`` (torch's ``pairwise_distance``),
        with zero vectors standing in for audio windows before the first or after the last.
    """
    v = torch.as_tensor(video_feats, dtype=torch.float32)
    a = torch.as_tensor(audio_feats, dtype=torch.float32)
    if v.ndim != 2 or v.shape != a.shape:
        raise InputError(f"feature shapes differ or are not [N, D]: {tuple(v.shape)} and {tuple(a.shape)}")
    win = 2 * vshift + 1
    ap = F.pad(a, (0, 0, vshift, vshift))
    out = []
    # Chunked over time: all offsets at once would hold N * win * D floats.
    for i in range(0, len(v), 256):
        rows = torch.arange(i, min(i + 256, len(v)))
        shifted = ap[rows[:, None] + torch.arange(win)[None, :]]  # [n, win, D]
        out.append(F.pairwise_distance(v[rows, None, :].expand_as(shifted), shifted))
    return torch.cat(out).numpy()


def lse_scores(dists: np.ndarray | torch.Tensor) -> dict[str, float | int]:
    """LSE-D, LSE-C and the offset from ``dists: [N, 2 vshift + 1]`` (:func:`offset_distances`).

    Returns:
        ``{"lse_d": min_j mean_i d, "lse_c": median_j mean_i d - lse_d, "offset": vshift - argmin_j}``.
    """
    d = torch.as_tensor(dists, dtype=torch.float32)
    if d.ndim != 2 or d.shape[1] % 2 != 1 or len(d) == 0:
        raise InputError(f"distances must be [N, 2 vshift + 1] with N >= 1, got {tuple(d.shape)}")
    mdist = d.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    # torch.median, as the reference: the lower middle value (the count is odd, so exactly the middle).
    conf = torch.median(mdist) - minval
    return {"lse_d": float(minval), "lse_c": float(conf), "offset": (d.shape[1] - 1) // 2 - int(minidx)}


def score_video(
    net: nn.Module,
    frames: np.ndarray,
    audio16k: np.ndarray,
    *,
    vshift: int = VSHIFT,
    batch_size: int = 20,
) -> dict[str, float | int]:
    """LSE-D / LSE-C of a talking face, as ``SyncNetInstance.evaluate``.

    Window ``i`` pairs frames ``i..i+4`` with MFCC steps ``4i..4i+19``, for
    ``i < min(N, S // 640) - 5`` (the reference's count, which drops one window
    that would fit).

    Args:
        net: a :class:`SyncNet` (its device is used; it is put in eval mode).
        frames: ``[N, 224, 224, 3]`` uint8 RGB face crops at 25 fps
            (:func:`face_crops`); other sizes are resized to 224, as Wav2Lip's scorer does.
            They go to the network as BGR 0..255, which is what cv2 gave syncnet_python.
        audio16k: ``[S]`` 16 kHz mono, float in [-1, 1] (or int16), starting with frame 0.
        vshift: largest offset searched, in frames.
        batch_size: windows per network call.

    Returns:
        ``{"lse_d", "lse_c", "offset", "windows"}``.

    Raises:
        InputError: wrong shapes, or fewer than 6 frames (0.24 s) of both video and audio.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be [N, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1:3] != (CROP_SIZE, CROP_SIZE):
        frames = np.stack([cv2.resize(f, (CROP_SIZE, CROP_SIZE)) for f in frames])
    pcm = to_pcm16(audio16k)
    if abs(len(pcm) / SAMPLE_RATE - len(frames) / FPS) > 1 / FPS:
        log.warning(
            "sync: audio (%.3f s) and video (%.3f s) lengths differ; scoring the shorter",
            len(pcm) / SAMPLE_RATE,
            len(frames) / FPS,
        )
    windows = min(len(frames), len(pcm) // (SAMPLE_RATE // FPS)) - WINDOW_FRAMES
    if windows < 1:
        raise InputError(
            f"SyncNet needs at least {WINDOW_FRAMES + 1} frames (0.24 s) of video and audio; "
            f"got {len(frames)} frames and {len(pcm) / SAMPLE_RATE:.3f} s",
            hint="score a longer clip",
        )
    cc = torch.from_numpy(mfcc(pcm, SAMPLE_RATE).T.astype(np.float32))  # [13, T]
    device = next(net.parameters()).device
    bgr = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1]))  # [N, H, W, 3]
    offsets = torch.arange(WINDOW_FRAMES)
    net.eval()
    lip, aud = [], []
    with torch.inference_mode():
        for i in range(0, windows, batch_size):
            starts = torch.arange(i, min(i + batch_size, windows))
            clips = bgr[starts[:, None] + offsets[None, :]].to(device)  # [B, 5, H, W, 3]
            lip.append(net.forward_lip(clips.permute(0, 4, 1, 2, 3).float()).cpu())
            steps = torch.stack([cc[:, 4 * int(s) : 4 * int(s) + WINDOW_MFCC] for s in starts])  # [B, 13, 20]
            aud.append(net.forward_aud(steps[:, None].to(device)).cpu())
    scores = lse_scores(offset_distances(torch.cat(lip), torch.cat(aud), vshift))
    scores["windows"] = windows
    return scores


def sync_available(weights_dir: Optional[str] = None) -> Optional[str]:
    """None when the SyncNet weights are present, else why not and how to fetch them.

    Callers report the metric as unavailable with this reason, never a number.
    """
    try:
        require("syncnet", weights_dir)
    except MissingWeightsError as e:
        return str(e)
    return None


def load_syncnet(weights_dir: Optional[str] = None, device: str | torch.device = "cpu") -> SyncNet:
    """The published SyncNet v2 (``syncnet_v2.model``, a plain state_dict) in eval mode on ``device``.

    Raises:
        MissingWeightsError: the file is not in the cache (the message names
            ``radnerf weights fetch syncnet``), or it is not SyncNet v2's state_dict.
    """
    path: Path = require("syncnet", weights_dir)
    refetch = "delete it and run `radnerf weights fetch syncnet`"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file fails in pickle, zipfile or torch, all meaning the same
        raise MissingWeightsError(f"cannot read {path}: {type(e).__name__}: {e}", hint=refetch) from None
    net = SyncNet()
    if not isinstance(state, dict):
        raise MissingWeightsError(f"{path} is not a state_dict (it holds a {type(state).__name__})", hint=refetch)
    try:
        # Checkpoints saved before PyTorch 0.4.1 lack BatchNorm's num_batches_tracked; BatchNorm fills it in.
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise MissingWeightsError(f"{path} is not SyncNet v2: {detail}", hint=refetch) from None
    return net.to(device).eval()
