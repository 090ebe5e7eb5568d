"""The audio path: per-frame feature windows -> a 64-d audio code, smoothed over neighbouring frames.

RAD-NeRF's ``AudioNet`` and ``AudioAttNet`` (after AD-NeRF), same layers and
parameter names::

    windows [B, T, W, C]  (T = attention_window frames around each frame, W = 16 feature steps, C channels)
      AudioNet:     Conv1d C->32->32->64->64 (kernel 3, stride 2, LeakyReLU 0.02) over W,
                    Linear 64->64, LeakyReLU, Linear 64->audio_dim        -> [B, T, audio_dim]
      AudioAttNet:  Conv1d audio_dim->16->8->4->2->1 over T, Linear T->T, softmax over T,
                    the weighted sum of the T codes                       -> [B, audio_dim]

Any backend's features work (C = 53 offline, 44 wav2vec2, 1024 HuBERT): ``C``
is the first layer's input size, recorded in checkpoints.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class AudioNet(nn.Module):
    """``[B, W, C]`` feature windows -> ``[B, dim_aud]`` codes."""

    def __init__(self, dim_in: int, dim_aud: int = 64):
        super().__init__()
        self.dim_in = dim_in
        self.dim_aud = dim_aud
        self.encoder_conv = nn.Sequential(
            nn.Conv1d(dim_in, 32, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(32, 32, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
        )
        self.encoder_fc1 = nn.Sequential(nn.Linear(64, 64), nn.LeakyReLU(0.02, True), nn.Linear(64, dim_aud))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, W, C]`` (as ``aud_<name>.npy`` stores windows) -> ``[B, dim_aud]``."""
        h = self.encoder_conv(x.transpose(1, 2))  # [B, 64, W / 16]
        # Four stride-2 convolutions take RAD-NeRF's 16 steps to 1; a longer
        # window leaves a few, averaged.
        return self.encoder_fc1(h.mean(dim=-1))


class AudioAttNet(nn.Module):
    """``[B, T, dim_aud]`` codes of ``T`` neighbouring frames -> ``[B, dim_aud]``, a learned softmax average."""

    def __init__(self, dim_aud: int = 64, seq_len: int = 8):
        super().__init__()
        self.seq_len = seq_len
        self.dim_aud = dim_aud
        layers: list[nn.Module] = []
        for c_in, c_out in zip((dim_aud, 16, 8, 4, 2), (16, 8, 4, 2, 1)):
            layers += [nn.Conv1d(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.LeakyReLU(0.02, True)]
        self.attentionConvNet = nn.Sequential(*layers)
        self.attentionNet = nn.Sequential(nn.Linear(seq_len, seq_len), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, T, dim_aud]`` -> ``[B, dim_aud]``."""
        y = self.attentionConvNet(x.transpose(1, 2))  # [B, 1, T]
        weights = self.attentionNet(y.view(-1, self.seq_len)).unsqueeze(-1)  # [B, T, 1]
        return (weights * x).sum(dim=1)


def attention_indices(aud_ids: np.ndarray | torch.Tensor, num_audio: int, window: int) -> torch.Tensor:
    """Rows of the audio windows each frame's attention looks at; -1 where they run off the clip.

    RAD-NeRF's ``get_audio_features`` with ``att=2``: frames ``[j - T/2, j + T/2)``
    around ``aud_id`` ``j`` (``T`` = ``window``; ``T = 1`` is ``[j]``).

    Args:
        aud_ids: ``[B]`` rows of the frames' own windows.
        num_audio: rows in the audio feature array.

    Returns:
        ``[B, T]`` int64.
    """
    ids = torch.as_tensor(np.asarray(aud_ids), dtype=torch.int64).reshape(-1, 1)
    offsets = torch.arange(window, dtype=torch.int64) - window // 2
    rows = ids + offsets
    return torch.where((rows >= 0) & (rows < num_audio), rows, torch.full_like(rows, -1))


def gather_windows(audio: np.ndarray | torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``audio [N_audio, W, C]`` at ``rows [B, T]`` -> ``[B, T, W, C]`` float32, zeros where ``rows`` is -1."""
    valid = rows >= 0
    picked = rows.clamp(min=0).reshape(-1).numpy()
    out = torch.from_numpy(np.asarray(audio[picked], dtype=np.float32))
    out = out.view(*rows.shape, *out.shape[1:])
    return out * valid[..., None, None].to(out.dtype)
