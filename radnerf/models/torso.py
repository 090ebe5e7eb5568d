"""The pseudo-3D deformable torso (paper Section 3.3; RAD-NeRF's ``forward_torso``).

The torso is a 2D image field on the frame's pixels, moved by the head pose.
For the pixels ``x [N, 2]`` of one frame (normalised to [-1, 1], row first, as
RAD-NeRF's ``bg_coords``), its head pose ``P`` and its torso code ``c``::

    x     = 0.8 x                                           torso_shrink
    k     = project(P^-1 anchors)                           three head points seen by the camera, [1, 6]
    h     = [freq8(x), freq4(k), c]                         the pose and the code are the same for every pixel
    x'    = clamp(x + MLP_deform(h), -1, 1)                 where the pose moves this pixel's torso
    alpha, rgb = sigmoid(MLP_torso([G2(x'), h]))            2D grid read at the moved pixel

and the frame is ``head over (rgb * alpha + background * (1 - alpha))``. The
three anchors are points just in front of the head's centre; their projection
says how the head (and so the shoulders under it) is turned, a 6-d summary of
the pose that the deformation net reads.

``freq8``/``freq4`` are torch-ngp's frequency encodings (input included); the
MLPs are RAD-NeRF's bias-free ones, parameters named as RAD-NeRF names them
(``torso_deform_net``, ``torso_net``, ``individual_codes_torso``). The pose and
code enter the MLPs as :class:`~radnerf.models.mlp.MLP`'s one-row constant.
"""

from __future__ import annotations

import torch
from torch import nn

from radnerf.config import ModelConfig
from radnerf.encoding import FrequencyEncoder, build_grid_encoder
from radnerf.models.mlp import MLP

ANCHOR_POINTS = ((0.01, 0.01, 0.1, 1.0), (-0.1, -0.1, 0.1, 1.0), (0.1, -0.1, 0.1, 1.0))
"""RAD-NeRF's three anchors, homogeneous points in the head's (normalised) frame."""
SHRINK = 0.8
"""RAD-NeRF's ``torso_shrink``: pixels are drawn toward the centre before the deformation."""
CODE_DIM = 8
"""RAD-NeRF's ``individual_dim_torso``: the per-frame torso code."""
DEFORM_FREQUENCIES = 8
"""Octaves of the pixel coordinates' encoding."""
ANCHOR_FREQUENCIES = 4
"""Octaves of the projected anchors' encoding."""


def torso_coords(height: int, width: int, pixels: torch.Tensor | None = None) -> torch.Tensor:
    """Flat pixel indices ``[N]`` (None: every pixel, row-major) -> ``[N, 2]`` ``(row, col)`` in [-1, 1].

    RAD-NeRF's ``get_bg_coords``: ``row / (H - 1) * 2 - 1`` first, then the column, corner pixels at +-1.
    """
    if pixels is None:
        pixels = torch.arange(height * width)
    rows = torch.div(pixels, width, rounding_mode="floor")
    cols = pixels % width
    return torch.stack([rows / (height - 1), cols / (width - 1)], dim=-1).float() * 2 - 1


def project_anchors(anchors: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """``anchors [K, 4]`` (homogeneous, head frame) seen from camera-to-head ``pose [4, 4]`` -> ``[1, 2K]``.

    RAD-NeRF's ``anchor_points[None] @ poses.permute(0, 2, 1).inverse()``: each row is ``(P^-1 a)^T``,
    the anchor in the camera's frame, then ``x / w / z, y / w / z`` anchor after anchor.
    """
    cam = anchors @ torch.linalg.inv(pose.reshape(4, 4).transpose(0, 1))
    return (cam[:, :2] / cam[:, 3:] / cam[:, 2:3]).reshape(1, -1)


class TorsoModel(nn.Module):
    """The torso field of one person.

    Args:
        cfg: the model config (``torso_grid``, ``encoding``, ``appearance_at_test``).
        num_frames: training frames, one torso code each.
    """

    def __init__(self, cfg: ModelConfig, num_frames: int):
        super().__init__()
        self.cfg = cfg
        self.num_frames = int(num_frames)
        self.register_buffer("anchor_points", torch.tensor(ANCHOR_POINTS))
        self.torso_deform_encoder = FrequencyEncoder(2, DEFORM_FREQUENCIES, convention="ngp")
        self.anchor_encoder = FrequencyEncoder(2 * len(ANCHOR_POINTS), ANCHOR_FREQUENCIES, convention="ngp")
        shared = self.torso_deform_encoder.output_dim + self.anchor_encoder.output_dim + CODE_DIM
        self.torso_deform_net = MLP(shared, 2, 64, 3)
        self.torso_encoder = build_grid_encoder(cfg.torso_grid, 2, cfg.encoding, bound=1.0)
        self.torso_net = MLP(self.torso_encoder.output_dim + shared, 4, 32, 3)
        # RAD-NeRF's individual codes: N(0, 0.1^2).
        self.individual_codes_torso = nn.Parameter(torch.randn(self.num_frames, CODE_DIM) * 0.1)

    def code(self, index: int | None) -> torch.Tensor:
        """``[1, CODE_DIM]``: training frame ``index``'s code, or the one for unseen frames (None), chosen
        as the head's appearance code is (``model.appearance_at_test``: frame 0's or the mean)."""
        codes = self.individual_codes_torso
        if index is not None:
            return codes[int(index)].unsqueeze(0)
        if self.cfg.appearance_at_test == "mean":
            return codes.mean(dim=0, keepdim=True)
        return codes[:1]

    def forward(
        self, coords: torch.Tensor, pose: torch.Tensor, code: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``coords [N, 2]`` in [-1, 1] (:func:`torso_coords`), camera-to-head ``pose [4, 4]``, ``code [1, 8]``
        -> ``alpha [N, 1]``, ``rgb [N, 3]``, the deformation ``dx [N, 2]``.

        ``alpha`` and ``rgb`` reach 1e-3 past [0, 1], so 0 and 1 themselves are at finite logits
        (a torso edge or a black shirt does not drive the net to infinity).
        """
        x = coords * SHRINK
        anchors = self.anchor_encoder(project_anchors(self.anchor_points, pose.to(self.anchor_points)))
        const = torch.cat([anchors, code.to(anchors)], dim=-1)
        enc_x = self.torso_deform_encoder(x)
        dx = self.torso_deform_net([enc_x], const)
        moved = (x + dx).clamp(-1, 1)
        h = self.torso_net([self.torso_encoder(moved), enc_x], const)
        alpha = torch.sigmoid(h[:, :1]) * (1 + 2e-3) - 1e-3
        rgb = torch.sigmoid(h[:, 1:]) * (1 + 2e-3) - 1e-3
        return alpha, rgb, dx

    def param_groups(self, lr_grid: float, lr_net: float) -> list[dict]:
        """Adam's parameter groups, RAD-NeRF's ``get_params`` with ``--torso``: the grid at ``lr_grid``;
        the MLPs and the codes at ``lr_net``. Each group is named (``name``)."""
        nets = [*self.torso_deform_net.parameters(), *self.torso_net.parameters()]
        return [
            {"name": "grids", "params": list(self.torso_encoder.parameters()), "lr": lr_grid},
            {"name": "nets", "params": nets, "lr": lr_net},
            {"name": "codes", "params": [self.individual_codes_torso], "lr": lr_net},
        ]
