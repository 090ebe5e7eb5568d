"""The talking head: a radiance field conditioned on audio, the eyes and a per-frame appearance code.

The paper's decomposed audio-spatial encoding (Section 3.2, RAD-NeRF's
``NeRFNetwork``), for a point ``x`` under one frame's condition::

    f_x   = G3(x)                                     3D spatial grid, [M, 32]
    a_c   = tanh(MLP_amb(f_x, a))                     the learned audio coordinate, [M, ambient_dim]
    f_a   = G2(a_c)                                   2D audio grid on that coordinate, [M, 32]
    sigma, g = MLP_sigma(f_x, f_a, e)                 truncated-exp density, 64 geometry features
    rgb   = sigmoid(MLP_color(SH(d), g, c))           c: the frame's appearance code

``a`` is the audio code (:mod:`radnerf.models.audio`), ``e`` the eye-area
ratio. The backbones of the paper's ablation replace the first three lines
(``model.backbone``): ``implicit`` (AD-NeRF: an MLP on positional encoding and
``a``), ``composed`` (one 5D grid over ``(x, a_c)``), ``deform`` (``a`` moves
the point: ``f = G3(x + dx(f_x, a))``); ``model.audio=false`` drops the audio
path (the baseline).

:class:`HeadModel` exposes what :mod:`radnerf.render` takes:
``density(xyz, cond) -> sigma [M]`` for the occupancy grid and
``model(xyz, dirs, cond) -> (sigma [M], rgb [M, 3], {"ambient": [M]})`` for
rendering, where ``cond`` is a :class:`HeadCondition` of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from radnerf.config import ModelConfig
from radnerf.encoding import FrequencyEncoder, SHEncoder, build_grid_encoder
from radnerf.models.audio import AudioAttNet, AudioNet
from radnerf.models.mlp import MLP, trunc_exp


@dataclass
class HeadCondition:
    """What one frame is rendered under (bound into the renderer's radiance function)."""

    audio: torch.Tensor | None
    """``[1, audio_dim]`` audio code after attention; None without an audio path."""
    eye: torch.Tensor | None
    """``[1, 1]`` eye-area ratio (percent of the image); None when ``model.eye_feature`` is off."""
    appearance: torch.Tensor | None
    """``[1, appearance_dim]`` latent appearance code; None when ``model.appearance_dim`` is 0."""


class HeadModel(nn.Module):
    """The head field of one person.

    Args:
        cfg: the model config (backbone, sizes, switches).
        audio_in_dim: channels ``C`` of the audio feature windows (53 offline, 44 wav2vec2, 1024 HuBERT).
        num_frames: training frames, one appearance code each.
    """

    def __init__(self, cfg: ModelConfig, audio_in_dim: int, num_frames: int):
        super().__init__()
        self.cfg = cfg
        self.audio_in_dim = int(audio_in_dim)
        self.num_frames = int(num_frames)
        self.bound = float(cfg.bound)
        self.backbone = cfg.backbone
        self.uses_audio = bool(cfg.audio)
        hidden = cfg.hidden_dim

        if self.uses_audio:
            self.audio_net = AudioNet(self.audio_in_dim, cfg.audio_dim)
            if cfg.attention_window > 1:
                self.audio_att_net = AudioAttNet(cfg.audio_dim, cfg.attention_window)
        audio_dim = cfg.audio_dim if self.uses_audio else 0

        # Space (and audio): features ``h`` of a point, by backbone.
        if self.backbone == "implicit":
            self.encoder_pos = FrequencyEncoder(3, cfg.implicit_frequencies, convention="ngp")
            self.implicit_net = MLP(self.encoder_pos.output_dim + audio_dim, cfg.implicit_width,
                                    cfg.implicit_width, cfg.implicit_layers)
            in_dim = cfg.implicit_width
        else:
            self.encoder = build_grid_encoder(cfg.spatial_grid, 3, cfg.encoding, bound=self.bound,
                                              scale_resolution_by_bound=True)
            spatial_dim = self.encoder.output_dim
            in_dim = spatial_dim
            if self.uses_audio:
                out = 3 if self.backbone == "deform" else cfg.ambient_dim
                self.ambient_net = MLP(spatial_dim + audio_dim, out, hidden, cfg.ambient_layers)
                if self.backbone == "decomposed":
                    self.encoder_ambient = build_grid_encoder(cfg.audio_grid, cfg.ambient_dim, cfg.encoding, bound=1.0)
                    in_dim = spatial_dim + self.encoder_ambient.output_dim
                elif self.backbone == "composed":
                    from dataclasses import replace

                    # Five dimensions never fit a dense table: tiny-cuda-nn's hash.
                    grid = replace(cfg.spatial_grid, grid_type="hash",
                                   log2_hashmap_size=cfg.composed_log2_hashmap_size)
                    self.encoder_composed = build_grid_encoder(grid, 3 + cfg.ambient_dim, cfg.encoding,
                                                               bound=self.bound, scale_resolution_by_bound=True)
                    in_dim = self.encoder_composed.output_dim

        self.eye_dim = 1 if cfg.eye_feature else 0
        self.sigma_net = MLP(in_dim + self.eye_dim, 1 + cfg.geo_feat_dim, hidden, cfg.density_layers)
        self.encoder_dir = SHEncoder(4)
        self.appearance_dim = int(cfg.appearance_dim)
        self.color_net = MLP(self.encoder_dir.output_dim + cfg.geo_feat_dim + self.appearance_dim, 3,
                             hidden, cfg.color_layers)
        if self.appearance_dim > 0:
            # RAD-NeRF's individual codes: N(0, 0.1^2).
            self.individual_codes = nn.Parameter(torch.randn(self.num_frames, self.appearance_dim) * 0.1)

    # -- conditions ---------------------------------------------------------------

    def encode_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """``[B, T, W, C]`` windows of ``T`` neighbouring frames -> ``[B, audio_dim]`` codes (T=1: no attention)."""
        B, T = windows.shape[:2]
        codes = self.audio_net(windows.reshape(B * T, *windows.shape[2:])).view(B, T, -1)
        if hasattr(self, "audio_att_net"):
            return self.audio_att_net(codes)
        return codes[:, T // 2]

    def appearance(self, index: int | None) -> torch.Tensor | None:
        """``[1, appearance_dim]``: training frame ``index``'s code, or the one for unseen frames (None)."""
        if self.appearance_dim == 0:
            return None
        if index is not None:
            return self.individual_codes[int(index)].unsqueeze(0)
        if self.cfg.appearance_at_test == "mean":
            return self.individual_codes.mean(dim=0, keepdim=True)
        return self.individual_codes[:1]

    def condition(
        self, windows: torch.Tensor | None = None, eye: float | torch.Tensor | None = None, index: int | None = None
    ) -> HeadCondition:
        """One frame's condition.

        Args:
            windows: ``[1, T, W, C]`` the frame's audio windows and its neighbours'
                (:func:`radnerf.models.audio.gather_windows`); ignored without an audio path.
            eye: the eye-area ratio; ignored when the eye feature is off.
            index: the training frame (its appearance code); None for any other frame.
        """
        device = next(self.parameters()).device
        audio = None
        if self.uses_audio:
            if windows is None:
                raise ValueError("this head is conditioned on audio: pass the frame's audio windows")
            audio = self.encode_audio(windows.to(device))
        eye_t = None
        if self.eye_dim:
            if eye is None:
                raise ValueError("this head is conditioned on the eye ratio: pass eye=")
            eye_t = torch.as_tensor(eye, dtype=torch.float32, device=device).reshape(1, 1)
        return HeadCondition(audio=audio, eye=eye_t, appearance=self.appearance(index))

    # -- the field ----------------------------------------------------------------

    def features(self, xyz: torch.Tensor, cond: HeadCondition) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``xyz [M, 3]`` -> the features the density MLP reads (a list of ``[M, d_k]`` parts, read as
        their concatenation), and the audio coordinate ``[M, ambient_dim]`` (the offset ``[M, 3]`` for
        ``deform``; None without one)."""
        if self.backbone == "implicit":
            return [self.implicit_net(self.encoder_pos(xyz), cond.audio if self.uses_audio else None)], None
        f_x = self.encoder(xyz)
        if not self.uses_audio:
            return [f_x], None
        ambient = torch.tanh(self.ambient_net(f_x, cond.audio).float())
        if self.backbone == "decomposed":
            return [f_x, self.encoder_ambient(ambient)], ambient
        if self.backbone == "composed":
            return [self.encoder_composed(torch.cat([xyz, ambient * self.bound], dim=-1))], ambient
        # deform: the audio moves the point, the same grid reads it there.
        moved = (xyz + ambient * (self.cfg.deform_scale * self.bound)).clamp(-self.bound, self.bound)
        return [self.encoder(moved)], ambient

    def density(self, xyz: torch.Tensor, cond: HeadCondition) -> torch.Tensor:
        """``xyz [M, 3]`` -> ``sigma [M]`` (what the occupancy grid probes)."""
        h, _ = self.features(xyz, cond)
        return trunc_exp(self.sigma_net(h, cond.eye)[:, 0])

    def forward(
        self, xyz: torch.Tensor, dirs: torch.Tensor, cond: HeadCondition
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``xyz, dirs [M, 3]`` -> ``sigma [M]``, ``rgb [M, 3]`` in [0, 1], extras.

        Extras: ``ambient [M]``, the L1 norm of the audio coordinate (the
        regulariser of the paper's Eq. 6 accumulates it along rays), when the
        backbone has one.
        """
        h, ambient = self.features(xyz, cond)
        out = self.sigma_net(h, cond.eye)
        sigma = trunc_exp(out[:, 0])
        geo = out[:, 1:]
        rgb = torch.sigmoid(self.color_net([self.encoder_dir(dirs), geo], cond.appearance))
        extras = {} if ambient is None else {"ambient": ambient.abs().sum(dim=-1)}
        return sigma, rgb, extras

    # -- optimisation -------------------------------------------------------------

    def param_groups(self, lr_grid: float, lr_net: float, attention_scale: float = 5.0) -> list[dict]:
        """Adam's parameter groups, RAD-NeRF's ``get_params``: grids at ``lr_grid``; MLPs, the audio
        net and the appearance codes at ``lr_net``; the attention at ``attention_scale * lr_net``.
        Each group is named (``name``) so logs and tests can find it."""
        grids, nets, attention, codes = [], [], [], []
        for name, p in self.named_parameters():
            if name.startswith(("encoder.", "encoder_ambient.", "encoder_composed.")):
                grids.append(p)
            elif name.startswith("audio_att_net."):
                attention.append(p)
            elif name == "individual_codes":
                codes.append(p)
            else:
                nets.append(p)
        groups = [
            {"name": "grids", "params": grids, "lr": lr_grid},
            {"name": "nets", "params": nets, "lr": lr_net},
            {"name": "attention", "params": attention, "lr": lr_net * attention_scale},
            {"name": "appearance", "params": codes, "lr": lr_net},
        ]
        return [g for g in groups if g["params"]]


def build_head(cfg: ModelConfig, audio_in_dim: int, num_frames: int) -> HeadModel:
    """A :class:`HeadModel` from the model config, the audio features' channels and the training frame count."""
    return HeadModel(cfg, audio_in_dim, num_frames)
