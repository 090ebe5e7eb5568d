"""Multiresolution grid encoders behind one interface, and the factory that picks one.

Two backends share one parameter layout (:mod:`radnerf.encoding.layout`), so a
state dict moves between them unchanged (one flat ``params`` tensor, as in
tiny-cuda-nn's ``tcnn.Encoding``):

``torch`` (:class:`GridEncoder`)
    Ours. On CPU it runs the fused C++ kernel (built on first use) and falls
    back to the plain PyTorch path if that cannot be built; on other devices,
    or for dimensions/feature counts the kernel does not cover, it runs the
    plain path. Both give gradients for the table and the input points (the
    audio coordinate of RAD-NeRF is learned, so its 2D grid needs them).
``tcnn`` (:class:`TcnnGridEncoder`)
    tiny-cuda-nn's ``HashGrid`` on CUDA, only for ``grid_type='hash'``.

``implementation='auto'`` takes ``tcnn`` when ``tinycudann`` imports and CUDA
is available and the grid type is ``hash``, else ``torch`` (warning once when
tiny-cuda-nn was wanted but is not usable).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from radnerf.encoding.layout import GridLayout, grid_layout
from radnerf.errors import ConfigError

if TYPE_CHECKING:
    from radnerf.config import GridConfig

IMPLEMENTATIONS = ("auto", "tcnn", "torch")

_TCNN: dict[str, Any] = {"checked": False, "module": None, "why": None, "warned": False}


def tcnn_status() -> tuple[Any | None, str | None]:
    """``(tinycudann module, None)`` when usable, else ``(None, reason)``. Imports lazily, once."""
    if not _TCNN["checked"]:
        _TCNN["checked"] = True
        if not torch.cuda.is_available():
            _TCNN["why"] = "CUDA is not available"
        else:
            try:
                import tinycudann

                _TCNN["module"] = tinycudann
            except (ImportError, OSError, RuntimeError) as exc:  # a broken build fails on load
                _TCNN["why"] = f"tinycudann does not import ({type(exc).__name__}: {exc})"
    return _TCNN["module"], _TCNN["why"]


def resolve_implementation(implementation: str, grid_type: str = "hash") -> str:
    """'tcnn' or 'torch' for a requested implementation ('auto', 'tcnn', 'torch')."""
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(
            f"Unknown encoding implementation {implementation!r}.",
            f"use one of {', '.join(IMPLEMENTATIONS)}",
        )
    if implementation == "torch":
        return "torch"
    module, why = tcnn_status()
    if implementation == "tcnn":
        if grid_type != "hash":
            raise ConfigError(
                f"tiny-cuda-nn has no {grid_type!r} grid with RAD-NeRF's indexing.",
                "use model.encoding=torch (or auto) for tiled grids",
            )
        if module is None:
            raise ConfigError(
                f"model.encoding=tcnn but tiny-cuda-nn is not usable: {why}.",
                "install tinycudann on a CUDA machine, or set model.encoding=auto or torch",
            )
        return "tcnn"
    if module is not None and grid_type == "hash":
        return "tcnn"
    if module is None and not _TCNN["warned"]:
        _TCNN["warned"] = True
        warnings.warn(
            f"radnerf: tiny-cuda-nn is not used ({why}); grids run on radnerf's own "
            "PyTorch/C++ implementation, with the same parameter layout.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def _init_params(layout: GridLayout, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # tiny-cuda-nn and torch-ngp both initialise the table uniformly in +-1e-4.
    return torch.empty(layout.n_params, dtype=dtype).uniform_(-1e-4, 1e-4)


class _GridModule(nn.Module):
    """What both grid backends share: dimensions from ``self.layout`` and the
    mapping of ``[-self.bound, self.bound]^D`` to the unit cube."""

    layout: GridLayout
    bound: float

    @property
    def input_dim(self) -> int:
        """D."""
        return self.layout.input_dim

    @property
    def output_dim(self) -> int:
        """L * F."""
        return self.layout.output_dim

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] points in [-bound, bound] -> [..., D] in [0, 1] (torch-ngp's mapping)."""
        return (x + self.bound) / (2 * self.bound)


class GridEncoder(_GridModule):
    """Multiresolution grid encoding, radnerf's own backend (fused CPU or plain PyTorch).

    Args:
        layout: the grid (see :func:`radnerf.encoding.layout.grid_layout`).
        bound: points live in ``[-bound, bound]^D`` and are mapped to the unit cube.
        path: 'auto' (fused on CPU when it builds, else plain), 'fused' or 'plain'.

    ``forward``: x [..., D] -> [..., L * F] (level-major features).
    """

    def __init__(self, layout: GridLayout, bound: float = 1.0, path: str = "auto"):
        super().__init__()
        if path not in ("auto", "fused", "plain"):
            raise ConfigError(f"Unknown grid path {path!r}.", "use auto, fused or plain")
        self.layout = layout
        self.bound = float(bound)
        self.path = path
        self.params = nn.Parameter(_init_params(layout))
        # Reused table-gradient storage for the fused backward (see GradBuffer).
        from radnerf.encoding.grid_fused import GradBuffer

        self._grad_buffer = GradBuffer()

    def extra_repr(self) -> str:
        lay = self.layout
        return (
            f"type={lay.grid_type}, D={lay.input_dim}, L={lay.num_levels}, F={lay.level_dim}, "
            f"base={lay.base_resolution}, scale={lay.per_level_scale:.4f}, "
            f"finest={lay.levels[-1].resolution}, params={lay.n_params}, bound={self.bound}"
        )

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.path == "plain":
            return False
        from radnerf.encoding.grid_fused import fused_supported, load_extension

        ok = fused_supported(self.layout, x) and x.dtype == self.params.dtype
        if self.path == "fused":
            if not ok:
                raise ConfigError(
                    "The fused grid kernel handles CPU float32/float64 grids with D in {2, 3} "
                    "and F in {1, 2, 4, 8} only."
                )
            if load_extension() is None:
                raise ConfigError("The fused grid kernel could not be built.", "use path='plain'")
            return True
        return ok and load_extension() is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., D] in [-bound, bound] -> [..., L * F].

        On the fused CPU path the result is a strided view of a feature-major
        buffer (see :func:`radnerf.encoding.grid_fused.grid_encode_fused`):
        use ``reshape``, not ``view``, to change its shape.
        """
        prefix = x.shape[:-1]
        flat = self.to_unit(x.reshape(-1, self.layout.input_dim))
        if self._use_fused(flat):
            from radnerf.encoding.grid_fused import grid_encode_fused

            out = grid_encode_fused(flat, self.params, self.layout, self._grad_buffer)
        else:
            from radnerf.encoding.grid_plain import grid_encode_plain

            out = grid_encode_plain(flat, self.params, self.layout)
        return out.reshape(*prefix, self.layout.output_dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # torch-ngp / RAD-NeRF checkpoints store the same numbers as "embeddings" [entries, F].
        legacy = prefix + "embeddings"
        if legacy in state_dict and prefix + "params" not in state_dict:
            state_dict[prefix + "params"] = state_dict.pop(legacy).reshape(-1)
            state_dict.pop(prefix + "offsets", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def tcnn_encoding_config(layout: GridLayout) -> dict:
    """tiny-cuda-nn's JSON config for a ``hash`` layout (same numbers, same ``params``)."""
    if layout.grid_type != "hash":
        raise ConfigError(f"tiny-cuda-nn cannot express a {layout.grid_type!r} grid.")
    return {
        "otype": "HashGrid",
        "n_levels": layout.num_levels,
        "n_features_per_level": layout.level_dim,
        "log2_hashmap_size": layout.log2_hashmap_size,
        "base_resolution": layout.base_resolution,
        "per_level_scale": layout.per_level_scale,
        "interpolation": "Linear",
    }


class TcnnGridEncoder(_GridModule):
    """tiny-cuda-nn's HashGrid with :class:`GridEncoder`'s interface and state dict.

    The tcnn module is kept out of the module tree so that the only parameter is
    ``params`` (the same object tcnn trains), and a state dict reads the same
    as :class:`GridEncoder`'s. Outputs are returned as float32.
    """

    def __init__(self, layout: GridLayout, bound: float = 1.0):
        super().__init__()
        tcnn, why = tcnn_status()
        if tcnn is None:
            raise ConfigError(f"tiny-cuda-nn is not usable: {why}.", "use implementation='torch'")
        config = tcnn_encoding_config(layout)
        try:
            encoding = tcnn.Encoding(layout.input_dim, config, dtype=torch.float32)
        except TypeError:  # older bindings without the dtype argument
            encoding = tcnn.Encoding(layout.input_dim, config)
        if encoding.params.numel() != layout.n_params:
            raise RuntimeError(
                f"tiny-cuda-nn allocated {encoding.params.numel()} parameters, radnerf's layout "
                f"expects {layout.n_params}; the two would not share checkpoints."
            )
        object.__setattr__(self, "_tcnn", encoding)
        self.params = encoding.params
        self.layout = layout
        self.bound = float(bound)

    def _apply(self, fn, *args, **kwargs):
        # Keep the hidden tcnn module's parameter the one registered here.
        result = super()._apply(fn, *args, **kwargs)
        self._tcnn.params = self.params
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., D] in [-bound, bound] -> [..., L * F] float32."""
        prefix = x.shape[:-1]
        flat = self.to_unit(x.reshape(-1, self.layout.input_dim)).contiguous()
        out = self._tcnn(flat).float()
        return out.reshape(*prefix, self.layout.output_dim)


def layout_from_config(
    cfg: GridConfig, input_dim: int, bound: float = 1.0, scale_resolution_by_bound: bool = False
) -> GridLayout:
    """The :class:`GridLayout` a :class:`radnerf.config.GridConfig` describes.

    ``per_level_scale``, when set, overrides ``desired_resolution``.
    """
    desired = float(cfg.desired_resolution) * (bound if scale_resolution_by_bound else 1.0)
    return grid_layout(
        input_dim=input_dim,
        num_levels=int(cfg.num_levels),
        level_dim=int(cfg.level_dim),
        base_resolution=int(cfg.base_resolution),
        log2_hashmap_size=int(cfg.log2_hashmap_size),
        per_level_scale=cfg.per_level_scale,
        desired_resolution=desired,
        grid_type=cfg.grid_type,
    )


def build_grid_encoder(
    cfg: GridConfig,
    input_dim: int,
    implementation: str = "auto",
    bound: float = 1.0,
    scale_resolution_by_bound: bool = False,
) -> nn.Module:
    """A grid encoder from a :class:`radnerf.config.GridConfig`.

    Args:
        cfg: the grid's config.
        input_dim: D (3 spatial, 2 audio, 2 torso).
        implementation: 'auto', 'tcnn' or 'torch' (``ModelConfig.encoding``).
        bound: points are given in ``[-bound, bound]^D``.
        scale_resolution_by_bound: multiply ``desired_resolution`` by ``bound``
            (RAD-NeRF does this for the spatial grid only).

    Returns:
        A module mapping [..., D] to [..., L * F] with a flat ``params`` parameter.
    """
    layout = layout_from_config(cfg, input_dim, bound, scale_resolution_by_bound)
    backend = resolve_implementation(implementation, layout.grid_type)
    if backend == "tcnn":
        return TcnnGridEncoder(layout, bound=bound)
    return GridEncoder(layout, bound=bound)
